package relaytest

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// setUserTimeout sets c's TCP_USER_TIMEOUT, as the forwarder does on the
// upstream side.
func setUserTimeout(t testing.TB, c *net.TCPConn, d time.Duration) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, 0x12, int(d.Milliseconds())) // TCP_USER_TIMEOUT
	}); err != nil || serr != nil {
		t.Fatalf("set TCP_USER_TIMEOUT: %v, %v", err, serr)
	}
}

// userTimeoutOf reads c's TCP_USER_TIMEOUT, or 0.
func userTimeoutOf(c *net.TCPConn) time.Duration {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	ms := 0
	_ = rc.Control(func(fd uintptr) { ms, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, 0x12) })
	return time.Duration(ms) * time.Millisecond
}
