package proxy_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/example/sidecar/sidecar/internal/proxy"
	"github.com/example/sidecar/sidecar/internal/relay"
	"github.com/example/sidecar/sidecar/internal/tcpstall"
)

// A database that is alive but stops reading what the app sends for longer
// than the keepalive bound (LOAD DATA LOCAL INFILE while the server waits on
// a lock) keeps the connection, and gets every byte: the data path, not the
// kernel, enforces the upstream's TCP_USER_TIMEOUT (package tcpstall), and
// cuts only a peer gone silent.
func TestStalledDatabaseKeepsItsConnection(t *testing.T) {
	if !tcpstall.Supported {
		t.Skip("this build leaves TCP_USER_TIMEOUT to the kernel (package tcpstall)")
	}
	t.Parallel() // the 6 s waits are the kernel's timers: they overlap
	eachRelay(t, func(t *testing.T, f relay.Func) {
		t.Parallel()
		const size = 32 << 20
		got := make(chan int64, 1)
		up := startUpstream(t, "127.0.0.1", func(c *net.TCPConn) {
			_ = c.SetReadBuffer(64 << 10)
			time.Sleep(6 * time.Second) // past the 4 s bound of a 1 s keepalive
			n, _ := io.Copy(io.Discard, c)
			got <- n
		})
		r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, Keepalive: time.Second, Relay: f})
		c := dial(t, r.addrs[0])
		go func() {
			if _, err := c.Write(make([]byte, size)); err == nil {
				_ = c.CloseWrite()
			}
		}()
		select {
		case n := <-got:
			if n != size {
				t.Fatalf("the database read %d bytes, want all %d", n, size)
			}
		case <-time.After(safety):
			t.Fatal("the database's read did not end")
		}
	})
}
