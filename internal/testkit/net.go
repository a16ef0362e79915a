package testkit

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// LoopbackPort returns a TCP port on 127.0.0.1 that no listener holds. The
// port is left in TIME_WAIT (its listener's side of one connection closes
// first), so for a minute the kernel hands it to no other bind to port 0:
// a plain closed listener's port came back to the next caller, and two
// "free" ports for one sidecar were equal (LISTEN_PORT = ADMIN_PORT). A
// listener that sets SO_REUSEADDR, as Go, socat's reuseaddr and mysqld do,
// binds it at once; another process's explicit bind may still take it
// first, a race tests accept. For code without a testing.TB (a server
// started for a benchmark program).
func LoopbackPort() (int, error) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		return 0, fmt.Errorf("connect to the port's own listener: %w", err)
	}
	defer c.Close()
	s, err := ln.AcceptTCP()
	if err != nil {
		return 0, fmt.Errorf("accept on the port's own listener: %w", err)
	}
	// Closed before the dialed end: the TIME_WAIT is on the port's side.
	if err := s.Close(); err != nil {
		return 0, err
	}
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// FreePort is LoopbackPort for a test, which fails if there is none.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := LoopbackPort()
	if err != nil {
		t.Fatalf("free loopback port: %v", err)
	}
	return port
}

// Listen returns a TCP listener on 127.0.0.1 at a port the kernel picks,
// closed when the test ends.
func Listen(t testing.TB) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// Serve listens as Listen does and hands each connection it accepts to
// handle, on a goroutine of its own, until the test ends.
func Serve(t testing.TB, handle func(net.Conn)) *net.TCPListener {
	t.Helper()
	ln := Listen(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln
}

// Pair dials ln and accepts: the two ends of one loopback TCP connection,
// both closed when the test ends (closing them earlier is fine). Nothing
// else may be accepting on ln meanwhile.
func Pair(t testing.TB, ln *net.TCPListener) (dialed, accepted *net.TCPConn) {
	t.Helper()
	dialed, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = dialed.Close() })
	accepted, err = ln.AcceptTCP()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { _ = accepted.Close() })
	return dialed, accepted
}

// WaitListening waits until a TCP connection to addr succeeds, failing the
// test when none has within. It connects (and closes at once), so the
// server sees one connection; a server that must not, such as one that
// forks per connection, needs another probe.
func WaitListening(t testing.TB, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, within)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listening on %s after %v: %v", addr, within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
