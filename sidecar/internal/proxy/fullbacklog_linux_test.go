package proxy_test

import (
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// The same against a real socket whose accept queue is full, so the kernel
// drops our SYNs; the real dialer must give up at the connect timeout.
// Linux does that by default; a kernel set to do otherwise is reported as
// unavailable (a failure in CI), not silently skipped.
func TestConnectTimeoutFullBacklog(t *testing.T) {
	port := fullBacklogListener(t)
	const timeout = 500 * time.Millisecond
	r := startProxy(t, proxy.Config{
		Forwards:       []proxy.Forward{{TargetHost: "127.0.0.1", TargetPort: port}},
		ConnectTimeout: timeout,
	})
	began := time.Now()
	expectClosed(t, dial(t, r.addrs[0]), "client of an upstream with a full backlog")
	if d := time.Since(began); d < timeout {
		t.Errorf("client closed after %v, before the connect timeout %v", d, timeout)
	}
	waitFor(t, "timeout counted", func() bool { return countOf(forwardSnap(r, 0).DialFailures, "timeout") == 1 })
}

// fullBacklogListener returns the port of a loopback socket that listens
// with backlog 0 and never accepts, with its queue already full.
func fullBacklogListener(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*syscall.SockaddrInet4).Port
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return port // queue full: SYNs are dropped now
			}
			testenv.Unavailable(t, "a kernel that drops SYNs to a full accept queue (the dial failed with %v instead; net.ipv4.tcp_abort_on_overflow=1?)", err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	testenv.Unavailable(t, "a kernel that drops SYNs to a full accept queue (it kept completing handshakes)")
	return 0
}
