//go:build linux && (amd64 || arm64)

package epollrelay_test

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/epollrelay"
	"github.com/example/sidecar/sidecar/internal/relay"
)

// setUserTimeout sets c's TCP_USER_TIMEOUT, as the forwarder does upstream.
func setUserTimeout(t *testing.T, c *net.TCPConn, d time.Duration) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, 0x12, int(d.Milliseconds()))
	}); err != nil || serr != nil {
		t.Fatalf("set TCP_USER_TIMEOUT: %v, %v", err, serr)
	}
}

// A database that is alive but stops reading what the app sends for longer
// than the upstream's TCP_USER_TIMEOUT (LOAD DATA LOCAL INFILE while the
// server waits on a lock) keeps the connection, and gets every byte once it
// reads again. Set in the kernel, the timeout cut it: Linux counts a zero
// window from the first probe, answered or not.
func TestStalledUpstreamKeepsItsConnection(t *testing.T) {
	const size = 16 << 20
	const userTimeout = time.Second
	e := newEngine(t, epollrelay.Options{})
	ln := testkit.Listen(t)
	app, client := testkit.Pair(t, ln)
	upstream, server := testkit.Pair(t, ln)
	t.Cleanup(func() { app.Close(); server.Close() })
	_ = server.SetReadBuffer(64 << 10)
	setUserTimeout(t, upstream, userTimeout)
	result := make(chan relay.Result, 1)
	go runRelay(e.Relay, context.Background(), client, upstream, 0, result)

	sent := make(chan error, 1)
	var hash [32]byte
	go func() {
		var err error
		hash, err = sendRandom(app, size, 7)
		if err == nil {
			err = app.CloseWrite()
		}
		sent <- err
	}()
	time.Sleep(4 * userTimeout) // the server reads nothing: its window closes
	_ = server.SetReadDeadline(time.Now().Add(safety))
	n, got, err := readAllHash(server)
	if err != nil || n != size {
		t.Fatalf("server read %d bytes, %v; want all %d (relay: %+v)", n, err, size, drained(result))
	}
	if err := <-sent; err != nil {
		t.Fatalf("app's write: %v", err)
	}
	if got != hash {
		t.Fatal("server got different bytes than the app sent")
	}
	server.Close()
	_ = app.SetReadDeadline(time.Now().Add(safety))
	if _, err := app.Read(make([]byte, 1)); err == nil {
		t.Fatal("app read a byte; want EOF")
	}
	if res := <-result; res.Reason != relay.ReasonDone || res.ToUpstream != size {
		t.Fatalf("result %+v, want done with %d bytes up", res, size)
	}
}

// drained is the relay's result if it has ended, for a failure message.
func drained(ch <-chan relay.Result) any {
	select {
	case r := <-ch:
		return r
	default:
		return "still running"
	}
}
