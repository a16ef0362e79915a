//go:build linux

package proxy_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// A client whose connection the kernel had completed but the sidecar had
// not accepted when SIGTERM came is served through the drain like any
// connection in flight, counted and logged, not reset; over
// MaxConnections it is turned away as any connection over the cap is.
func TestDrainServesQueuedConnections(t *testing.T) {
	for _, tc := range []struct {
		name             string
		queued, max      int
		served, rejected int
	}{
		{"all served", 5, 0, 5, 0},
		{"over the cap", 3, 2, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startUpstream(t, "127.0.0.1", echo)
			r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, MaxConnections: tc.max, DrainTimeout: safety,
				Listen: listenUnaccepted})
			clients := make([]*net.TCPConn, tc.queued)
			for i := range clients {
				clients[i] = dial(t, r.addrs[0]) // completed by the kernel, left in the accept queue
			}
			r.cancel() // SIGTERM's effect
			// Logged once the listeners are closed; the clients talk only
			// then, so none ends and frees a slot before all were taken.
			waitFor(t, "draining", func() bool { return len(r.logs.lines("draining")) == 1 })
			served := 0
			for i, c := range clients {
				if err := exchange(c, []byte("queued before SIGTERM")); err != nil {
					t.Logf("client %d: %v", i, err)
				} else {
					served++
				}
				_ = c.Close()
			}
			if cut := r.shutdown(t); cut != 0 {
				t.Errorf("connections cut = %d, want 0", cut)
			}
			snap := forwardSnap(r, 0)
			if served != tc.served || snap.Total != uint64(tc.served) || snap.Rejected != uint64(tc.rejected) {
				t.Errorf("%d of %d queued clients served, total %d, rejected %d; want %d served and counted, %d rejected",
					served, tc.queued, snap.Total, snap.Rejected, tc.served, tc.rejected)
			}
			if n := len(r.logs.lines("connection closed")); n != tc.served {
				t.Errorf("%d \"connection closed\" lines, want %d", n, tc.served)
			}
		})
	}
}

// A queue full as the drain begins (a burst at SIGTERM) is taken whole:
// Linux queues one connection more than the listener's backlog (Go
// listens with somaxconn), and one left behind is reset by the close.
func TestDrainTakesAFullQueue(t *testing.T) {
	backlog := somaxconn(t)
	n := backlog + 1 // as many as the kernel completes: one more would wait in SYN retries
	needFDs(t, uint64(2*n+256))
	up := startUpstream(t, "127.0.0.1", echo)
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, MaxConnections: 1, DrainTimeout: safety,
		Listen: listenUnaccepted})
	for range n {
		_ = dial(t, r.addrs[0]) // completed by the kernel, left in the accept queue
	}
	r.cancel()
	waitFor(t, "draining", func() bool { return len(r.logs.lines("draining")) == 1 })
	waitFor(t, "every queued connection taken", func() bool {
		s := forwardSnap(r, 0)
		return s.Total+s.Rejected == uint64(n)
	})
	if s := forwardSnap(r, 0); s.AcceptErrors != 0 {
		t.Errorf("%d accept errors, want 0", s.AcceptErrors)
	}
}

// Clients arriving as fast as the drain takes them (a flood) do not keep
// it taking: it takes at most a queue's worth, then closes the listener
// (the flood's next dial is refused or reset) and ends. The cap is set below what
// the test queues before SIGTERM, so a drain that took until the queue
// was empty would take more than it whether or not it outran the flood.
func TestDrainTakesAtMostAQueueDuringAFlood(t *testing.T) {
	const queueCap, queued = 8, 3 * 8
	backlog := somaxconn(t)
	floodMax := min(1000, backlog/2) // dials the queue has room for: none waits in SYN retries
	needFDs(t, uint64(2*(queued+floodMax)+256))
	up := startUpstream(t, "127.0.0.1", echo)
	r := startProxy(t, proxy.WithQueuedCap(proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, MaxConnections: 1,
		DrainTimeout: safety, Listen: listenUnaccepted}, queueCap))
	clients := make([]net.Conn, 0, queued+floodMax)
	for range queued {
		clients = append(clients, dial(t, r.addrs[0])) // completed by the kernel, left in the accept queue
	}

	type flooded struct {
		conns []net.Conn
		err   error // why it stopped
	}
	started, ended := make(chan struct{}), make(chan flooded, 1)
	go func() {
		var f flooded
		for len(f.conns) < floodMax {
			c, err := net.DialTimeout("tcp", r.addrs[0], safety)
			if len(f.conns) == 0 {
				close(started) // SIGTERM comes once the flood is on
			}
			if err != nil {
				f.err = err
				break
			}
			f.conns = append(f.conns, c)
		}
		if f.err == nil {
			f.err = fmt.Errorf("%d dials connected; the listener was still open", floodMax)
		}
		ended <- f
	}()
	<-started
	r.cancel()
	f := <-ended // within floodMax dials, refused or not
	clients = append(clients, f.conns...)
	// Reset: that dial was in its handshake as the listener closed.
	if !errors.Is(f.err, syscall.ECONNREFUSED) && !errors.Is(f.err, syscall.ECONNRESET) {
		t.Errorf("the flood stopped with %v; want its dials refused by the closed listener", f.err)
	}
	waitFor(t, "draining", func() bool { return len(r.logs.lines("draining")) == 1 })
	for _, c := range clients {
		_ = c.Close() // ends the one served, so the drain can end
	}
	r.shutdown(t)
	if s := forwardSnap(r, 0); s.Total+s.Rejected != queueCap || s.AcceptErrors != 0 {
		t.Errorf("the drain took %d connections (%d served, %d rejected) with %d accept errors, %d queued before SIGTERM and %d during; want %d taken, no errors",
			s.Total+s.Rejected, s.Total, s.Rejected, s.AcceptErrors, queued, len(f.conns), queueCap)
	}
}

// With TARGET_TLS the queued apps read the database's greeting, and one
// over MaxConnections the sidecar's ERR 1040, as at any other time.
func TestDrainGreetsQueuedTLSApps(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", func(c *net.TCPConn) { _, _ = mysqlwire.WritePacket(c, 0, greetingWithTLS()); hold(c) })
	fw := forwardTo(up)
	fw.TLS = &mysqltls.Target{Mode: mysqltls.VerifyCA, Roots: x509.NewCertPool(), RootsFrom: "test"}
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{fw}, MaxConnections: 2, DrainTimeout: safety, Listen: listenUnaccepted})
	apps := []*net.TCPConn{dial(t, r.addrs[0]), dial(t, r.addrs[0]), dial(t, r.addrs[0])}
	r.cancel()
	waitFor(t, "draining", func() bool { return len(r.logs.lines("draining")) == 1 })
	greeted, tooMany := 0, 0
	for _, c := range apps {
		p, code, msg, isErr := readFirst(t, c)
		switch {
		case !isErr && p.Seq == 0 && len(p.Payload) > 0 && p.Payload[0] == 10:
			greeted++
		case isErr && code == 1040:
			tooMany++
		default:
			t.Errorf("an app read %q (%d %q); want a greeting or ERR 1040", p.Payload, code, msg)
		}
	}
	if greeted != 2 || tooMany != 1 {
		t.Errorf("%d apps greeted, %d told too many; want 2 and 1", greeted, tooMany)
	}
	for _, c := range apps {
		_ = c.Close()
	}
	if cut := r.shutdown(t); cut != 0 {
		t.Errorf("connections cut = %d, want 0", cut)
	}
}

// Out of descriptors as the drain begins, the queued connections cannot be
// taken: that is logged, naming the listener and the error, and counted
// as an accept error, not lost silently.
func TestDrainOutOfFDsForQueuedConnections(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", echo)
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, DrainTimeout: safety, Listen: listenUnaccepted})
	_ = dial(t, r.addrs[0])

	restore := testkit.NoNewFDs(t)
	r.cancel()
	waitFor(t, "draining", func() bool { return len(r.logs.lines("draining")) == 1 })
	restore()
	r.shutdown(t)
	lines := r.logs.lines("could not accept the connections queued when the drain began; any there were reset")
	if len(lines) != 1 || lines[0]["listen_addr"] != r.addrs[0] || !strings.Contains(fmt.Sprint(lines[0]["err"]), "too many open files") {
		t.Errorf("lines %v; want one naming %s and too many open files", lines, r.addrs[0])
	}
	if n := forwardSnap(r, 0).AcceptErrors; n != 1 {
		t.Errorf("accept errors = %d, want 1", n)
	}
}

// listenUnaccepted listens on a real TCP socket whose Accept waits until
// Close: an accept loop that has not got to the queued connections yet
// (a busy machine, a burst).
func listenUnaccepted(ctx context.Context, network, address string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &unacceptedListener{TCPListener: ln.(*net.TCPListener), closed: make(chan struct{})}, nil
}

type unacceptedListener struct {
	*net.TCPListener // SyscallConn and Addr as the real one's
	closed           chan struct{}
	once             sync.Once
}

func (l *unacceptedListener) Accept() (net.Conn, error) {
	<-l.closed
	return l.TCPListener.Accept() // net.ErrClosed
}

func (l *unacceptedListener) Close() error {
	err := l.TCPListener.Close()
	l.once.Do(func() { close(l.closed) })
	return err
}

// somaxconn is the backlog Go listens with on Linux.
func somaxconn(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		t.Skip(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
