package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/internal/testmysql"
	"github.com/example/sidecar/sidecar/internal/config"
)

// The real binary under a low file-descriptor limit: connections pile up
// until the process runs out; the failure is logged, the process does not
// spin, and once descriptors free up it serves again.
func TestBinaryFileDescriptorExhaustion(t *testing.T) {
	t.Parallel() // mostly waits; the CPU bound is a share of the window, made for a loaded machine
	if _, err := os.Stat("/bin/sh"); err != nil {
		testenv.Unavailable(t, "/bin/sh (to lower RLIMIT_NOFILE for the child): %v", err)
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		testenv.Unavailable(t, "/proc (to read the child's CPU time): %v", err)
	}
	env, listen := echoForward(t)
	// ulimit in the shell, then exec: the sidecar itself runs with 32 fds.
	p := startSidecar(t, exec.Command("/bin/sh", "-c", `ulimit -n 32 && exec "$0"`, sidecarBinary(t)), env)
	waitHealthyBinary(t, env, p, 0)
	holds := int((32 - fdsBase - fdsPerForward) / fdsPerConnection(config.Config{}))
	if !p.OutputHas("the open-files limit (32) holds about "+strconv.Itoa(holds)+" connections, fewer than MAX_CONNECTIONS=", safety) {
		t.Errorf("no warning at start that 32 descriptors hold fewer connections than MAX_CONNECTIONS:\n%s", p.Output.String())
	}

	// Open connections, holding each, until one is not served.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	exhausted := false
	for range 100 {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+listen, safety)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		if !echoes(c, 2*time.Second) {
			exhausted = true
			break
		}
	}
	if !exhausted {
		t.Fatalf("100 connections served under a 32-descriptor limit?")
	}
	waitFor := time.Now().Add(safety)
	for !strings.Contains(p.Output.String(), "too many open files") {
		if time.Now().After(waitFor) {
			t.Fatal("descriptor exhaustion was not logged")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A few more clients knock while the process is out of descriptors.
	for range 5 {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+listen, time.Second); err == nil {
			held = append(held, c)
		}
	}
	// A spinning accept loop burns a whole CPU and logs thousands of
	// lines; one that backs off (up to 1s) uses next to none and logs a
	// few. The CPU bound is a share of the measured window, not a fixed
	// time, so a slow or loaded machine does not move it; a spinner on a
	// busy 2-core machine still gets well over a quarter of a CPU.
	cpuBefore := cpuTime(t, p.Cmd.Process.Pid)
	linesBefore := strings.Count(p.Output.String(), "\n")
	began := time.Now()
	time.Sleep(3 * time.Second)
	cpu := cpuTime(t, p.Cmd.Process.Pid) - cpuBefore
	wall := time.Since(began)
	lines := strings.Count(p.Output.String(), "\n") - linesBefore
	if cpu > wall/4 || lines > 50 {
		t.Errorf("while out of descriptors for %v: %v CPU (bound %v), %d log lines (bound 50): the accept loop spins",
			wall.Round(time.Millisecond), cpu, wall/4, lines)
	}

	for _, c := range held {
		_ = c.Close()
	}
	held = nil
	recovered := false
	for range 20 {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+listen, safety)
		if err != nil {
			t.Fatal(err)
		}
		ok := echoes(c, 5*time.Second)
		_ = c.Close()
		if ok {
			recovered = true
			break
		}
	}
	if !recovered {
		t.Fatal("not serving after descriptors were freed")
	}
	waitHealthyBinary(t, env, p, 0)
	logs := p.Output.String()
	t.Logf("served %d connections before exhaustion; logged %d accept failures and %d dial failures",
		strings.Count(logs, `"connection closed"`), strings.Count(logs, `"msg":"accept failed`), strings.Count(logs, `"msg":"dial target failed`))
	sendSignal(t, p, syscall.SIGTERM)
	if code := p.ExitCode(t, safety); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// echoes reports whether c echoes a message back within d.
func echoes(c net.Conn, d time.Duration) bool {
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte("ping")); err != nil {
		return false
	}
	got := make([]byte, 4)
	_, err := io.ReadFull(c, got)
	_ = c.SetDeadline(time.Time{})
	return err == nil && string(got) == "ping"
}

// cpuTime is a process's user+system CPU time from /proc/PID/stat.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the ")" that ends the command name; utime and stime are
	// fields 14 and 15 overall, 12 and 13 after it.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		t.Fatal(errors.New("unexpected /proc stat format"))
	}
	f := strings.Fields(string(b[i+1:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}

// The open-files limit the start-up warning asks for holds MAX_CONNECTIONS
// connections on either data path, counted as the kernel counts them
// (/proc/PID/fd): each connection here carries bulk data both ways and is
// held mid-transfer (the client does not read), so each direction holds
// its splice pipe, as a pooled connection whose last burst ended on a
// full read keeps it. Pipes are taken while descriptors last, so a limit
// without room for them fails new connections (fd_limit) below
// MAX_CONNECTIONS.
func TestOpenFilesNeededHoldsBusyConnections(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		testenv.Unavailable(t, "/proc (to count the sidecar's descriptors): %v", err)
	}
	const conns = 24
	for _, dataPath := range []string{"epoll", "portable"} {
		t.Run(dataPath, func(t *testing.T) {
			env, listen := echoForward(t)
			env["DATA_PATH"], env["MAX_CONNECTIONS"] = dataPath, strconv.Itoa(conns)
			p := startBinary(t, env)
			waitHealthyBinary(t, env, p, 0)
			need := openFilesAsked(t, env)

			stop := make(chan struct{})
			defer close(stop)
			for range conns {
				c, err := net.DialTimeout("tcp", "127.0.0.1:"+listen, safety)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				go func() { // until the sidecar's buffers and the echo's are full
					_ = c.SetWriteDeadline(time.Now().Add(safety))
					_, _ = c.Write(make([]byte, 64<<20))
				}()
			}
			// The count rises as directions go bulk: past 4*conns, as a
			// pause of the sidecar on a loaded machine holds it too, before
			// the pipes are taken.
			fds := steadyFDs(t, p.Cmd.Process.Pid, 4*conns)
			if fds < 4*conns {
				t.Fatalf("%d descriptors open with %d connections held mid-transfer: few pipes taken, nothing to measure", fds, conns)
			}
			if uint64(fds) > need {
				t.Errorf("DATA_PATH=%s, %d connections carrying bulk both ways hold %d descriptors; the limit asked for, %d, is short",
					dataPath, conns, fds, need)
			}
		})
	}
}

// With TARGET_TLS the session's bytes pass through user space and never
// take a splice pipe, so the limit asked for counts a connection's two
// sockets: counted as the kernel counts them, with each connection held
// mid-result (the app does not read), it is not short, and not over by a
// descriptor or more a connection (which told TLS users to raise a limit
// already enough, or warned them for nothing).
func TestOpenFilesNeededWithTLS(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		testenv.Unavailable(t, "/proc (to count the sidecar's descriptors): %v", err)
	}
	srv, files := testmysql.StartTLS(t, testmysql.TLSOptions{})
	const conns = 24
	listen := strconv.Itoa(testkit.FreePort(t))
	env := map[string]string{
		"TARGET_HOST": "127.0.0.1", "TARGET_PORT": strconv.Itoa(srv.Port),
		"LISTEN_ADDR": "127.0.0.1", "LISTEN_PORT": listen, "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t)),
		"TARGET_TLS": "verify-identity", "TARGET_SERVER_NAME": testmysql.ClusterName, "TARGET_TLS_CA": files.CA,
		"MAX_CONNECTIONS": strconv.Itoa(conns),
	}
	p := startBinary(t, env)
	waitHealthyBinary(t, env, p, 0)
	need := openFilesAsked(t, env)

	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	db := openVia(t, srv, "127.0.0.1:"+listen, "", nil)
	// 64 MiB of rows, far more than the sockets' buffers: the server stays
	// mid-result while the app reads none past the column definitions.
	const big = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r WHERE n < 1024) SELECT REPEAT('x', 65536) FROM r"
	for range conns {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := c.QueryContext(ctx, big)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
	}
	fds := steadyFDs(t, p.Cmd.Process.Pid, 2*conns)
	if fds < 2*conns {
		t.Fatalf("%d descriptors open with %d connections held: fewer than their sockets, nothing measured", fds, conns)
	}
	if uint64(fds) > need {
		t.Errorf("TARGET_TLS: %d connections mid-result hold %d descriptors; the limit asked for, %d, is short", conns, fds, need)
	}
	if need-uint64(fds) >= conns {
		t.Errorf("TARGET_TLS: %d connections mid-result hold %d descriptors; the limit asked for, %d, is over by a descriptor or more a connection", conns, fds, need)
	}
}

// openFDs is how many descriptors process pid has open.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// steadyFDs is pid's count of open descriptors once it has held for ten
// samples 50 ms apart and reached atLeast, or the last count after safety.
func steadyFDs(t *testing.T, pid, atLeast int) int {
	t.Helper()
	fds, last, steady := 0, -1, 0
	for deadline := time.Now().Add(safety); (steady < 10 || fds < atLeast) && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		fds = openFDs(t, pid)
		if fds == last {
			steady++
		} else {
			last, steady = fds, 0
		}
	}
	return fds
}

// openFilesAsked is the open-files limit the sidecar asks for with env.
func openFilesAsked(t *testing.T, env map[string]string) uint64 {
	t.Helper()
	cfg, err := config.Parse(lookupMap(env))
	if err != nil {
		t.Fatal(err)
	}
	return openFilesNeeded(cfg)
}
