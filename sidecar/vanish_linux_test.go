package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testkit"
)

// vanishInner marks the re-executed test process that runs inside a
// network namespace of its own; its value is the sidecar binary's path.
const vanishInner = "SIDECAR_TEST_VANISH_BINARY"

// A database host that vanishes while a query is in flight (no FIN, no
// RST: its packets just stop, as when a failed-over writer's host or AZ is
// lost) ends the app's connection within about twice KEEPALIVE. Keepalive
// alone sends no probe while sent data waits for an ACK, so without
// TCP_USER_TIMEOUT the query would hang for the kernel's ~15 minutes of
// retransmissions. The packets are dropped with iptables, in a network
// namespace of its own (unshare -n), so the machine's own rules are never
// touched.
func TestBinaryNoticesADatabaseThatVanishesMidQuery(t *testing.T) {
	if bin := os.Getenv(vanishInner); bin != "" {
		vanishInside(t, bin)
		return
	}
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "needs root, for a network namespace and iptables (run as root, as .ci/run does)")
	}
	for _, tool := range []string{"unshare", "iptables", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, "%s is not installed (Debian: util-linux, iptables, iproute2)", tool)
		}
	}
	bin := sidecarBinary(t)
	cmd := exec.Command("unshare", "-n", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v")
	cmd.Env = append(os.Environ(), vanishInner+"="+bin)
	out, err := cmd.CombinedOutput()
	t.Logf("inside the namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the test inside the network namespace failed: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatal("the test inside the network namespace did not pass")
	}
}

// vanishInside runs in the fresh namespace, whose loopback is down. Each
// case has its own database, sidecar and iptables rules.
func vanishInside(t *testing.T, bin string) {
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	const keepalive = 2 * time.Second // probes at 2s, then every 1s, 3 of them: gone after 5s
	for _, tc := range []struct {
		name  string
		quiet time.Duration // how long the connection rests before the database vanishes
		last  func(c net.Conn) error
	}{
		{"a query sent at once", 0, func(c net.Conn) error { _, err := c.Write([]byte("SELECT 1\n")); return err }},
		// The sidecar looked at the resting connection and found nothing
		// waiting; what is sent after that must be looked at again.
		{"a query after a rest", 2 * keepalive, func(c net.Conn) error { _, err := c.Write([]byte("SELECT 1\n")); return err }},
		{"the app's close after a rest", 2 * keepalive, func(c net.Conn) error { return c.(*net.TCPConn).CloseWrite() }},
		// Bytes sent to the database say nothing of whether it is there.
		{"a trickle of writes", 0, func(c net.Conn) error { go trickle(c); return nil }},
	} {
		for _, path := range []string{"epoll", "portable"} {
			t.Run(path+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				vanishCase(t, bin, path, keepalive, tc.quiet, tc.last)
			})
		}
	}
}

// vanishCase echoes a line through the sidecar on dataPath, lets the connection rest
// for quiet, makes the database vanish, has the app send last, and expects
// the app's connection to end (not hang) and the sidecar to log why.
func vanishCase(t *testing.T, bin, dataPath string, keepalive, quiet time.Duration, last func(net.Conn) error) {
	db, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	go func() { // an echo server standing in for the database
		for {
			c, err := db.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c) }()
		}
	}()
	dbPort := db.Addr().(*net.TCPAddr).Port
	listen := strconv.Itoa(testkit.FreePort(t))
	p := startBinary(t, map[string]string{
		"TARGET_HOST": "127.0.0.1", "TARGET_PORT": strconv.Itoa(dbPort),
		"LISTEN_ADDR": "127.0.0.1", "LISTEN_PORT": listen,
		"ADMIN_PORT": strconv.Itoa(testkit.FreePort(t)), "KEEPALIVE": keepalive.String(), "DATA_PATH": dataPath,
	})
	testkit.WaitListening(t, "127.0.0.1:"+listen, safety)
	c := dialForward(t, listen)
	r := bufio.NewReader(c)
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo through the sidecar: %q, %v", line, err)
	}
	time.Sleep(quiet)
	// From now on the database's packets vanish, both ways.
	port := strconv.Itoa(dbPort)
	for _, dir := range []string{"--sport", "--dport"} {
		if out, err := exec.Command("iptables", "-w", "-A", "INPUT", "-p", "tcp", dir, port, "-j", "DROP").CombinedOutput(); err != nil {
			t.Fatalf("iptables: %v: %s", err, out)
		}
	}
	start := time.Now()
	if err := last(c); err != nil {
		t.Fatal(err)
	}
	// Six times the bound: a hang (the kernel's retransmissions) fails.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = r.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the app's connection still hangs %s after the database vanished; the sidecar log:\n%s", time.Since(start).Round(time.Second), p.Output.String())
	}
	if err == nil {
		t.Fatal("got a byte from a database that vanished")
	}
	t.Logf("the app's connection ended %s after the database vanished: %v", time.Since(start).Round(100*time.Millisecond), err)
	// The line is written once both sockets are closed, just after the app saw its end.
	if !p.OutputHas(`"reason":"upstream_error"`, 5*time.Second) {
		t.Fatalf("the sidecar did not log the upstream's failure:\n%s", p.Output.String())
	}
}

// trickle writes a byte every 250 ms, as an app feeding LOAD DATA LOCAL
// INFILE from a slow producer would, until the connection fails.
func trickle(c net.Conn) {
	for range 240 {
		if _, err := c.Write([]byte("x")); err != nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}
