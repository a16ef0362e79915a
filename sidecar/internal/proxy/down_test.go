package proxy_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/example/sidecar/sidecar/internal/proxy"
	"github.com/example/sidecar/sidecar/internal/testdns"
)

// deadAddr never answers a SYN (a dead instance, an IPv6 path a security
// group drops): blackholing dials it, counting in dead, and dials every
// other address for real. A real dial is bounded by safety, not by the
// connect timeout, which is for deadAddr: a test's short one would also
// fail a loopback dial a loaded runner deschedules that long.
const deadAddr = "127.0.0.3"

// deadDials counts the dials of deadAddr. While alive is set they reach
// 127.0.0.1 at the same port, where the upstream listens: the writer
// before it died.
type deadDials struct {
	atomic.Int32
	alive atomic.Bool
}

func blackholing(dead *deadDials) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: safety}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if port, ok := strings.CutPrefix(addr, deadAddr+":"); ok {
			dead.Add(1)
			if dead.alive.Load() {
				return d.DialContext(context.WithoutCancel(ctx), network, "127.0.0.1:"+port)
			}
			<-ctx.Done()
			return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
		}
		ctx = context.WithoutCancel(ctx)
		return d.DialContext(ctx, network, addr)
	}
}

// startDeadTarget serves a proxy to db.sidecar.test, which DNS answers
// with deadAddr and, if live, then the upstream it starts (running
// handle). dead counts the dials of deadAddr, dead from the start unless
// the test sets dead.alive. cfg's ConnectTimeout
// defaults to a minute here.
func startDeadTarget(t *testing.T, handle func(*net.TCPConn), live bool, cfg proxy.Config) (r *rig, dns *testdns.Server, up *upstream, dead *deadDials) {
	t.Helper()
	dns = testdns.Start(t)
	up = startUpstream(t, "127.0.0.1", handle)
	addrs := []netip.Addr{netip.MustParseAddr(deadAddr)}
	if live {
		addrs = append(addrs, up.addr.Addr())
	}
	dns.Set("db.sidecar.test", addrs...)
	dead = new(deadDials)
	cfg.Forwards = []proxy.Forward{{TargetHost: "db.sidecar.test", TargetPort: int(up.addr.Port())}}
	cfg.DNSCacheTTL, cfg.DialContext, cfg.Resolver = 5*time.Second, blackholing(dead), dns.Resolver()
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = time.Minute
	}
	return startProxy(t, cfg), dns, up, dead
}

// A dead first address costs one connection CONNECT_TIMEOUT: the next
// ones try it last, and the operator is told.
func TestDeadAddressIsTriedLast(t *testing.T) {
	t.Parallel()
	r, _, up, dead := startDeadTarget(t, echo, true, proxy.Config{ConnectTimeout: 200 * time.Millisecond})
	for i := range 5 {
		if err := dialExchange(r.addrs[0], []byte("hello")); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	if n := dead.Load(); n != 1 {
		t.Errorf("the dead first address was dialed %d times by 5 connections; want once", n)
	}
	if n := countOf(forwardSnap(r, 0).DialFailures, "timeout"); n != 1 {
		t.Errorf("dial_failures{timeout} = %d, want 1", n)
	}
	lines := r.logs.lines("dial of a target address failed")
	if len(lines) != 1 || lines[0]["level"] != "WARN" || !strings.Contains(lines[0]["err"].(string), deadAddr) || lines[0]["upstream"] != up.addr.String() {
		t.Errorf("want one WARN naming the dead address and the one that answered; got %v", lines)
	}
}

// An app whose connect timeout is shorter than CONNECT_TIMEOUT leaves
// while the sidecar waits on a dead address. A dial unanswered for a
// second counts as failed (the operator sees it, and the address goes
// last), so the app's next connection reaches the live address.
func TestUnansweredDialWhenTheAppLeaves(t *testing.T) {
	t.Parallel()
	greet := func(c *net.TCPConn) { _, _ = c.Write([]byte("greeting")); hold(c) } // MySQL is server-first
	r, _, _, dead := startDeadTarget(t, greet, true, proxy.Config{})
	impatient := dial(t, r.addrs[0])
	waitFor(t, "the dead address dialed", func() bool { return dead.Load() == 1 })
	time.Sleep(1100 * time.Millisecond) // the app's connect timeout, past the second after which a dial is unanswered
	_ = impatient.Close()
	waitFor(t, "the first connection ended", func() bool { return forwardSnap(r, 0).Active == 0 })

	s := forwardSnap(r, 0)
	if countOf(s.DialFailures, "unanswered") != 1 || countOf(s.ConnectionsClosed, "dial_failed") != 1 || countOf(s.ConnectionsClosed, "client_gone") != 0 {
		t.Errorf("dial failures %v, closed %v; want one unanswered dial, closed as dial_failed", s.DialFailures, s.ConnectionsClosed)
	}
	if lines := r.logs.lines("dial target failed"); len(lines) != 1 || lines[0]["reason"] != "unanswered" || !strings.Contains(lines[0]["err"].(string), deadAddr) {
		t.Errorf("want one \"dial target failed\" line, reason unanswered, naming the address; got %v", lines)
	}

	next := dial(t, r.addrs[0])
	_ = next.SetReadDeadline(time.Now().Add(safety))
	if _, err := io.ReadFull(next, make([]byte, len("greeting"))); err != nil {
		t.Fatalf("the next connection: %v", err)
	}
	if n := dead.Load(); n != 1 {
		t.Errorf("the dead address was dialed %d times; want once", n)
	}
}

// A client that leaves within the second (a pool giving up fast, an nc -z
// check) says nothing about the address: not counted, not put last. The
// second is an hour here, so the departure is within it however long a
// loaded machine takes to notice it.
func TestQuickDepartureDuringADialIsNotAFailure(t *testing.T) {
	t.Parallel()
	r, _, _, dead := startDeadTarget(t, hold, false, proxy.WithUnansweredAfter(proxy.Config{}, time.Hour))
	c := dial(t, r.addrs[0])
	waitFor(t, "the dead address dialed", func() bool { return dead.Load() == 1 })
	_ = c.Close()
	waitFor(t, "the connection ended", func() bool { return forwardSnap(r, 0).Active == 0 })
	s := forwardSnap(r, 0)
	var failures uint64
	for _, f := range s.DialFailures {
		failures += f.Value
	}
	if failures != 0 || countOf(s.ConnectionsClosed, "client_gone") != 1 {
		t.Errorf("dial failures %v, closed %v; want none counted and the client gone", s.DialFailures, s.ConnectionsClosed)
	}
}

// An unanswered dial while DNS moves to another address (a failover the
// stale check cached during the dial) is still a dial failure: the client
// has left, so no new address is looked up or dialed for it. Any
// departure is unanswered here (the second is a nanosecond). A check
// asks A and AAAA, and the next check asks only once the last one has
// cached its answer: the query counts say when one has.
func TestUnansweredDialWhileDNSMoves(t *testing.T) {
	t.Parallel()
	r, dns, up, dead := startDeadTarget(t, hold, false, proxy.WithUnansweredAfter(proxy.Config{StaleCheckInterval: 100 * time.Millisecond}, time.Nanosecond))
	waitFor(t, "a stale check cached the answer", func() bool { return dns.Queries() >= 3 })
	impatient := dial(t, r.addrs[0])
	waitFor(t, "the dead address dialed", func() bool { return dead.Load() == 1 })
	q := dns.Queries()
	dns.Set("db.sidecar.test", up.addr.Addr()) // failover: the stale check caches it
	waitFor(t, "a stale check that began after the failover cached its answer", func() bool { return dns.Queries() >= q+5 })
	_ = impatient.Close()
	waitFor(t, "the connection ended", func() bool { return forwardSnap(r, 0).Active == 0 })
	s := forwardSnap(r, 0)
	if countOf(s.DialFailures, "unanswered") != 1 || countOf(s.ConnectionsClosed, "dial_failed") != 1 || countOf(s.ConnectionsClosed, "client_gone") != 0 {
		t.Errorf("dial failures %v, closed %v; want one unanswered dial closed as dial_failed", s.DialFailures, s.ConnectionsClosed)
	}
	if n := len(r.logs.lines("dial target failed")); n != 1 {
		t.Errorf("%d dial target failed lines, want 1", n)
	}
}

// An unanswered dial of the first of two cached addresses keeps the
// answer: the second was never tried, so DNS is not asked again. Any
// departure is unanswered here (the second is a nanosecond), so the
// cache is filled by a connection the first address answers, before it
// dies: a dial of it the client left would put it last.
func TestUnansweredDialKeepsTheAnswer(t *testing.T) {
	t.Parallel()
	r, dns, up, dead := startDeadTarget(t, hold, true, proxy.WithUnansweredAfter(proxy.Config{}, time.Nanosecond))
	dead.alive.Store(true)
	warm := dial(t, r.addrs[0])
	waitFor(t, "the first address answered", func() bool { return up.count() == 1 })
	_ = warm.Close()
	dead.alive.Store(false)
	waitFor(t, "ended", func() bool { return forwardSnap(r, 0).Active == 0 })
	time.Sleep(proxy.MinRelookup) // forget does nothing within it of the last lookup: a wrong one would not show
	q := dns.Queries()
	impatient := dial(t, r.addrs[0])
	waitFor(t, "the dead address dialed again", func() bool { return dead.Load() == 2 })
	_ = impatient.Close()
	waitFor(t, "ended", func() bool { return forwardSnap(r, 0).Active == 0 })
	next := dial(t, r.addrs[0]) // a forgotten answer is looked up again here
	waitFor(t, "the next connection reached the second address", func() bool { return up.count() == 2 })
	_ = next.Close()
	if n := countOf(forwardSnap(r, 0).DialFailures, "unanswered"); n != 1 {
		t.Errorf("%d unanswered dials, want 1", n)
	}
	if n := dns.Queries() - q; n != 0 {
		t.Errorf("an unanswered dial of one of two cached addresses cost %d DNS queries; want 0 (the answer is still good)", n)
	}
}

// Failover moved DNS off the only cached address, and an app with a short
// connect timeout left after more than a second (unanswered; a nanosecond
// here): every address failed, so the next connection looks the name up
// first rather than dial the dead address again.
func TestUnansweredLastAddressForgetsTheAnswer(t *testing.T) {
	t.Parallel()
	greet := func(c *net.TCPConn) { _, _ = c.Write([]byte("greeting")); hold(c) }
	r, dns, up, dead := startDeadTarget(t, greet, false, proxy.WithUnansweredAfter(proxy.Config{}, time.Nanosecond))
	dead.alive.Store(true) // the writer, until the failover
	warm := dial(t, r.addrs[0])
	_ = warm.SetReadDeadline(time.Now().Add(safety))
	if _, err := io.ReadFull(warm, make([]byte, len("greeting"))); err != nil {
		t.Fatalf("the connection that fills the cache: %v", err)
	}
	_ = warm.Close()
	dead.alive.Store(false)
	dns.Set("db.sidecar.test", up.addr.Addr()) // failover
	waitFor(t, "ended", func() bool { return forwardSnap(r, 0).Active == 0 })
	time.Sleep(proxy.MinRelookup) // forget does nothing within it of the last lookup
	impatient := dial(t, r.addrs[0])
	waitFor(t, "the dead address dialed", func() bool { return dead.Load() == 2 })
	_ = impatient.Close()
	waitFor(t, "ended", func() bool { return forwardSnap(r, 0).Active == 0 })
	q := dns.Queries()
	next := dial(t, r.addrs[0])
	_ = next.SetReadDeadline(time.Now().Add(safety)) // a dial of the dead address fails it below (dead), however soon it answers
	_, err := io.ReadFull(next, make([]byte, len("greeting")))
	if err != nil || dns.Queries() == q || dead.Load() != 2 || countOf(forwardSnap(r, 0).DialFailures, "unanswered") != 1 {
		t.Errorf("the next connection: %v, %d DNS queries, the dead address dialed %d times, dial failures %v; want the new writer, through a lookup, after one unanswered dial", err, dns.Queries()-q, dead.Load(), forwardSnap(r, 0).DialFailures)
	}
}
