package proxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/sidecar/internal/proxy"
	"github.com/example/sidecar/sidecar/internal/testdns"
)

// connectEcho opens a connection through r, checks that it carries bytes,
// and closes it.
func connectEcho(t *testing.T, r *rig) {
	t.Helper()
	if err := dialExchange(r.addrs[0], []byte("hello")); err != nil {
		t.Fatal(err)
	}
}

// A burst of connections shares one DNS answer while it is younger than
// DNSCacheTTL; with the cache off each connection looks the name up.
func TestDNSCacheBoundsLookups(t *testing.T) {
	for _, tt := range []struct {
		name string
		ttl  time.Duration
	}{{"cached", time.Hour}, {"off", -1}} {
		t.Run(tt.name, func(t *testing.T) {
			dns, a, _, r := startFailover(t, proxy.Config{DNSCacheTTL: tt.ttl})
			connectEcho(t, r)
			first := dns.Queries()
			const n = 50
			for range n {
				connectEcho(t, r)
			}
			more := dns.Queries() - first
			if tt.ttl > 0 && more != 0 {
				t.Errorf("%d connections within the TTL sent %d more DNS queries, want 0", n, more)
			}
			if tt.ttl < 0 && more < n {
				t.Errorf("%d connections with the cache off sent %d DNS queries, want one lookup each", n, more)
			}
			if a.count() != n+1 {
				t.Errorf("upstream got %d connections, want %d", a.count(), n+1)
			}
		})
	}
}

// After a DNS change new connections follow once the cached answer is
// DNSCacheTTL old, or at once when a stale check has heard the new answer.
func TestDNSCacheFollowsFailover(t *testing.T) {
	t.Run("expiry", func(t *testing.T) {
		dns, a, b, r := startFailover(t, proxy.Config{DNSCacheTTL: 200 * time.Millisecond})
		connectEcho(t, r)
		dns.Set("db.sidecar.test", b.addr.Addr()) // failover
		waitFor(t, "a new connection on B", func() bool { connectEcho(t, r); return b.count() > 0 })
		if a.count() < 1 {
			t.Errorf("A got no connection")
		}
	})
	t.Run("the cached writer refuses", func(t *testing.T) {
		dns, a, b, r := startFailover(t, proxy.Config{DNSCacheTTL: time.Hour})
		connectEcho(t, r)
		time.Sleep(proxy.MinRelookup) // a younger answer is not second-guessed
		dns.Set("db.sidecar.test", b.addr.Addr())
		_ = a.ln.Close()  // the old writer restarts: refused
		connectEcho(t, r) // the cached answer fails; the same connection is dialed to the new answer
		if b.count() != 1 {
			t.Errorf("B got %d connections, want 1", b.count())
		}
		connectEcho(t, r) // and the new answer is the cache now
		if b.count() != 2 || dns.Queries() > 4 {
			t.Errorf("B got %d connections and DNS %d queries; want 2 and 2 lookups", b.count(), dns.Queries())
		}
	})
	t.Run("the new answer still lists the refusing writer", func(t *testing.T) {
		// DNS lags: it names the new writer but still lists the old one
		// first. The connection dials only what it has not tried: the old
		// writer refused it a moment ago.
		dns, a, b, r := startFailover(t, proxy.Config{DNSCacheTTL: time.Hour})
		connectEcho(t, r)
		time.Sleep(proxy.MinRelookup)
		dns.Set("db.sidecar.test", a.addr.Addr(), b.addr.Addr())
		_ = a.ln.Close()
		connectEcho(t, r)
		if refused := countOf(forwardSnap(r, 0).DialFailures, "refused"); refused != 1 || b.count() != 1 {
			t.Errorf("%d refused dials and %d connections to B; want the old writer dialed once, then B", refused, b.count())
		}
	})
	t.Run("the writer is down", func(t *testing.T) {
		// DNS still names the refusing writer: failed connections look it
		// up again at most once per MinRelookup, not each time.
		dns, a, _, r := startFailover(t, proxy.Config{DNSCacheTTL: time.Hour})
		connectEcho(t, r)
		_ = a.ln.Close()
		time.Sleep(proxy.MinRelookup)
		q := dns.Queries()
		start := time.Now()
		const n = 50
		for range n {
			if err := dialExchange(r.addrs[0], []byte("hello")); err == nil {
				t.Fatal("a connection to a refusing writer carried bytes")
			}
		}
		lookups := (dns.Queries() - q) / 2 // A and AAAA
		most := 1 + int64(time.Since(start)/proxy.MinRelookup)
		if lookups < 1 || lookups > most {
			t.Errorf("%d failed connections in %v made %d lookups, want 1 to %d", n, time.Since(start), lookups, most)
		}
	})
	t.Run("refused while the lookup runs", func(t *testing.T) {
		// The old writer refuses a connection that used the last answer
		// while the lookup that will name the new one runs: the connection
		// waits for that lookup (no query more) rather than fail.
		dns, a, b, r, release, first := expireAndStall(t, proxy.Config{DNSCacheTTL: 200 * time.Millisecond})
		dns.Set("db.sidecar.test", b.addr.Addr()) // failover: the stalled lookup will answer B
		_ = a.ln.Close()                          // the old writer refuses
		second := make(chan error, 1)
		go func() { second <- dialExchange(r.addrs[0], []byte("hello")) }()
		waitFor(t, "the refusal", func() bool { return countOf(forwardSnap(r, 0).DialFailures, "refused") == 1 })
		release()
		if err := <-first; err != nil {
			t.Errorf("the connection that started the lookup: %v", err)
		}
		if err := <-second; err != nil {
			t.Errorf("the connection refused while the lookup ran: %v; want it dialed to the lookup's answer", err)
		}
		if b.count() != 2 {
			t.Errorf("B got %d connections, want 2", b.count())
		}
	})
	t.Run("stale check refreshes", func(t *testing.T) {
		dns, a, b, r := startFailover(t, proxy.Config{DNSCacheTTL: time.Hour, StaleCheckInterval: 100 * time.Millisecond, StaleAfter: 200 * time.Millisecond})
		connectEcho(t, r)
		connectEcho(t, r)
		if a.count() != 2 {
			t.Fatalf("A got %d connections, want 2", a.count())
		}
		dns.Set("db.sidecar.test", b.addr.Addr())
		// Only the stale check looks the name up: the cache lasts an hour.
		waitFor(t, "a connection to B after a stale check", func() bool {
			_ = dialExchange(r.addrs[0], []byte("hello")) // the check may close one to A meanwhile
			return b.count() > 0
		})
	})
}

// When every address of the cached answer fails and the name, looked up
// again, gives another, the log names every address that failed for the
// connection, whichever round dialed it: the old writer's refusal is the
// failover's first sign, and it is counted (sidecar_dial_failures_total)
// and put last, so it must show in the line that explains those.
func TestFailoverLogNamesEveryFailedAddress(t *testing.T) {
	for _, tt := range []struct {
		name       string
		newRefuses bool   // the new writer refuses too
		msg        string // the line that reports the failures
	}{
		{"the new writer answers", false, "dial of a target address failed"},
		{"the new writer refuses too", true, "dial target failed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dns, a, b, r := startFailover(t, proxy.Config{DNSCacheTTL: time.Hour})
			connectEcho(t, r)
			time.Sleep(proxy.MinRelookup) // a younger answer is not second-guessed
			dns.Set("db.sidecar.test", b.addr.Addr())
			_ = a.ln.Close() // the old writer restarts: refused
			if tt.newRefuses {
				_ = b.ln.Close()
				if err := dialExchange(r.addrs[0], []byte("hello")); err == nil {
					t.Fatal("a connection carried bytes with both writers refusing")
				}
			} else {
				connectEcho(t, r) // dialed to the new answer after the old writer refused
			}
			// Both lines are written before the client hears of the outcome.
			lines := r.logs.lines(tt.msg)
			if len(lines) != 1 {
				t.Fatalf("%d %q lines, want 1", len(lines), tt.msg)
			}
			l := lines[0]
			errText, _ := l["err"].(string)
			want := []string{a.addr.String() + ": refused"}
			if tt.newRefuses {
				want = append(want, b.addr.String()+": refused")
			} else if l["upstream"] != b.addr.String() {
				t.Errorf("upstream = %v, want the new writer %s", l["upstream"], b.addr)
			}
			for _, w := range want {
				if !strings.Contains(errText, w) {
					t.Errorf("%q line's err = %q; want it to name %q", tt.msg, errText, w)
				}
			}
		})
	}
}

// countingResolver counts the lookups asked of it: Go's resolver shares
// concurrent identical lookups itself, so DNS queries cannot show whether
// the cache does.
type countingResolver struct {
	proxy.Resolver
	calls atomic.Int64
	// lookups counts the target's lookups exactly: each asks "ip" once
	// (resolve), and only a failed or empty one asks each family too.
	lookups atomic.Int64
}

func (c *countingResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	c.calls.Add(1)
	if network == "ip" {
		c.lookups.Add(1)
	}
	return c.Resolver.LookupNetIP(ctx, network, host)
}

// expireAndStall caches the target's answer, lets it expire, stalls DNS
// and starts a connection, whose lookup DNS then holds: its result comes
// on first once release (or the lookup's timeout) ends the stall.
func expireAndStall(t *testing.T, cfg proxy.Config) (dns *testdns.Server, a, b *upstream, r *rig, release func(), first <-chan error) {
	t.Helper()
	dns, a, b, r = startFailover(t, cfg)
	connectEcho(t, r)
	time.Sleep(cfg.DNSCacheTTL)
	release = dns.Stall()
	errs := make(chan error, 1)
	go func() { errs <- dialExchange(r.addrs[0], []byte("hello")) }()
	waitFor(t, "the first connection's lookup", func() bool { return dns.Stalled() >= 2 }) // A and AAAA
	return dns, a, b, r, release, errs
}

// Connections that arrive while the target is being looked up do not look
// it up again: a burst on a cold cache waits for one lookup, and with an
// answer in hand they use it meanwhile, so a resolver that drops queries
// delays the one connection that asks, not all.
func TestDNSCacheSharesLookups(t *testing.T) {
	t.Run("cold burst", func(t *testing.T) {
		dns, a, res, r := startCounted(t, proxy.Config{DNSCacheTTL: time.Hour})
		release := dns.Stall()
		const n = 20
		errs := make(chan error, n)
		for range n {
			go func() { errs <- dialExchange(r.addrs[0], []byte("hello")) }()
		}
		waitFor(t, "every connection dialing", func() bool { return r.srv.Snapshot().Forwards[0].Active == n })
		waitFor(t, "a lookup", func() bool { return dns.Stalled() > 0 })
		release()
		for range n {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		if lookups := res.calls.Load(); lookups != 1 || a.count() != n {
			t.Errorf("%d connections arriving together made %d lookups and %d upstream connections; want 1 and %d", n, lookups, a.count(), n)
		}
	})
	t.Run("lookup under way", func(t *testing.T) {
		dns, a, _, r, release, first := expireAndStall(t, proxy.Config{DNSCacheTTL: 100 * time.Millisecond})
		asked := dns.Stalled()
		const n = 10
		for range n {
			connectEcho(t, r) // the last answer, while the first connection's lookup is under way
		}
		if more := dns.Stalled() - asked; more != 0 {
			t.Errorf("%d connections during a lookup sent %d more queries, want 0", n, more)
		}
		select {
		case err := <-first:
			t.Fatalf("the first connection ended (%v) before its lookup was answered: the others waited for the lookup", err)
		default:
		}
		release()
		if err := <-first; err != nil {
			t.Error(err)
		}
		if a.count() != n+2 {
			t.Errorf("upstream got %d connections, want %d", a.count(), n+2)
		}
	})
	t.Run("its client leaves", func(t *testing.T) {
		// The lookup goes on without the connection that started it (an
		// app's connect timeout may be shorter than the lookup): the
		// others keep the last answer meanwhile, and its answer is kept.
		const ttl = 300 * time.Millisecond
		dns, a, b, r := startFailover(t, proxy.Config{DNSCacheTTL: ttl})
		connectEcho(t, r)
		time.Sleep(ttl)
		release := dns.Stall()
		defer release()
		c, err := net.Dial("tcp", r.addrs[0])
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the first connection's lookup", func() bool { return dns.Stalled() > 0 })
		_ = c.Close()
		waitFor(t, "the client's departure", func() bool {
			return countOf(r.srv.Snapshot().Forwards[0].ConnectionsClosed, "client_gone") == 1
		})
		if n := countOf(r.srv.Snapshot().Forwards[0].DialFailures, "dns"); n != 0 {
			t.Errorf("a client that left during the lookup counted %d DNS failures, want 0", n)
		}
		waitFor(t, "the lookup's A and AAAA queries", func() bool { return dns.Stalled() >= 2 })
		asked := dns.Stalled()
		connectEcho(t, r) // the last answer, while the lookup goes on
		if more := dns.Stalled() - asked; more != 0 || a.count() != 2 {
			t.Errorf("the next connection sent %d queries and upstream A got %d connections; want 0 and 2", more, a.count())
		}
		dns.Set("db.sidecar.test", b.addr.Addr())
		q := dns.Queries()
		release()
		waitFor(t, "a connection to the lookup's answer", func() bool { connectEcho(t, r); return b.count() > 0 })
		if more := dns.Queries() - q; more != int64(asked) {
			t.Errorf("DNS answered %d queries after the release, want the lookup's %d alone", more, asked)
		}
	})
	t.Run("lookup times out", func(t *testing.T) {
		// The timeout is for the lookup; refusingDial's loopback dials, which
		// a loaded runner may deschedule as long, are not bound by it. Such
		// a runner may also take the connections past the hold that follows
		// the timeout: then one looks the name up again, and waits for it
		// to time out too. Each timed-out lookup is one held answer.
		const ttl = 100 * time.Millisecond
		_, dial := refusingDial()
		dns, a, res, r := startCounted(t, proxy.Config{DNSCacheTTL: ttl, ConnectTimeout: time.Second, DialContext: dial})
		connectEcho(t, r)
		time.Sleep(ttl)
		dns.Stall() // never released
		before := res.calls.Load()
		first := make(chan error, 1)
		go func() { first <- dialExchange(r.addrs[0], []byte("hello")) }()
		waitFor(t, "the first connection's lookup", func() bool { return res.calls.Load() > before })
		const n = 10
		for range n {
			connectEcho(t, r)
		}
		if err := <-first; err != nil {
			t.Errorf("the connection whose lookup timed out: %v; want it served by the last answer", err)
		}
		if a.count() != n+2 {
			t.Errorf("upstream got %d connections, want %d", a.count(), n+2)
		}
		// Every lookup has ended: the connection that began it waited for it.
		if held, timedOut := r.srv.Snapshot().Forwards[0].HeldAnswers, res.calls.Load()-before; held != uint64(timedOut) {
			t.Errorf("sidecar_dns_held_answers_total = %d after %d lookups timed out, want one each", held, timedOut)
		}
		if lines := r.logs.lines("DNS lookup failed; using the last answer"); len(lines) != 1 {
			t.Errorf("%d lines saying the last answer is used, want 1:\n%s", len(lines), r.logs)
		}
	})
}

// startCounted is startFailover without B, with the lookups counted: a
// lookup's DNS queries vary in number (a query sent late, when the
// lookup's deadline has passed, is not sent at all).
func startCounted(t *testing.T, cfg proxy.Config) (dns *testdns.Server, a *upstream, res *countingResolver, r *rig) {
	t.Helper()
	dns = testdns.Start(t)
	a, _ = startPair(t)
	dns.Set("db.sidecar.test", a.addr.Addr())
	res = &countingResolver{Resolver: dns.Resolver()}
	cfg.Resolver = res
	cfg.Forwards = []proxy.Forward{{TargetHost: "db.sidecar.test", TargetPort: int(a.addr.Port())}}
	return dns, a, res, startProxy(t, cfg)
}

// BenchmarkConnectThroughDNS opens connections through a forward to a DNS
// name, looked up for each connection or cached, and reports the DNS
// queries each connection cost (the VPC resolver drops what passes 1024
// packets a second per network interface).
// go test -run '^$' -bench ConnectThroughDNS -benchtime 5000x ./sidecar/internal/proxy
func BenchmarkConnectThroughDNS(b *testing.B) {
	for _, bc := range []struct {
		name string
		ttl  time.Duration
	}{{"lookup-per-connection", -1}, {"cache-default", proxy.DefaultDNSCacheTTL}} {
		b.Run(bc.name, func(b *testing.B) {
			dns := testdns.Start(b)
			up := startUpstream(b, "127.0.0.1", echo)
			dns.Set("db.sidecar.test", up.addr.Addr())
			r := startProxy(b, proxy.Config{DNSCacheTTL: bc.ttl, Resolver: dns.Resolver(),
				Forwards: []proxy.Forward{{TargetHost: "db.sidecar.test", TargetPort: int(up.addr.Port())}}})
			q := dns.Queries()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := dialExchange(r.addrs[0], []byte("ping")); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(dns.Queries()-q)/float64(b.N), "queries/conn")
		})
	}
}

// When a lookup fails, the last answer keeps serving (one log line for the
// outage), unless DNS said the name has no addresses or the cache is off.
func TestDNSCacheHoldsAnswerWhenLookupsFail(t *testing.T) {
	const ttl = 100 * time.Millisecond
	t.Run("resolver failing", func(t *testing.T) {
		dns, a, _, r := startFailover(t, proxy.Config{DNSCacheTTL: ttl})
		connectEcho(t, r)
		dns.Fail("db.sidecar.test")
		deadline := time.Now().Add(3 * ttl) // past the TTL, and past a hold and its renewal
		n := 1
		for time.Now().Before(deadline) {
			connectEcho(t, r)
			n++
			time.Sleep(ttl / 10)
		}
		if a.count() != n {
			t.Errorf("upstream got %d connections, want %d", a.count(), n)
		}
		if held := r.srv.Snapshot().Forwards[0].HeldAnswers; held < 1 || held > 3 {
			t.Errorf("sidecar_dns_held_answers_total = %d after a TTL and two holds, want 1 to 3 (one per failed lookup)", held)
		}
		lines := r.logs.lines("DNS lookup failed; using the last answer")
		if len(lines) != 1 {
			t.Fatalf("%d lines saying the last answer is used, want 1 for the outage:\n%s", len(lines), r.logs)
		}
		if age, _ := lines[0]["answer_age_ms"].(float64); age < float64(ttl.Milliseconds()) || lines[0]["err"] == "" {
			t.Errorf("log line %v: want the answer's age (at least the TTL) and the lookup's error", lines[0])
		}
		dns.Set("db.sidecar.test", a.addr.Addr()) // answers again: a later outage is logged again
		waitFor(t, "a lookup that answers", func() bool { q := dns.Queries(); connectEcho(t, r); return dns.Queries() > q })
		dns.Fail("db.sidecar.test")
		time.Sleep(ttl)
		connectEcho(t, r)
		if got := len(r.logs.lines("DNS lookup failed; using the last answer")); got != 2 {
			t.Errorf("%d lines after a second outage, want 2", got)
		}
	})
	t.Run("A fails, AAAA has none", func(t *testing.T) {
		// Go's resolver, asked for both families at once, reports the
		// error heard last: here "no such host", which is not what DNS said.
		dns, a, _, r := startFailover(t, proxy.Config{DNSCacheTTL: ttl})
		connectEcho(t, r)
		dns.FailA("db.sidecar.test")
		time.Sleep(ttl)
		if err := dialExchange(r.addrs[0], []byte("hello")); err != nil || a.count() != 2 {
			t.Fatalf("a connection while A lookups fail: %v (upstream got %d); want it served by the last answer", err, a.count())
		}
		if held := r.srv.Snapshot().Forwards[0].HeldAnswers; held != 1 {
			t.Errorf("sidecar_dns_held_answers_total = %d, want 1", held)
		}
	})
	// A dual-stack name whose IPv6 address the task cannot reach (no IPv6
	// route, a security group): Go's resolver, asked for both families at
	// once, answers with the AAAA records alone when the A lookup fails,
	// and that half answer must not replace the last one, whose IPv4
	// address serves. A family that DNS really dropped is followed.
	for _, tt := range []struct {
		name     string
		change   func(d *testdns.Server, v4 netip.Addr)
		wantHeld uint64
	}{
		{"A fails, AAAA answers", func(d *testdns.Server, _ netip.Addr) { d.FailA("db.sidecar.test") }, 1},
		{"AAAA record removed", func(d *testdns.Server, v4 netip.Addr) { d.Set("db.sidecar.test", v4) }, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			noV6 := func(ctx context.Context, network, addr string) (net.Conn, error) {
				if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Is6() {
					return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ENETUNREACH}
				}
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			}
			dns, a, _, r := startFailover(t, proxy.Config{DNSCacheTTL: ttl, DialContext: noV6})
			dns.Set("db.sidecar.test", a.addr.Addr(), netip.MustParseAddr("fd00::1"))
			connectEcho(t, r)
			tt.change(dns, a.addr.Addr())
			time.Sleep(ttl)
			const n = 3
			for i := range n {
				if err := dialExchange(r.addrs[0], []byte("hello")); err != nil {
					t.Fatalf("connection %d: %v (dial failures %v); want it served by the IPv4 address", i, err, forwardSnap(r, 0).DialFailures)
				}
			}
			if a.count() != n+1 {
				t.Errorf("upstream got %d connections, want %d", a.count(), n+1)
			}
			if held := forwardSnap(r, 0).HeldAnswers; held != tt.wantHeld {
				t.Errorf("sidecar_dns_held_answers_total = %d, want %d", held, tt.wantHeld)
			}
		})
	}
	t.Run("a dial fails during the hold", func(t *testing.T) {
		// Every address of the held answer failed once (a refusal), and
		// the lookup that follows fails too: the answer is still the best
		// there is, so it stays.
		refuse, dial := refusingDial()
		const ttl = 5 * proxy.MinRelookup // the hold outlasts the wait below
		dns, a, _, r := startFailover(t, proxy.Config{DNSCacheTTL: ttl, DialContext: dial})
		connectEcho(t, r)
		dns.Fail("db.sidecar.test")
		time.Sleep(ttl)
		connectEcho(t, r)             // held
		time.Sleep(proxy.MinRelookup) // so the refusal may look the name up again
		refuse.Store(1)
		if err := dialExchange(r.addrs[0], []byte("hello")); err == nil {
			t.Fatal("the refused connection carried bytes")
		}
		const n = 10
		for range n {
			connectEcho(t, r)
		}
		if a.count() != n+2 {
			t.Errorf("upstream got %d connections, want %d", a.count(), n+2)
		}
	})
	t.Run("the writer refuses too", func(t *testing.T) {
		// Refusals during the hold do not look the name up again: DNS is
		// failing, it has nothing newer to say until the hold ends.
		refuse := func(context.Context, string, string) (net.Conn, error) {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		}
		const ttl = 3 * proxy.MinRelookup
		dns, _, _, r := startFailover(t, proxy.Config{DNSCacheTTL: ttl, DialContext: refuse})
		_ = dialExchange(r.addrs[0], []byte("hello")) // caches the answer
		dns.Fail("db.sidecar.test")
		time.Sleep(ttl)
		start := time.Now()
		for time.Since(start) < 2*ttl {
			_ = dialExchange(r.addrs[0], []byte("hello"))
			time.Sleep(5 * time.Millisecond)
		}
		most := 1 + uint64(time.Since(start)/ttl)
		if held := forwardSnap(r, 0).HeldAnswers; held < 1 || held > most {
			t.Errorf("%d failed lookups held the answer in %v; want 1 to %d, one per TTL", held, time.Since(start), most)
		}
	})
	for _, tt := range []struct {
		name string
		ttl  time.Duration
		fail func(*testdns.Server)
	}{
		{"no such name", ttl, func(d *testdns.Server) { d.Set("db.sidecar.test") }},
		{"cache off", -1, func(d *testdns.Server) { d.Fail("db.sidecar.test") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dns, a, _, r := startFailover(t, proxy.Config{DNSCacheTTL: tt.ttl})
			connectEcho(t, r)
			tt.fail(dns)
			time.Sleep(ttl)
			if err := dialExchange(r.addrs[0], []byte("hello")); err == nil || a.count() != 1 {
				t.Errorf("a connection after the lookup failed reached the upstream (%d connections, err %v); want it refused", a.count(), err)
			}
		})
	}
}

// DNS saying the name has no addresses is an answer: no connection reaches
// the old address, and it is cached like one, not looked up per connection.
func TestDNSCacheNoSuchName(t *testing.T) {
	const ttl = 200 * time.Millisecond
	dns, a, res, r := startCounted(t, proxy.Config{DNSCacheTTL: ttl})
	connectEcho(t, r)
	dns.Set("db.sidecar.test")
	time.Sleep(ttl)
	q := res.lookups.Load()
	if err := dialExchange(r.addrs[0], []byte("hello")); err == nil {
		t.Fatal("a connection after DNS said no such name carried bytes")
	}
	if n := res.lookups.Load() - q; n != 1 {
		t.Errorf("the connection after the answer expired made %d lookups, want 1", n)
	}
	q, start := res.lookups.Load(), time.Now()
	const n = 10
	for range n {
		if err := dialExchange(r.addrs[0], []byte("hello")); err == nil {
			t.Fatal("a connection after DNS said no such name reached the old address")
		}
	}
	// Each connection waits for the lookup it starts: all are counted.
	lookups := res.lookups.Load() - q
	if most := 1 + int64(time.Since(start)/ttl); lookups > most || a.count() != 1 { // 1: the answer may expire meanwhile
		t.Errorf("%d connections in %v made %d lookups (upstream got %d); want at most %d (one per TTL) and 1",
			n, time.Since(start), lookups, a.count(), most)
	}
	dns.Set("db.sidecar.test", a.addr.Addr())
	waitFor(t, "a connection once the name is back", func() bool { return dialExchange(r.addrs[0], []byte("hello")) == nil })
}

// A resolver that stays down: each failed lookup delays one connection
// and is counted once, and the next one waits for the hold to end.
func TestDNSCacheLookupsFailUnderLoad(t *testing.T) {
	// A hold of half a lookup's timeout: lookups that did not wait for it
	// would begin more often than the bound below allows.
	const ttl, timeout = 150 * time.Millisecond, 300 * time.Millisecond
	// timeout is for the lookups. A loopback dial bound by it too fails a
	// connection when a loaded runner deschedules the dial that long
	// ("dial tcp …: i/o timeout"), which says nothing of the DNS cache.
	var d net.Dialer
	dialAnyTime := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(context.WithoutCancel(ctx), network, addr)
	}
	dns, _, res, r := startCounted(t, proxy.Config{DNSCacheTTL: ttl, ConnectTimeout: timeout, DialContext: dialAnyTime})
	connectEcho(t, r)
	time.Sleep(ttl)
	dns.Stall()
	q, start := res.lookups.Load(), time.Now()
	stop := start.Add(3 * (timeout + ttl))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if err := dialExchange(r.addrs[0], []byte("hello")); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// A lookup ends by timing out, the hold lasts a TTL: lookups begin at
	// least timeout+ttl apart. The connections do not wait for a lookup
	// (they use the held answer): the last may still run, and holds once
	// it times out.
	lookups := res.lookups.Load() - q
	heldAnswers := func() uint64 { return r.srv.Snapshot().Forwards[0].HeldAnswers }
	waitFor(t, fmt.Sprintf("a held answer for each of the %d lookups", lookups), func() bool { return heldAnswers() >= uint64(lookups) })
	most := 1 + int64(elapsed/(timeout+ttl))
	held := heldAnswers()
	if lookups < 1 || lookups > most || held != uint64(lookups) {
		t.Errorf("in %v: %d lookups and %d held answers; want 1 to %d lookups, each counted once", elapsed, lookups, held, most)
	}
}

// A lookup that fails with no answer to fall back on is the answer for
// the TTL: a failing resolver is not asked again for every connection.
func TestDNSCacheFailureWithNothingToHold(t *testing.T) {
	for _, tt := range []struct {
		name  string
		first func(*testdns.Server) // the state before the resolver fails
	}{
		{"cold cache", func(d *testdns.Server) { d.Fail("db.sidecar.test") }},
		{"after no such name", func(d *testdns.Server) { d.Set("db.sidecar.test") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const ttl = 200 * time.Millisecond
			dns, a, res, r := startCounted(t, proxy.Config{DNSCacheTTL: ttl})
			tt.first(dns)
			_ = dialExchange(r.addrs[0], []byte("hello"))
			time.Sleep(ttl)
			dns.Fail("db.sidecar.test")
			q := res.lookups.Load()
			_ = dialExchange(r.addrs[0], []byte("hello"))
			if n := res.lookups.Load() - q; n != 1 {
				t.Errorf("the connection after the answer expired made %d lookups, want 1", n)
			}
			q, start := res.lookups.Load(), time.Now()
			const n = 10
			for range n {
				if err := dialExchange(r.addrs[0], []byte("hello")); err == nil {
					t.Fatal("a connection carried bytes while DNS failed with no answer to hold")
				}
			}
			if lookups, most := res.lookups.Load()-q, 1+int64(time.Since(start)/ttl); lookups > most {
				t.Errorf("%d connections in %v made %d lookups; want at most %d, one per TTL", n, time.Since(start), lookups, most)
			}
			dns.Set("db.sidecar.test", a.addr.Addr())
			waitFor(t, "a connection once DNS answers", func() bool { return dialExchange(r.addrs[0], []byte("hello")) == nil })
		})
	}
}

// A lookup that times out with nothing to fall back on (the sidecar starts
// while the resolver drops queries) is the answer for the TTL from when it
// timed out, however long it took: the next connections fail at once.
// Lookups are counted, not queries: a query the resolver sends after the
// lookup's deadline (a loaded runner) is never sent.
func TestDNSCacheTimeoutWithNothingToHold(t *testing.T) {
	const ttl, timeout = 200 * time.Millisecond, 300 * time.Millisecond // the lookup outlasts the TTL
	dns, _, res, r := startCounted(t, proxy.Config{DNSCacheTTL: ttl, ConnectTimeout: timeout})
	dns.Stall()
	if err := dialExchange(r.addrs[0], []byte("hello")); err == nil {
		t.Fatal("a connection carried bytes while DNS dropped every query")
	}
	asked, start := res.calls.Load(), time.Now()
	const n = 10
	for range n {
		_ = dialExchange(r.addrs[0], []byte("hello"))
	}
	// Each connection that looks the name up waits for its lookup to time out.
	if lookups, most := res.calls.Load()-asked, 1+int64(time.Since(start)/(ttl+timeout)); lookups > most {
		t.Errorf("%d connections in %v after a lookup timed out made %d lookups; want at most %d", n, time.Since(start), lookups, most)
	}
}

// One refusal while the resolver drops queries, from apps whose connect
// timeout is shorter than the lookup's: the lookup still ends (it runs
// apart from them) and holds the answer, so connections are served again.
// timeout bounds the lookups; refusingDial's dials, on loopback, a loaded
// runner may deschedule for longer, so they are not bound by it. A lookup
// that ends with the client that started it serves nobody, ever: that is
// a hang, so the clients keep coming until safety.
func TestDNSCacheLookupOutlivesImpatientClients(t *testing.T) {
	refuse, dial := refusingDial()
	const timeout = 300 * time.Millisecond
	dns, a, _, r := startFailover(t, proxy.Config{DNSCacheTTL: time.Hour, ConnectTimeout: timeout, DialContext: dial})
	connectEcho(t, r)
	time.Sleep(proxy.MinRelookup)
	dns.Stall()
	refuse.Store(1) // the writer restarts: one refusal, then back at the same address
	impatient := func() {
		c, err := net.Dial("tcp", r.addrs[0])
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(timeout / 3))
		_, _ = c.Read(make([]byte, 1)) // a MySQL client waits for the greeting, then gives up
		_ = c.Close()
	}
	impatient() // refused: the answer is marked failed and looked up again
	waitFor(t, "the lookup after the refusal", func() bool { return dns.Stalled() > 0 })
	before := a.count()
	deadline := time.Now().Add(safety)
	for a.count() == before && time.Now().Before(deadline) {
		impatient()
	}
	if a.count() == before {
		t.Errorf("no connection reached the database in %v after one refusal, though it accepts at the cached address", safety)
	}
}

// The drain deadline passing while a connection waits for its lookup cuts
// it, as Serve reports: not a dial failure.
func TestDrainDeadlineDuringLookup(t *testing.T) {
	dns, _, _, r := startFailover(t, proxy.Config{DNSCacheTTL: time.Hour, ConnectTimeout: 10 * time.Second, DrainTimeout: 100 * time.Millisecond})
	dns.Stall()
	c, err := net.Dial("tcp", r.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "the lookup", func() bool { return dns.Stalled() > 0 })
	cut := r.shutdown(t)
	snap := forwardSnap(r, 0)
	if n := countOf(snap.ConnectionsClosed, "drain_deadline"); n != 1 || cut != 1 || countOf(snap.ConnectionsClosed, "dial_failed") != 0 {
		t.Errorf("cut %d, closed %v; want 1 cut, counted as drain_deadline, not dial_failed", cut, snap.ConnectionsClosed)
	}
	if lines := r.logs.lines("dial target failed; closing client"); len(lines) != 0 {
		t.Errorf("%d dial failure lines for a connection the drain cut", len(lines))
	}
	// At debug, one line per connection, this one's too.
	if lines := r.logs.lines("connection closed"); len(lines) != 1 || lines[0]["reason"] != "drain_deadline" {
		t.Errorf("connection closed lines %v; want one, reason drain_deadline", lines)
	}
}

// Connections have all ended: a lookup nobody waits for any more (its
// client left) does not hold Serve up.
func TestDrainStopsOrphanLookup(t *testing.T) {
	a, _ := startPair(t)
	res := &countingResolver{Resolver: blockingResolver{}}
	r := startProxy(t, proxy.Config{DNSCacheTTL: time.Hour, ConnectTimeout: time.Minute, DrainTimeout: time.Minute, Resolver: res,
		Forwards: []proxy.Forward{{TargetHost: "db.sidecar.test", TargetPort: int(a.addr.Port())}}})
	c, err := net.Dial("tcp", r.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the lookup", func() bool { return res.calls.Load() > 0 })
	_ = c.Close()
	waitFor(t, "the client's departure", func() bool { return forwardSnap(r, 0).Active == 0 })
	if cut := r.shutdown(t); cut != 0 { // fails after `safety` if Serve waits for the lookup
		t.Errorf("cut %d connections, want 0", cut)
	}
}

// blockingResolver answers no lookup: each lasts until its context ends.
type blockingResolver struct{}

func (blockingResolver) LookupNetIP(ctx context.Context, _, _ string) ([]netip.Addr, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// refusingDial dials as usual, except that each of the next *refuse dials
// is refused, as by a database restarting. Its dials are bounded by
// safety, not by the caller's deadline: a test's short CONNECT_TIMEOUT
// is for its lookups, and would fail a loopback dial a loaded runner
// deschedules that long.
func refusingDial() (refuse *atomic.Int32, dial func(context.Context, string, string) (net.Conn, error)) {
	refuse = new(atomic.Int32)
	d := net.Dialer{Timeout: safety}
	return refuse, func(ctx context.Context, network, addr string) (net.Conn, error) {
		if refuse.Add(-1) >= 0 {
			return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
		}
		return d.DialContext(context.WithoutCancel(ctx), network, addr)
	}
}

// gateHandler blocks the first record whose message is msg until open is
// closed, as a log write to a full stderr pipe would; entered is closed
// when it blocks.
type gateHandler struct {
	slog.Handler
	msg     string
	once    *sync.Once
	entered chan struct{}
	open    chan struct{}
}

func (h gateHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.entered); <-h.open })
	}
	return h.Handler.Handle(ctx, r)
}

// During a hold (DNS failing) a connection whose address is refused does
// not look the name up again before the hold ends (docs/operations.md),
// even when its forget lands between the failed lookup's hold and its end
// (here widened by the lookup's log line, as a full stderr pipe would): it
// marked the held answer failed, and the next connection, well inside the
// hold, looked the name up again.
func TestDNSCacheRefusalAfterHoldBeforeEnd(t *testing.T) {
	const ttl = 2 * time.Second // the hold outlasts the test's steps
	gate := gateHandler{Handler: slog.NewTextHandler(&logBuffer{}, nil), msg: "DNS lookup failed; using the last answer",
		once: new(sync.Once), entered: make(chan struct{}), open: make(chan struct{})}
	refuse, dialer := refusingDial()
	dns, a, _, r := startFailover(t, proxy.Config{DNSCacheTTL: ttl, DialContext: dialer, Logger: slog.New(gate)})
	connectEcho(t, r)
	dns.Fail("db.sidecar.test")
	time.Sleep(ttl)

	first := make(chan error, 1)
	go func() { first <- dialExchange(r.addrs[0], []byte("hello")) }() // its lookup fails: the answer is held
	<-gate.entered                                                     // hold done, end not yet
	refuse.Store(1)
	second := make(chan error, 1)
	go func() { second <- dialExchange(r.addrs[0], []byte("hello")) }() // served the held answer: refused
	// Its forget comes before it ends, and it ends while the lookup's end
	// is still gated: one that waits for the lookup never ends here.
	waitFor(t, "the refused connection to end without waiting for the held lookup", func() bool {
		return countOf(forwardSnap(r, 0).ConnectionsClosed, "dial_failed") == 1
	})
	close(gate.open)
	if err := <-first; err != nil {
		t.Fatalf("first connection: %v", err)
	}
	<-second

	q := dns.Queries()
	connectEcho(t, r) // well within the hold
	if more := dns.Queries() - q; more != 0 {
		t.Errorf("a connection during the hold sent %d DNS queries, want 0 (the hold has %v left)", more, ttl-100*time.Millisecond)
	}
	if a.count() != 3 {
		t.Errorf("upstream got %d connections, want 3", a.count())
	}
}

// CheckTargets looks each target name up at start: a name that does not
// resolve (a mistyped TARGET_HOST) is a WARN before any app connects, and
// one that does fills the cache for the first connection.
func TestCheckTargetsAtStart(t *testing.T) {
	t.Parallel()
	dns := testdns.Start(t)
	up := startUpstream(t, "127.0.0.1", echo)
	dns.Set("db.sidecar.test", up.addr.Addr())
	r := startProxy(t, proxy.Config{
		Forwards: []proxy.Forward{
			{TargetHost: "db.sidecar.test", TargetPort: int(up.addr.Port())},
			{TargetHost: "typo.sidecar.test", TargetPort: 3306},
			{TargetHost: "127.0.0.1", TargetPort: int(up.addr.Port())},
		},
		DNSCacheTTL: time.Minute, Resolver: dns.Resolver(), CheckTargets: true,
	})
	waitFor(t, "the warning", func() bool { return len(r.logs.lines("target name does not resolve")) > 0 })
	if lines := r.logs.lines("target name does not resolve"); len(lines) != 1 || lines[0]["level"] != "WARN" ||
		lines[0]["target"] != "typo.sidecar.test:3306" || !strings.Contains(lines[0]["err"].(string), "typo.sidecar.test") {
		t.Errorf("want one WARN for typo.sidecar.test only; got %v", lines)
	}
	// The two checks run at once: the warning does not say that the other
	// one has been answered, and its queries would count as the connection's.
	waitFor(t, "the check of db.sidecar.test answered", func() bool { return dns.QueriesOf("db.sidecar.test") >= 2 }) // A and AAAA
	q := dns.Queries()
	connectEcho(t, r)
	if n := dns.Queries() - q; n != 0 {
		t.Errorf("the first connection after start made %d DNS queries; want 0 (the start's answer)", n)
	}
}

// Without CheckTargets nothing is looked up before a connection.
func TestNoLookupAtStartByDefault(t *testing.T) {
	t.Parallel()
	dns := testdns.Start(t)
	dns.Set("db.sidecar.test", netip.MustParseAddr("127.0.0.1"))
	startProxy(t, proxy.Config{Forwards: []proxy.Forward{{TargetHost: "db.sidecar.test", TargetPort: 3306}}, Resolver: dns.Resolver()})
	time.Sleep(100 * time.Millisecond)
	if n := dns.Queries(); n != 0 {
		t.Errorf("%d DNS queries before any connection; want none", n)
	}
}

// The sidecar out of file descriptors is not the target failing: the dial
// is counted as fd_limit, the address is not put last, the other address
// is not tried (it would fail alike), and the name is not looked up again.
func TestOutOfFilesIsNotTheTargetsFailure(t *testing.T) {
	var noFiles atomic.Bool
	var tried atomic.Int64
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if noFiles.Load() {
			tried.Add(1)
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("socket", syscall.EMFILE)}
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	dns, a, b, r := startFailover(t, proxy.Config{DNSCacheTTL: time.Hour, DialContext: dial})
	dns.Set("db.sidecar.test", a.addr.Addr(), b.addr.Addr())
	connectEcho(t, r) // caches the answer: a, then b
	queries := dns.Queries()
	noFiles.Store(true)
	if err := dialExchange(r.addrs[0], []byte("hello")); err == nil {
		t.Fatal("served without descriptors")
	}
	waitFor(t, "the failure counted", func() bool { return countOf(forwardSnap(r, 0).DialFailures, "fd_limit") == 1 })
	noFiles.Store(false)
	connectEcho(t, r)
	if n := tried.Load(); n != 1 {
		t.Errorf("%d addresses tried out of descriptors; want 1", n)
	}
	if q := dns.Queries(); q != queries {
		t.Errorf("%d lookups after a dial out of descriptors; want none", q-queries)
	}
	if a.count() != 2 || b.count() != 0 {
		t.Errorf("connections: %d to the first address, %d to the second; want 2 and 0 (the first not put last)", a.count(), b.count())
	}
	if s := forwardSnap(r, 0); countOf(s.DialFailures, "other") != 0 {
		t.Errorf("dial failures %v; want fd_limit only", s.DialFailures)
	}
}

// With the cache off (DNS_CACHE_TTL=0) there is no last answer to hold:
// a half answer (the A query failed, AAAA answered) is dialed as it is,
// as Go's resolver gives it. A task that cannot reach
// IPv6 then fails the connection, as it fails on any failed lookup with
// the cache off (docs/operations.md says so), and the failure is the dial
// of the IPv6 address, not dns. Asking each family apart would only fail
// it the same way, at the cost of connections a task that reaches IPv6
// would have had.
func TestDNSCacheOffDialsAHalfAnswer(t *testing.T) {
	noV6 := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Is6() {
			return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ENETUNREACH}
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	dns, a, _, r := startFailover(t, proxy.Config{DNSCacheTTL: -1, DialContext: noV6})
	dns.Set("db.sidecar.test", a.addr.Addr(), netip.MustParseAddr("fd00::1"))
	connectEcho(t, r)
	dns.FailA("db.sidecar.test")
	if err := dialExchange(r.addrs[0], []byte("hello")); err == nil {
		t.Fatal("served through the IPv6 address this task cannot reach?")
	}
	got := forwardSnap(r, 0).DialFailures
	if countOf(got, "unreachable") != 1 || countOf(got, "dns") != 0 || a.count() != 1 {
		t.Errorf("dial failures %v, upstream connections %d; want one unreachable (the IPv6 address), no dns, 1", got, a.count())
	}
	dns.Set("db.sidecar.test", a.addr.Addr(), netip.MustParseAddr("fd00::1")) // A answers again
	connectEcho(t, r)
}
