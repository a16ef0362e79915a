package proxy_test

import (
	"context"
	"crypto/x509"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// gatedListener hands out each accepted connection only once the test
// opens the gate, so the test decides what the client did before the
// sidecar looked at it.
type gatedListener struct {
	net.Listener
	gate chan struct{}
}

func (l gatedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		<-l.gate
	}
	return c, err
}

// A flood of clients that connect and leave at once (half with a reset),
// each gone before the sidecar takes it and before the next one connects:
// every slot is released, nothing is rejected, and none of them costs the
// database a connection.
func TestFloodOfDepartedClients(t *testing.T) {
	for _, dp := range dataPaths(t) {
		t.Run(dp.name, func(t *testing.T) {
			up := startUpstream(t, "127.0.0.1", hold)
			gate := make(chan struct{})
			listen := func(ctx context.Context, network, address string) (net.Listener, error) {
				ln, err := (&net.ListenConfig{}).Listen(ctx, network, address)
				return gatedListener{ln, gate}, err
			}
			const maxConns, clients = 20, 300
			r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, MaxConnections: maxConns,
				Relay: dp.f, Listen: listen})
			for i := range clients {
				c, err := net.DialTimeout("tcp", r.addrs[0], safety)
				if err != nil {
					t.Fatal(err)
				}
				if i%2 == 1 {
					_ = c.(*net.TCPConn).SetLinger(0) // RST
				}
				_ = c.Close()
				gate <- struct{}{}
				// And to release its slot: on a loaded machine the slots of
				// departed clients not yet handled could fill up and turn
				// the next client away, which is not what is tested here.
				waitFor(t, "the sidecar to take the client and release its slot", func() bool {
					s := forwardSnap(r, 0)
					return s.Total+s.Rejected >= uint64(i+1) && s.Active == 0
				})
			}
			waitFor(t, "every slot released", func() bool { return forwardSnap(r, 0).Active == 0 })
			snap := forwardSnap(r, 0)
			if snap.Rejected != 0 || up.count() != 0 || countOf(snap.ConnectionsClosed, "client_gone") != clients {
				t.Errorf("%d clients gone before the sidecar took them: %d rejected, %d upstream connections opened, %d closed as client_gone; want 0, 0, %d",
					clients, snap.Rejected, up.count(), countOf(snap.ConnectionsClosed, "client_gone"), clients)
			}
		})
	}
}

// A client that leaves while the upstream is slow to answer cancels the
// dial: it holds no slot and no upstream connection is made for it.
func TestClientLeavingDuringDialCancelsIt(t *testing.T) {
	var dials, canceled atomic.Int64
	blockDial := func(ctx context.Context, network, address string) (net.Conn, error) {
		dials.Add(1)
		<-ctx.Done()
		if context.Cause(ctx) != nil {
			canceled.Add(1)
		}
		return nil, ctx.Err()
	}
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{{TargetHost: "127.0.0.1", TargetPort: 9}},
		ConnectTimeout: time.Minute, DialContext: blockDial, MaxConnections: 5})
	for i := range 20 {
		c, err := net.DialTimeout("tcp", r.addrs[0], safety)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the dial to start", func() bool { return dials.Load() == int64(i+1) })
		if i%2 == 1 {
			_ = c.(*net.TCPConn).SetLinger(0)
		}
		_ = c.Close()
		waitFor(t, "the slot to be released", func() bool { return forwardSnap(r, 0).Active == 0 })
	}
	snap := forwardSnap(r, 0)
	if snap.Rejected != 0 || canceled.Load() != 20 || countOf(snap.ConnectionsClosed, "client_gone") != 20 {
		t.Errorf("rejected %d, dials canceled %d, client_gone %d; want 0, 20, 20", snap.Rejected, canceled.Load(), countOf(snap.ConnectionsClosed, "client_gone"))
	}
	if n := countOf(snap.DialFailures, "canceled"); n != 0 {
		t.Errorf("%d departed clients counted as failed dials of the target", n)
	}
}

// The drain deadline cutting a dial that has not been answered yet (on a
// deploy, a writer that does not answer) is the drain's doing, not the
// address's: counted and logged as drain_deadline, never as a failed dial
// of the target, as when the cut comes during the greeting's wait. An
// address that failed before it is still reported, alone.
func TestDrainDeadlineDuringDialIsNoDialFailure(t *testing.T) {
	for _, tc := range []struct {
		name    string
		refused bool   // a first address refuses before the one the drain cuts
		line    string // the "ended before another answered" line's err; "" = no line
	}{
		{"nothing failed before", false, ""},
		{"after an address refused", true, "127.0.0.2:3306: refused: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dials atomic.Int64
			dial := func(ctx context.Context, network, address string) (net.Conn, error) {
				dials.Add(1)
				if strings.HasPrefix(address, "127.0.0.2:") {
					return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
				}
				<-ctx.Done()
				return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
			}
			addrs := []netip.Addr{netip.MustParseAddr("127.0.0.3")}
			if tc.refused {
				addrs = append([]netip.Addr{netip.MustParseAddr("127.0.0.2")}, addrs...)
			}
			r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{{TargetHost: "db.sidecar.test", TargetPort: 3306}},
				Resolver: fixedAnswer(addrs), ConnectTimeout: time.Minute, DialContext: dial, DrainTimeout: 50 * time.Millisecond})
			c, err := net.DialTimeout("tcp", r.addrs[0], safety)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			waitFor(t, "the dials to start", func() bool { return dials.Load() == int64(len(addrs)) })
			if cut := r.shutdown(t); cut != 1 {
				t.Errorf("connections cut = %d, want 1", cut)
			}
			snap := forwardSnap(r, 0)
			for _, f := range snap.DialFailures {
				want := uint64(0)
				if f.Label == "refused" && tc.refused {
					want = 1
				}
				if f.Value != want {
					t.Errorf("sidecar_dial_failures_total{reason=%q} = %d, want %d", f.Label, f.Value, want)
				}
			}
			if n := countOf(snap.ConnectionsClosed, "drain_deadline"); n != 1 {
				t.Errorf("closed{drain_deadline} = %d, want 1", n)
			}
			if lines := r.logs.lines("dial target failed; closing client"); len(lines) != 0 {
				t.Errorf("dial target failed logged for a connection the drain cut: %v", lines)
			}
			lines := r.logs.lines("dial of a target address failed; the connection ended before another answered")
			switch {
			case tc.line == "" && len(lines) != 0:
				t.Errorf("logged %v, no address having failed", lines)
			case tc.line != "" && (len(lines) != 1 || !strings.HasPrefix(lines[0]["err"].(string), tc.line) || strings.Contains(lines[0]["err"].(string), "canceled")):
				t.Errorf("logged %v; want one line whose err names only the refused address (%s…)", lines, tc.line)
			}
		})
	}
}

// An app that leaves after its dial went a second unanswered, just before
// the drain deadline, was not cut by the drain: its connection is the
// unanswered dial failure it would be without the drain (counted, logged,
// closed as dial_failed), not a drain_deadline cut with a failure no line
// reports. The hooks order it: the app's dial ends (client gone) only
// once the deadline has cut another connection's dial.
func TestAppLeavingJustBeforeDrainDeadlineIsNoCut(t *testing.T) {
	var dials atomic.Int64
	cutOther := make(chan struct{})
	var shutdown atomic.Pointer[context.CancelFunc] // set once the rig is: its dials start later
	dialer := func(ctx context.Context, network, _ string) (net.Conn, error) {
		first := dials.Add(1) == 1
		<-ctx.Done()
		if first { // the app left: now the drain, whose deadline cuts the other dial
			(*shutdown.Load())()
			select {
			case <-cutOther:
			case <-time.After(safety):
			}
		} else {
			close(cutOther)
		}
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	}
	r := startProxy(t, proxy.WithUnansweredAfter(proxy.Config{Forwards: []proxy.Forward{{TargetHost: "db.sidecar.test", TargetPort: 3306}},
		Resolver: fixedAnswer{netip.MustParseAddr("127.0.0.3")}, ConnectTimeout: time.Minute, DialContext: dialer,
		DrainTimeout: time.Millisecond}, time.Nanosecond)) // any departure is past unansweredAfter
	shutdown.Store(&r.cancel)
	app := dial(t, r.addrs[0])
	waitFor(t, "the app's dial to start", func() bool { return dials.Load() == 1 })
	_ = dial(t, r.addrs[0]) // stays: the drain deadline cuts it
	waitFor(t, "the other dial to start", func() bool { return dials.Load() == 2 })
	_ = app.Close()
	if cut := r.shutdown(t); cut != 1 {
		t.Errorf("connections cut = %d, want 1 (the one that stayed)", cut)
	}
	snap := forwardSnap(r, 0)
	if countOf(snap.DialFailures, "unanswered") != 1 || countOf(snap.ConnectionsClosed, "dial_failed") != 1 || countOf(snap.ConnectionsClosed, "drain_deadline") != 1 {
		t.Errorf("dial failures %v, closed %v; want one unanswered dial closed as dial_failed, and one drain_deadline", snap.DialFailures, snap.ConnectionsClosed)
	}
	if lines := r.logs.lines("dial target failed; closing client"); len(lines) != 1 || lines[0]["reason"] != "unanswered" {
		t.Errorf("dial target failed lines %v; want one, reason unanswered", lines)
	}
}

// fixedAnswer is a resolver whose every answer is its addresses.
type fixedAnswer []netip.Addr

func (a fixedAnswer) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return a, nil
}

// On the MySQL-aware (TLS) path, a client that leaves while the server has
// not greeted yet ends the login at once: no slot waits for LoginTimeout.
func TestTLSLoginEndsWhenClientLeaves(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", hold) // accepts, never greets
	fw := forwardTo(up)
	fw.TLS = &mysqltls.Target{Mode: mysqltls.VerifyCA, Roots: x509.NewCertPool(), RootsFrom: "test"}
	const maxConns, clients = 5, 20
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{fw}, MaxConnections: maxConns})
	for i := range clients {
		c := dial(t, r.addrs[0])
		waitFor(t, "the upstream connection or a rejection", func() bool {
			return up.count() == i+1 || forwardSnap(r, 0).Rejected > 0
		})
		if i%2 == 1 {
			_ = c.SetLinger(0)
		}
		_ = c.Close()
	}
	waitFor(t, "every slot released", func() bool { return forwardSnap(r, 0).Active == 0 })
	snap := forwardSnap(r, 0)
	if snap.Rejected != 0 || countOf(snap.ConnectionsClosed, "client_gone") != clients {
		t.Errorf("%d clients left during the login: %d rejected, closed by reason %v; want 0 rejected, all client_gone",
			clients, snap.Rejected, snap.ConnectionsClosed)
	}
}

// A login the drain deadline cuts is counted as cut by the drain, not as a
// refused TLS login: the server did not refuse anything. The app sees its
// connection close, not an ERR blaming the database.
func TestTLSLoginCutByDrainDeadline(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", hold) // accepts, never greets
	fw := forwardTo(up)
	fw.TLS = &mysqltls.Target{Mode: mysqltls.VerifyCA, Roots: x509.NewCertPool(), RootsFrom: "test"}
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{fw}, DrainTimeout: 200 * time.Millisecond})
	c := dial(t, r.addrs[0])
	waitFor(t, "the login to wait for the greeting", func() bool { return up.count() == 1 })
	if cut := r.shutdown(t); cut != 1 {
		t.Errorf("connections cut = %d, want 1", cut)
	}
	_ = c.SetReadDeadline(time.Now().Add(safety))
	if b, err := io.ReadAll(c); len(b) != 0 || err != nil {
		t.Errorf("the app read %q, %v; want its connection closed, nothing sent", b, err)
	}
	snap := forwardSnap(r, 0)
	if countOf(snap.ConnectionsClosed, "drain_deadline") != 1 || len(r.logs.lines("TLS login refused; the app was sent a MySQL error")) != 0 {
		t.Errorf("closed by reason %v, TLS refusals %v; want one drain_deadline and no refusal\n%s", snap.ConnectionsClosed, snap.TLSRefusals, r.logs)
	}
}

// A refusal the app was sent counts as one also when the app reads it and
// leaves at once (every driver does), though the watch for departed
// clients may see it leave before the login returns: a new writer's "Too
// many connections" in a reconnect storm is a refusal to see at WARN, not
// clients gone. The race is lost now and then, so many logins run.
func TestRefusedAppThatLeavesAtOnceIsRefused(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", func(c *net.TCPConn) {
		_, _ = mysqlwire.WritePacket(c, 0, mysqlwire.ErrPacket(1040, "08004", "Too many connections"))
		_, _ = io.Copy(io.Discard, c)
	})
	fw := forwardTo(up)
	fw.TLS = &mysqltls.Target{Mode: mysqltls.VerifyCA, Roots: x509.NewCertPool(), RootsFrom: "test"}
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{fw}})
	const logins, parallel = 400, 8
	var wg sync.WaitGroup
	for w := range parallel {
		wg.Go(func() {
			for range logins / parallel {
				c := dial(t, r.addrs[w%len(r.addrs)])
				_ = c.SetReadDeadline(time.Now().Add(safety))
				b := make([]byte, 256)
				if k, err := c.Read(b); err != nil || k < 5 || b[4] != mysqlwire.ErrPacketHdr {
					t.Errorf("read %q, %v; want the server's ERR", b[:k], err)
				}
				_ = c.Close()
			}
		})
	}
	wg.Wait()
	waitFor(t, "every login to end", func() bool { return forwardSnap(r, 0).Active == 0 })
	snap := forwardSnap(r, 0)
	if got := countOf(snap.TLSRefusals, mysqltls.ReasonServerError); got != logins {
		t.Errorf("%d server_error refusals after %d; closed by reason %v", got, logins, snap.ConnectionsClosed)
	}
}

// While clients leave in a flood, a new client waits a grace before the
// dial: one that leaves during it costs the database no connection, and
// one that stays is connected after it.
func TestDepartureGraceDuringFlood(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", echo)
	gate := make(chan struct{}, 1)
	listen := func(ctx context.Context, network, address string) (net.Listener, error) {
		ln, err := (&net.ListenConfig{}).Listen(ctx, network, address)
		return gatedListener{ln, gate}, err
	}
	const flood = 3
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, Listen: listen,
		DepartureFlood: flood, DepartureGrace: time.Minute}) // longer than any test waits: a departure is always inside it
	dial := func() *net.TCPConn {
		c, err := net.DialTimeout("tcp", r.addrs[0], safety)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.TCPConn)
	}
	// The flood: clients gone before the sidecar takes them.
	for i := range flood {
		_ = dial().Close()
		gate <- struct{}{}
		waitFor(t, "the departure to be counted", func() bool {
			return countOf(forwardSnap(r, 0).ConnectionsClosed, "client_gone") == uint64(i+1)
		})
	}
	// This client is taken while it is still there (the pre-dial check
	// passes), and leaves only then: without the grace, it would be dialed
	// for at once.
	c := dial()
	gate <- struct{}{}
	waitFor(t, "the sidecar to take the client", func() bool { return forwardSnap(r, 0).Active == 1 })
	_ = c.Close()
	waitFor(t, "the slot to be released", func() bool { return forwardSnap(r, 0).Active == 0 })
	snap := forwardSnap(r, 0)
	if up.count() != 0 || countOf(snap.ConnectionsClosed, "client_gone") != flood+1 {
		t.Errorf("a client that left during the grace: %d upstream connections, %d client_gone; want 0 and %d",
			up.count(), countOf(snap.ConnectionsClosed, "client_gone"), flood+1)
	}
}

// A client that stays through the grace is connected and served.
func TestDepartureGraceServesClientsThatStay(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", echo)
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, DepartureFlood: 1, DepartureGrace: 50 * time.Millisecond})
	c, err := net.DialTimeout("tcp", r.addrs[0], safety)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close() // one departure: the grace is on for the next client
	waitFor(t, "the departure to be counted", func() bool {
		return countOf(forwardSnap(r, 0).ConnectionsClosed, "client_gone") == 1
	})
	stays, err := net.DialTimeout("tcp", r.addrs[0], safety)
	if err != nil {
		t.Fatal(err)
	}
	defer stays.Close()
	_ = stays.SetDeadline(time.Now().Add(safety))
	if err := echoRoundTrip(stays.(*net.TCPConn), []byte("still here")); err != nil {
		t.Fatalf("a client that stayed through the grace: %v", err)
	}
}

// With TLS the app speaks MySQL to the sidecar, so a connection beyond
// MaxConnections is told why in a server's own "too many connections"
// ERR, not left to read a lost connection.
func TestTLSConnectionBeyondTheLimitIsTold(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", hold) // accepts, never greets: the first login holds its slot
	fw := forwardTo(up)
	fw.TLS = &mysqltls.Target{Mode: mysqltls.VerifyCA, Roots: x509.NewCertPool(), RootsFrom: "test"}
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{fw}, MaxConnections: 1})
	held := dial(t, r.addrs[0])
	defer held.Close()
	waitFor(t, "the first login to wait for the greeting", func() bool { return up.count() == 1 })

	c := dial(t, r.addrs[0])
	_ = c.SetReadDeadline(time.Now().Add(safety))
	p, err := mysqlwire.ReadPacket(c, 1<<16)
	if err != nil {
		t.Fatalf("the connection beyond the limit read no packet: %v", err)
	}
	if len(p.Payload) < 9 || p.Payload[0] != mysqlwire.ErrPacketHdr || p.Seq != 0 {
		t.Fatalf("first packet %q (seq %d); want an ERR in place of the greeting", p.Payload, p.Seq)
	}
	code := int(p.Payload[1]) | int(p.Payload[2])<<8
	state, msg := string(p.Payload[4:9]), string(p.Payload[9:])
	if code != 1040 || state != "08004" || !strings.Contains(msg, "MAX_CONNECTIONS=1") {
		t.Errorf("ERR %d (%s) %q; want 1040 (08004) naming MAX_CONNECTIONS=1", code, state, msg)
	}
	if b, err := io.ReadAll(c); len(b) != 0 || err != nil {
		t.Errorf("after the ERR the app read %q, %v; want its connection closed", b, err)
	}
	// Counted as rejected only: no login was refused.
	if s := forwardSnap(r, 0); s.Rejected != 1 || countOf(s.TLSRefusals, mysqltls.ReasonDialFailed) != 0 {
		t.Errorf("rejected %d, TLS refusals %v; want 1 rejection and no refusal", s.Rejected, s.TLSRefusals)
	}
}

// An app that leaves without sending a byte of its login (a pool giving
// up, a TCP health check) has left, as one that leaves before the dial
// has: client_gone, whichever the sidecar saw first, the app's close or
// the server's greeting, and whether the app read the greeting or reset.
// Only an app that left partway through its login is refused as io_error.
// The close races the greeting, so many clients run each case.
func TestTLSAppLeavingWithoutALoginIsGone(t *testing.T) {
	greets := func(c *net.TCPConn) { _, _ = mysqlwire.WritePacket(c, 0, greetingWithTLS()); hold(c) }
	readGreeting := func(t *testing.T, c *net.TCPConn) {
		if _, _, _, isErr := readFirst(t, c); isErr {
			t.Error("the app read an ERR; want the server's greeting")
		}
	}
	for _, tc := range []struct {
		name  string
		leave func(*testing.T, *net.TCPConn)
		want  string // what closes the connection
	}{
		{"closes at once", func(_ *testing.T, c *net.TCPConn) { _ = c.Close() }, "client_gone"},
		{"resets at once", func(_ *testing.T, c *net.TCPConn) { _ = c.SetLinger(0); _ = c.Close() }, "client_gone"},
		{"closes after the greeting", func(t *testing.T, c *net.TCPConn) { readGreeting(t, c); _ = c.Close() }, "client_gone"},
		{"resets after the greeting", func(t *testing.T, c *net.TCPConn) { readGreeting(t, c); _ = c.SetLinger(0); _ = c.Close() }, "client_gone"},
		{"leaves partway through its login", func(t *testing.T, c *net.TCPConn) {
			readGreeting(t, c)
			_, _ = c.Write([]byte{40, 0, 0, 1, 0x0f}) // a header and 1 byte of a 40-byte response
			_ = c.Close()
		}, "tls_refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startUpstream(t, "127.0.0.1", greets)
			fw := forwardTo(up)
			fw.TLS = &mysqltls.Target{Mode: mysqltls.VerifyCA, Roots: x509.NewCertPool(), RootsFrom: "test"}
			r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{fw}, DepartureGrace: -1})
			const clients, parallel = 200, 4
			var wg sync.WaitGroup
			for range parallel {
				wg.Go(func() {
					for range clients / parallel {
						tc.leave(t, dial(t, r.addrs[0]))
					}
				})
			}
			wg.Wait()
			waitFor(t, "every client closed", func() bool {
				var n uint64
				for _, c := range forwardSnap(r, 0).ConnectionsClosed {
					n += c.Value
				}
				return n == clients
			})
			snap := forwardSnap(r, 0)
			refusedIO := uint64(0)
			if tc.want == "tls_refused" {
				refusedIO = clients
			}
			if countOf(snap.ConnectionsClosed, tc.want) != clients || countOf(snap.TLSRefusals, mysqltls.ReasonIO) != refusedIO {
				t.Errorf("%d clients: closed by reason %v, refusals %v; want all %s, io_error %d",
					clients, snap.ConnectionsClosed, snap.TLSRefusals, tc.want, refusedIO)
			}
		})
	}
}
