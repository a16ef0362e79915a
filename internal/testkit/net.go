package testkit

import (
	"net"
	"testing"
	"time"
)

// LoopbackPort returns a TCP port on 127.0.0.1 that was free a moment ago:
// the kernel picked it for a listener that is closed again. Another process
// may take it before the caller binds it, a race tests accept. For code
// without a testing.TB (a server started for a benchmark program).
func LoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
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
