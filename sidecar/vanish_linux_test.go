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

// vanishInside runs in the fresh namespace, whose loopback is down.
func vanishInside(t *testing.T, bin string) {
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
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
	const keepalive = 2 * time.Second // probes at 2s, then every 1s, 3 of them: gone after 5s
	p := startBinary(t, map[string]string{
		"TARGET_HOST": "127.0.0.1", "TARGET_PORT": strconv.Itoa(dbPort),
		"LISTEN_ADDR": "127.0.0.1", "LISTEN_PORT": listen,
		"ADMIN_PORT": strconv.Itoa(testkit.FreePort(t)), "KEEPALIVE": keepalive.String(),
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
	// From now on the database's packets vanish, both ways.
	port := strconv.Itoa(dbPort)
	for _, dir := range []string{"--sport", "--dport"} {
		if out, err := exec.Command("iptables", "-A", "INPUT", "-p", "tcp", dir, port, "-j", "DROP").CombinedOutput(); err != nil {
			t.Fatalf("iptables: %v: %s", err, out)
		}
	}
	start := time.Now()
	if _, err := c.Write([]byte("SELECT 1\n")); err != nil {
		t.Fatal(err)
	}
	// Six times the bound: a hang (the kernel's retransmissions) fails.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = r.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the app's query still hangs %s after the database vanished; the sidecar log:\n%s", time.Since(start).Round(time.Second), p.Output.String())
	}
	if err == nil {
		t.Fatal("got a byte from a database that vanished")
	}
	t.Logf("the app's connection ended %s after the database vanished: %v", time.Since(start).Round(100*time.Millisecond), err)
	// The line is written once both sockets are closed, just after the app saw its end.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(p.Output.String(), `"reason":"upstream_error"`); {
		if time.Now().After(deadline) {
			t.Fatalf("the sidecar did not log the upstream's failure:\n%s", p.Output.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
