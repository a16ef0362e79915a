package relaytest

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/sidecar/internal/tcpstall"
)

// setUserTimeout sets c's TCP_USER_TIMEOUT, as the forwarder does on the
// upstream side.
func setUserTimeout(t testing.TB, c *net.TCPConn, d time.Duration) {
	t.Helper()
	if err := tcpstall.Set(c, d); err != nil {
		t.Fatalf("set TCP_USER_TIMEOUT: %v", err)
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
