package testkit

import (
	"fmt"
	"io"
	"net"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLockedBufferLimit(t *testing.T) {
	tests := []struct {
		name   string
		limit  int
		writes []string
		want   string
	}{
		{"no limit keeps all", 0, []string{"abc", "de", "fg"}, "abcdefg"},
		{"drops once over the limit", 4, []string{"abc", "de", "fg"}, "abcde"},
		{"a write at the limit still fits", 5, []string{"abc", "de", "fg"}, "abcdefg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &LockedBuffer{Limit: tt.limit}
			for _, w := range tt.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v; want %d, nil", w, n, err, len(w))
				}
			}
			if got := b.String(); got != tt.want {
				t.Errorf("kept %q, want %q", got, tt.want)
			}
		})
	}
}

// A child's output is written by exec's copying goroutine while the test
// reads it; run with -race this fails for an unlocked buffer.
func TestLockedBufferConcurrent(t *testing.T) {
	var b LockedBuffer
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				fmt.Fprintf(&b, "%d\n", i)
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 400 {
		t.Errorf("%d lines, want 400", n)
	}
}

// Ports handed out in a row are distinct and each is bindable: a closed
// listener's port used to come back within a few hundred calls here.
func TestFreePortsAreDistinctAndBindable(t *testing.T) {
	seen := map[int]int{}
	for i := range 1000 {
		port := FreePort(t)
		if j, ok := seen[port]; ok {
			t.Fatalf("call %d returned port %d, as call %d did", i, port, j)
		}
		seen[port] = i
		if i%100 == 0 {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				t.Fatalf("listen on the free port %d: %v", port, err)
			}
			_ = ln.Close()
		}
	}
}

func TestPairCarriesBothWaysAndClosesAtCleanup(t *testing.T) {
	var ln *net.TCPListener
	var dialed, accepted *net.TCPConn
	t.Run("pair", func(t *testing.T) {
		ln = Listen(t)
		dialed, accepted = Pair(t, ln)
		for _, dir := range []struct{ from, to *net.TCPConn }{{dialed, accepted}, {accepted, dialed}} {
			if _, err := dir.from.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			_ = dir.to.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(dir.to, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("read %q, %v; want ping", buf, err)
			}
		}
	})
	if _, err := ln.Accept(); err == nil {
		t.Error("listener still open after the test ended")
	}
	for name, c := range map[string]*net.TCPConn{"dialed": dialed, "accepted": accepted} {
		if _, err := c.Write([]byte("x")); err == nil {
			t.Errorf("%s end still open after the test ended", name)
		}
	}
}

// fatalTB records a Fatalf and ends the goroutine as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalOf runs fn with a fatalTB and returns the message it failed with,
// "" if it returned normally.
func fatalOf(t *testing.T, fn func(testing.TB)) string {
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f.msg
}

func TestWaitListening(t *testing.T) {
	ln := Listen(t)
	if msg := fatalOf(t, func(tb testing.TB) { WaitListening(tb, ln.Addr().String(), 10*time.Second) }); msg != "" {
		t.Errorf("with a listener: failed: %s", msg)
	}
	addr := "127.0.0.1:" + strconv.Itoa(RefusedPort(t))
	msg := fatalOf(t, func(tb testing.TB) { WaitListening(tb, addr, 50*time.Millisecond) })
	if !strings.Contains(msg, "nothing listening on "+addr) {
		t.Errorf("with nothing listening: %q, want a failure naming %s", msg, addr)
	}
}

func shell(t *testing.T, script string) *exec.Cmd {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh to run a child process: %v", err)
	}
	return exec.Command(sh, "-c", script)
}

func TestProcessExitCodeAndOutput(t *testing.T) {
	p := Start(t, shell(t, "echo to-stdout; echo to-stderr >&2; exit 3"))
	if code := p.ExitCode(t, time.Minute); code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	if p.Err() == nil {
		t.Error("Err is nil after exit status 3")
	}
	for _, want := range []string{"to-stdout", "to-stderr"} {
		if !strings.Contains(p.Output.String(), want) {
			t.Errorf("output %q lacks %q", p.Output, want)
		}
	}
}

func TestProcessKeepsCallersWriters(t *testing.T) {
	var stdout LockedBuffer
	cmd := shell(t, "echo mine; echo theirs >&2")
	cmd.Stdout = &stdout
	p := Start(t, cmd)
	if code := p.ExitCode(t, time.Minute); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if got := stdout.String(); got != "mine\n" {
		t.Errorf("caller's stdout got %q, want mine", got)
	}
	if got := p.Output.String(); got != "theirs\n" {
		t.Errorf("Output got %q, want only stderr", got)
	}
}

func TestProcessKillAndExitCodeTimeout(t *testing.T) {
	p := Start(t, shell(t, "exec sleep 60"))
	if p.Err() != nil {
		t.Errorf("Err while running = %v, want nil", p.Err())
	}
	msg := fatalOf(t, func(tb testing.TB) { p.ExitCode(tb, 50*time.Millisecond) })
	if !strings.Contains(msg, "did not exit within") {
		t.Errorf("ExitCode on a running process: %q, want a timeout failure", msg)
	}
	p.Kill(time.Minute)
	select {
	case <-p.Done():
	default:
		t.Fatal("not reaped after Kill")
	}
	if p.Err() == nil {
		t.Error("Err is nil after the process was killed")
	}
}

func TestStartFailsForAMissingProgram(t *testing.T) {
	msg := fatalOf(t, func(tb testing.TB) { Start(tb, exec.Command("/nonexistent/program")) })
	if !strings.Contains(msg, "/nonexistent/program") {
		t.Errorf("Start of a missing program: %q, want a failure naming it", msg)
	}
}

// Serve hands every connection to the handler, each on its own goroutine:
// one that blocks does not hold up the next.
func TestServe(t *testing.T) {
	got := make(chan string, 2)
	block := make(chan struct{})
	defer close(block)
	ln := Serve(t, func(c net.Conn) {
		defer c.Close()
		b := make([]byte, 1)
		if _, err := c.Read(b); err == nil {
			got <- string(b)
		}
		<-block
	})
	for _, msg := range []string{"a", "b"} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("a connection was not handled while another's handler blocked")
		}
	}
}
