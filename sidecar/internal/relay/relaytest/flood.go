package relaytest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/proxy"
	"github.com/example/sidecar/sidecar/internal/relay"
)

// floodClients is how many clients each flood runs, one after the other;
// floodSlots the forwarder's MaxConnections: a data path that holds the
// slots of departed clients runs out of them long before the end.
const floodClients, floodSlots = 200, 20

// testFlood runs the data path behind the real forwarder and connects and
// closes clients one after the other, every second one with a reset
// (SO_LINGER 0): some leave at once, some after the server's greeting.
// Nothing may be rejected, every slot must be released, and every upstream
// connection the sidecar opened must have been closed again.
// acceptLate makes the test server accept nothing until every client has
// left, so each leaves while its upstream connection waits in the server's
// accept queue: a data path that holds the slot until the server accepts
// or greets never frees one.
//
// Each client connects once a slot is free, so a data path that lags
// behind (a loaded machine) slows the flood rather than failing it; one
// that holds departed clients' slots fails at the wait.
func testFlood(t *testing.T, f relay.Func, acceptLate bool) {
	up := startGreeter(t, acceptLate)
	dialed := make(chan struct{}, floodClients)
	var made atomic.Int64
	srv := startForwarder(t, f, up.addr(), dialed, &made)
	addr := srv.Addrs()[0].String()
	for i := range floodClients {
		// Active counts a slot until it is given back, but may not yet
		// count the last client's, so one more is kept free.
		waitUntil(t, "a free slot (departed clients' slots still held)", func() bool {
			return srv.Snapshot().Forwards[0].Active < floodSlots-1
		})
		rejected := srv.Snapshot().Forwards[0].Rejected
		c, err := net.DialTimeout("tcp", addr, safety)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		tc := c.(*net.TCPConn)
		if acceptLate {
			// Leave once the upstream connection is made (the kernel
			// completed it; the server has not accepted it yet).
			waitUntil(t, "the upstream connection or a rejection", func() bool {
				select {
				case <-dialed:
					return true
				default:
					return srv.Snapshot().Forwards[0].Rejected > rejected
				}
			})
		} else if i%4 >= 2 {
			// Wait for the greeting: the relay runs, then the client leaves.
			_ = tc.SetReadDeadline(time.Now().Add(safety))
			if _, err := io.ReadFull(tc, make([]byte, len(greeting))); err != nil {
				t.Fatalf("client %d: greeting: %v", i, err)
			}
		}
		if i%2 == 1 {
			_ = tc.SetLinger(0) // close with RST
		}
		_ = tc.Close()
		waitUntil(t, "the sidecar to take the client", func() bool {
			s := srv.Snapshot().Forwards[0]
			return s.Total+s.Rejected >= uint64(i+1)
		})
	}
	waitUntil(t, "every slot released", func() bool { return srv.Snapshot().Forwards[0].Active == 0 })
	up.startAccepting()
	waitUntil(t, "every upstream connection accepted and closed", func() bool {
		return up.accepted.Load() >= made.Load() && up.open.Load() == 0
	})
	s := srv.Snapshot().Forwards[0]
	if s.Rejected != 0 {
		t.Errorf("%d of %d departed clients rejected: their predecessors' slots were still held", s.Rejected, floodClients)
	}
	var closed uint64
	for _, c := range s.ConnectionsClosed {
		closed += c.Value
	}
	if closed != floodClients {
		t.Errorf("closed by reason %v: %d in all, want %d", s.ConnectionsClosed, closed, floodClients)
	}
	// None sent a byte: each left, whether its close or the greeting came
	// first, and whether it closed or reset.
	for _, c := range s.ConnectionsClosed {
		if c.Label != string(relay.ReasonClientGone) && c.Value != 0 {
			t.Errorf("closed by reason %v; want all %d %s", s.ConnectionsClosed, floodClients, relay.ReasonClientGone)
			break
		}
	}
	if n := up.accepted.Load(); n > floodClients {
		t.Errorf("the server accepted %d connections for %d clients", n, floodClients)
	}
	t.Logf("%d clients: %d upstream connections, closed by reason %v", floodClients, up.accepted.Load(), s.ConnectionsClosed)
}

// greeting is what the test server sends first, as a MySQL server does.
const greeting = "greeting"

// greeter is a server-first test server: it greets each connection, reads
// until the client's EOF or reset, and closes. It counts connections.
type greeter struct {
	ln             net.Listener
	accepted, open atomic.Int64
	accepting      chan struct{} // closed when it may accept
	startOnce      sync.Once
}

// startGreeter starts a greeter; with acceptLate it accepts nothing until
// startAccepting (the kernel completes connections to its queue).
func startGreeter(t *testing.T, acceptLate bool) *greeter {
	t.Helper()
	g := &greeter{ln: testkit.Listen(t), accepting: make(chan struct{})}
	if !acceptLate {
		g.startAccepting()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go g.serve(&wg)
	t.Cleanup(func() { g.startAccepting(); _ = g.ln.Close(); wg.Wait() })
	return g
}

func (g *greeter) startAccepting() { g.startOnce.Do(func() { close(g.accepting) }) }

func (g *greeter) addr() *net.TCPAddr { return g.ln.Addr().(*net.TCPAddr) }

func (g *greeter) serve(wg *sync.WaitGroup) {
	defer wg.Done()
	<-g.accepting
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.accepted.Add(1)
		g.open.Add(1)
		wg.Add(1)
		go g.handle(c, wg)
	}
}

func (g *greeter) handle(c net.Conn, wg *sync.WaitGroup) {
	defer wg.Done()
	defer g.open.Add(-1)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(safety))
	if _, err := io.WriteString(c, greeting); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, c)
}

// startForwarder serves a forward to target through f, with floodSlots
// slots, until the test ends. Each upstream connection made is signaled on
// dialed and counted in made.
func startForwarder(t *testing.T, f relay.Func, target *net.TCPAddr, dialed chan<- struct{}, made *atomic.Int64) *proxy.Server {
	t.Helper()
	var d net.Dialer
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, address)
		if err == nil {
			made.Add(1)
			select {
			case dialed <- struct{}{}:
			default:
			}
		}
		return c, err
	}
	srv, err := proxy.New(proxy.Config{
		DialContext:    dial,
		Forwards:       []proxy.Forward{{TargetHost: target.IP.String(), TargetPort: target.Port}},
		ListenAddr:     "127.0.0.1",
		MaxConnections: floodSlots,
		Relay:          f,
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = srv.Serve(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitUntil(t, "the forwarder to serve", srv.Ready)
	return srv
}

// waitUntil polls cond until it holds, failing the test at the safety bound.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(safety)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", safety, what)
		}
		time.Sleep(time.Millisecond)
	}
}
