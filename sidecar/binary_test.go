package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
)

// The real binary, built once for the tests that exec it.
var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binError error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sidecar-bin")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

const testVersion, testCommit = "9.9.9-test", "c0ffee"

// sidecarBinary builds ./sidecar with version stamps (go build, as users do).
func sidecarBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			binError = errors.New("the go command is not on PATH: " + err.Error())
			return
		}
		path := filepath.Join(binDir, "sidecar")
		cmd := exec.Command(goTool, "build", "-o", path,
			"-ldflags", "-X main.version="+testVersion+" -X main.commit="+testCommit, ".")
		out, err := cmd.CombinedOutput()
		if err != nil {
			binError = errors.New("go build: " + err.Error() + "\n" + string(out))
			return
		}
		binPath = path
	})
	if binError != nil {
		t.Fatal(binError)
	}
	return binPath
}

// environ renders env in os.Environ form: for run in-process, and as a
// child's whole environment, nothing inherited (never nil, which exec
// reads as "inherit"), so the test proves the binary is configured by
// these variables alone.
func environ(env map[string]string) []string {
	out := []string{}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// startBinary runs the sidecar binary with args and env; p.Output is its
// stderr.
func startBinary(t *testing.T, env map[string]string, args ...string) *testkit.Process {
	t.Helper()
	return startSidecar(t, exec.Command(sidecarBinary(t), args...), env)
}

// startSidecar starts cmd (the sidecar binary, or a shell that execs it)
// with env as its whole environment. Its stdout is discarded so that
// p.Output holds stderr alone, the JSON log lines tests read.
func startSidecar(t *testing.T, cmd *exec.Cmd, env map[string]string) *testkit.Process {
	t.Helper()
	cmd.Env = environ(env)
	cmd.Stdout = io.Discard
	return testkit.Start(t, cmd)
}

func sendSignal(t *testing.T, p *testkit.Process, sig os.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// healthcheckBinary runs `sidecar healthcheck` as ECS would.
func healthcheckBinary(t *testing.T, env map[string]string) int {
	t.Helper()
	cmd := exec.Command(sidecarBinary(t), "healthcheck")
	cmd.Env = environ(env)
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

func waitHealthyBinary(t *testing.T, env map[string]string, p *testkit.Process, want int) {
	t.Helper()
	deadline := time.Now().Add(safety)
	for healthcheckBinary(t, env) != want {
		select {
		case <-p.Done():
			t.Fatalf("sidecar exited (%v) while waiting for healthcheck exit %d", p.Err(), want)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthcheck never exited %d", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBinaryVersion(t *testing.T) {
	out, err := exec.Command(sidecarBinary(t), "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), testVersion) || !strings.Contains(string(out), testCommit) {
		t.Errorf("version output %q lacks the stamped %s and %s", out, testVersion, testCommit)
	}
}

func TestBinaryBadEnvironment(t *testing.T) {
	p := startBinary(t, map[string]string{"MODE": "turbo", "IDLE_TIMEOUT": "soon"})
	if code := p.ExitCode(t, safety); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	for _, want := range []string{`MODE=\"turbo\"`, `IDLE_TIMEOUT=\"soon\"`} {
		if !strings.Contains(p.Output.String(), want) {
			t.Errorf("stderr lacks %s:\n%s", want, p.Output.String())
		}
	}
}

// Sleep mode: healthy, then exits 0 at once on SIGTERM (the old
// `sleep infinity` ignored it and waited for SIGKILL).
func TestBinarySleepModeStopsOnSIGTERM(t *testing.T) {
	env := map[string]string{"MODE": "sleep", "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t))}
	p := startBinary(t, env)
	waitHealthyBinary(t, env, p, 0)
	sendSignal(t, p, syscall.SIGTERM)
	if code := p.ExitCode(t, safety); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
}

func TestBinaryPortInUse(t *testing.T) {
	busy := testkit.Listen(t)
	p := startBinary(t, map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": "3306", "LISTEN_ADDR": "127.0.0.1",
		"LISTEN_PORT": strconv.Itoa(busy.Addr().(*net.TCPAddr).Port), "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t))})
	if code := p.ExitCode(t, safety); code == 0 {
		t.Fatal("exit code 0 with the listen port in use")
	}
	if !strings.Contains(p.Output.String(), "address already in use") {
		t.Errorf("stderr does not say why:\n%s", p.Output.String())
	}
}

// dialForward connects to the forward on listen, with every read and
// write bounded by safety; closed when the test ends.
func dialForward(t *testing.T, listen string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", "127.0.0.1:"+listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(safety))
	return c
}

// echoedConn is a connection to the echo forward on listen that has had
// a byte echoed: the sidecar holds it as a live connection.
func echoedConn(t *testing.T, listen string) net.Conn {
	t.Helper()
	c := dialForward(t, listen)
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return c
}

// SIGTERM with a transfer in flight: the sidecar turns unhealthy and stops
// accepting at once, the transfer completes, and the process exits 0.
func TestBinaryDrainOnSIGTERM(t *testing.T) {
	env, listen := echoForward(t)
	env["DRAIN_TIMEOUT"] = "25s"
	p := startBinary(t, env)
	waitHealthyBinary(t, env, p, 0)

	c := dialForward(t, listen)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	half := len(data) / 2
	if _, err := c.Write(data[:half]); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, half)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}

	sendSignal(t, p, syscall.SIGTERM)
	waitHealthyBinary(t, env, p, 1)
	// Readiness turns false a moment before the listener closes; the
	// "draining" line is written once it has, the transfer still in flight.
	if !p.OutputHas(`"msg":"draining"`, safety) {
		t.Fatalf("no draining line after SIGTERM:\n%s", p.Output.String())
	}
	if nc, err := net.DialTimeout("tcp", "127.0.0.1:"+listen, time.Second); err == nil {
		_ = nc.Close()
		t.Error("still accepting after SIGTERM")
	}
	select {
	case <-p.Done():
		t.Fatal("exited with a transfer in flight")
	default:
	}

	if _, err := c.Write(data[half:]); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	tail, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(append(got, tail...)) != sha256.Sum256(data) {
		t.Fatalf("transfer across SIGTERM corrupted: %d bytes back of %d", len(got)+len(tail), len(data))
	}
	_ = c.Close()
	if code := p.ExitCode(t, safety); code != 0 {
		t.Fatalf("exit code %d after a clean drain, want 0", code)
	}
	if !strings.Contains(p.Output.String(), `"connections_cut":0`) {
		t.Errorf("no clean-drain log line:\n%s", p.Output.String())
	}
}

// SIGTERM with a connection that outlives DRAIN_TIMEOUT, as ECS stops a
// task whose app holds its pool open: the connection is cut, and the
// process still exits 0 (a drain, not a failure), logging draining, the
// deadline and stopped in that order, each with its count.
func TestBinaryDrainDeadlineExitsZero(t *testing.T) {
	env, listen := echoForward(t)
	env["DRAIN_TIMEOUT"] = "100ms"
	p := startBinary(t, env)
	waitHealthyBinary(t, env, p, 0)
	c := echoedConn(t, listen)

	sendSignal(t, p, syscall.SIGTERM)
	if code := p.ExitCode(t, safety); code != 0 {
		t.Fatalf("exit code %d after the drain deadline, want 0", code)
	}
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("the connection past the deadline read %d bytes, want it closed", n)
	}
	var got []string
	for _, l := range jsonLines(t, p.Output.String()) {
		switch msg := l["msg"].(string); msg {
		case "draining":
			got = append(got, fmt.Sprintf("%s in_flight=%v", msg, l["in_flight"]))
		case "drained", "drain deadline passed, closed remaining connections", "stopped":
			got = append(got, fmt.Sprintf("%s connections_cut=%v", msg, l["connections_cut"]))
		}
	}
	want := []string{"draining in_flight=1", "drain deadline passed, closed remaining connections connections_cut=1", "stopped connections_cut=1"}
	if !slices.Equal(got, want) {
		t.Errorf("stop lines %q, want %q", got, want)
	}
}

// A second signal during the drain ends the process at once, with the
// status a shell gives a process killed by it: also when the sidecar was
// started with SIGINT ignored (a script's background job), where restoring
// the inherited action would have ignored the second signal.
func TestBinarySecondSignalStopsAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ignore bool
	}{{"default", false}, {"SIGINT inherited as ignored", true}} {
		t.Run(tc.name, func(t *testing.T) {
			env, listen := echoForward(t)
			env["DRAIN_TIMEOUT"] = "10m"
			cmd := exec.Command(sidecarBinary(t))
			if tc.ignore {
				cmd = exec.Command("/bin/sh", "-c", `trap "" INT; exec "$0"`, sidecarBinary(t))
			}
			p := startSidecar(t, cmd, env)
			waitHealthyBinary(t, env, p, 0)
			echoedConn(t, listen) // held: the drain waits for it
			sendSignal(t, p, syscall.SIGTERM)
			waitHealthyBinary(t, env, p, 1) // draining, held open by our connection for up to 10m
			sendSignal(t, p, syscall.SIGINT)
			select {
			case <-p.Done():
			case <-time.After(safety):
				t.Fatal("second signal did not end the process")
			}
			if code := p.Cmd.ProcessState.ExitCode(); code != 128+int(syscall.SIGINT) {
				t.Errorf("process state %v, want exit status 130 (128 + SIGINT)", p.Cmd.ProcessState)
			}
		})
	}
}
