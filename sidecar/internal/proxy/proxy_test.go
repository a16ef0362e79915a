package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/config"
	"github.com/example/sidecar/sidecar/internal/proxy"
	"github.com/example/sidecar/sidecar/internal/relay"
	"github.com/example/sidecar/sidecar/internal/testdns"
)

// The client half-closes after its request; the upstream answers only after
// EOF, and the answer still reaches the client.
func TestHalfClose(t *testing.T) {
	req, resp := randomBytes(t, 200_000), randomBytes(t, 300_000)
	up := startUpstream(t, "127.0.0.1", func(c *net.TCPConn) {
		got, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(got, req) {
			t.Errorf("upstream got %d bytes (err %v), want the %d-byte request then EOF", len(got), err, len(req))
			return
		}
		_, _ = c.Write(resp)
		_ = c.CloseWrite()
	})
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}})
	c := dial(t, r.addrs[0])
	_ = c.SetDeadline(time.Now().Add(safety))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, resp) {
		t.Fatalf("client got %d bytes (err %v), want the %d-byte response then EOF", len(got), err, len(resp))
	}
	_ = c.Close()
	// The close is counted last, after the bytes and the log line.
	waitFor(t, "connection accounted", func() bool {
		return countOf(forwardSnap(r, 0).ConnectionsClosed, string(relay.ReasonDone)) == 1
	})
	s := forwardSnap(r, 0)
	if s.BytesToUpstream != uint64(len(req)) || s.BytesToClient != uint64(len(resp)) || s.Total != 1 {
		t.Errorf("counters: %+v; want %d bytes up, %d down, 1 connection", s, len(req), len(resp))
	}
	if l := r.logs.lines("connection closed"); len(l) != 1 || l[0]["upstream"] != up.addr.String() || l[0]["reason"] != "eof" {
		t.Errorf("connection log lines = %v, want one naming upstream %s and reason eof", l, up.addr)
	}
}

// Several megabytes both ways at once through an echo upstream, on both
// relays the proxy can be given (nil means the portable one).
func TestBulkBothWays(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", echo)
	for _, idle := range []time.Duration{0, time.Minute} {
		t.Run("idle="+idle.String(), func(t *testing.T) {
			r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, IdleTimeout: idle})
			if err := echoRoundTrip(dial(t, r.addrs[0]), randomBytes(t, 24<<20)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A refused dial closes the client promptly; every failure is counted by
// reason. The first is logged at error level with its reason; the rest of
// the burst (a pool reconnecting during a failover) only in a summary a
// second later that says how many were not logged.
func TestUpstreamRefuses(t *testing.T) {
	port := testkit.RefusedPort(t)
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{{TargetHost: "127.0.0.1", TargetPort: port}}})
	const n = 20
	for i := range n {
		expectClosed(t, dial(t, r.addrs[0]), "client of a refused upstream")
		waitFor(t, "failure counted", func() bool { return countOf(forwardSnap(r, 0).DialFailures, "refused") == uint64(i+1) })
	}
	s := forwardSnap(r, 0)
	if n := countOf(s.ConnectionsClosed, "dial_failed"); n != 20 {
		t.Errorf("closed{dial_failed} = %d, want 20", n)
	}

	// Every failure shows in the logs: logged in full, or counted in a
	// summary's not_logged.
	waitFor(t, "every failure logged or summarized", func() bool { return accounted(r.logs.lines("dial target failed")) == n })
	lines := r.logs.lines("dial target failed")
	if len(lines) >= n {
		t.Errorf("%d log lines for %d failures: not rate-limited", len(lines), n)
	}
	for i, l := range lines {
		if l["level"] != "ERROR" || l["reason"] != "refused" || !strings.Contains(l["err"].(string), "refused") {
			t.Errorf("log line %d = %v, want ERROR naming reason refused and the error", i, l)
		}
	}
	if _, ok := lines[0]["not_logged"]; ok || lines[0]["client"] == nil {
		t.Errorf("first log line = %v, want the failure in full", lines[0])
	}
}

// A failover resets a whole pool at once: each broken connection is
// counted, but its WARN line is rate-limited like the dial failures that
// follow (the first in full, then summaries saying how many more).
func TestBrokenConnectionsLogIsRateLimited(t *testing.T) {
	eachRelay(t, func(t *testing.T, f relay.Func) {
		up := startUpstream(t, "127.0.0.1", hold)
		r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{{TargetHost: "127.0.0.1", TargetPort: int(up.addr.Port())}}, Relay: f})
		const n = 20
		clients := make([]*net.TCPConn, n)
		for i := range clients {
			clients[i] = dial(t, r.addrs[0])
			if _, err := clients[i].Write([]byte("q")); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "every query relayed", func() bool { return up.count() == n && forwardSnap(r, 0).BytesToUpstream == n })
		up.mu.Lock()
		for _, c := range up.conns {
			_ = c.SetLinger(0)
			_ = c.Close() // the instance restarting
		}
		up.mu.Unlock()
		waitFor(t, "every connection ended", func() bool { return forwardSnap(r, 0).Active == 0 })
		if closed := forwardSnap(r, 0).ConnectionsClosed; countOf(closed, "upstream_error") != n {
			t.Fatalf("closed %v; want %d upstream_error", closed, n)
		}
		r.shutdown(t) // writes a pending summary
		lines := r.logs.lines("connection closed")
		if accounted(lines) != n || len(lines) >= n {
			t.Errorf("%d \"connection closed\" lines accounting for %d of %d broken connections; want all, rate-limited", len(lines), accounted(lines), n)
		}
		for _, l := range lines {
			if l["level"] != "WARN" || l["reason"] != "upstream_error" {
				t.Errorf("line %v; want WARN, reason upstream_error", l)
			}
		}
		for _, c := range clients {
			_ = c.Close()
		}
	})
}

// A summary still pending when the server stops is written before Serve
// returns: no failure goes unlogged at exit.
func TestDialFailureSummaryWrittenAtShutdown(t *testing.T) {
	port := testkit.RefusedPort(t)
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{{TargetHost: "127.0.0.1", TargetPort: port}}})
	for i := range 3 {
		expectClosed(t, dial(t, r.addrs[0]), "client of a refused upstream")
		waitFor(t, "failure counted", func() bool { return countOf(forwardSnap(r, 0).DialFailures, "refused") == uint64(i+1) })
	}
	r.shutdown(t)
	if lines := r.logs.lines("dial target failed"); accounted(lines) != 3 {
		t.Errorf("log lines after shutdown = %v, want 3 failures logged or summarized", lines)
	}
}

// Connections the database breaks during the drain are logged before
// "drained", their rate-limited summary included: after that line an
// operator reads the drain as done.
func TestSummaryPendingAtDrainComesBeforeDrained(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", hold)
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, DrainTimeout: safety})
	const n = 3
	for range n {
		c := dial(t, r.addrs[0])
		defer c.Close()
		if _, err := c.Write([]byte("q")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every query relayed", func() bool { return up.count() == n && forwardSnap(r, 0).BytesToUpstream == n })
	r.cancel()
	waitFor(t, "the drain to begin", func() bool { return len(r.logs.lines("draining")) == 1 })
	up.mu.Lock()
	for _, c := range up.conns {
		_ = c.SetLinger(0)
		_ = c.Close() // a failover during the drain: the first in full, the rest pending
	}
	up.mu.Unlock()
	if cut := r.shutdown(t); cut != 0 {
		t.Fatalf("connections cut = %d, want the drain to end as the database broke them", cut)
	}
	all := r.logs.lines("")
	drained := slices.IndexFunc(all, func(l map[string]any) bool { return l["msg"] == "drained" })
	if drained < 0 || accounted(r.logs.lines("connection closed")) != n {
		t.Fatalf("want \"drained\" and %d broken connections logged or summarized:\n%s", n, r.logs)
	}
	for _, l := range all[drained+1:] {
		t.Errorf("line after \"drained\": %v", l)
	}
}

// accounted counts the dial failures log lines report: one for a line in
// full, not_logged for a summary.
func accounted(lines []map[string]any) int {
	sum := 0
	for _, l := range lines {
		if nl, ok := l["not_logged"].(float64); ok {
			sum += int(nl)
		} else {
			sum++
		}
	}
	return sum
}

// An upstream that resets mid-stream: that client sees the close promptly,
// and a connection next to it keeps working.
func TestUpstreamResetsMidStream(t *testing.T) {
	greeting := []byte("hello from upstream\n")
	greeted := make(chan struct{}) // closed once the victim has read the greeting
	up := startUpstream(t, "127.0.0.1", func(c *net.TCPConn) {
		first := make([]byte, 5)
		if _, err := io.ReadFull(c, first); err != nil {
			return
		}
		if string(first) == "reset" {
			_, _ = c.Write(greeting)
			// Reset only once the greeting has arrived: an earlier RST may
			// overtake it, and the proxy rightly drops unsent data on reset.
			select {
			case <-greeted:
			case <-time.After(safety):
			}
			_ = c.SetLinger(0)
			_ = c.Close()
			return
		}
		_, _ = c.Write(first)
		echo(c)
	})
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}})

	bystander := dial(t, r.addrs[0])
	data := randomBytes(t, 4<<20)
	if _, err := bystander.Write([]byte("echo:")); err != nil {
		t.Fatal(err)
	}
	prefix := make([]byte, 5)
	_ = bystander.SetDeadline(time.Now().Add(safety))
	if _, err := io.ReadFull(bystander, prefix); err != nil {
		t.Fatal(err)
	}

	victim := dial(t, r.addrs[0])
	if _, err := victim.Write([]byte("reset")); err != nil {
		t.Fatal(err)
	}
	_ = victim.SetReadDeadline(time.Now().Add(safety))
	got := make([]byte, len(greeting))
	if _, err := io.ReadFull(victim, got); err != nil || !bytes.Equal(got, greeting) {
		t.Fatalf("victim read %q (err %v), want the greeting", got, err)
	}
	close(greeted)
	rest, err := io.ReadAll(victim)
	if len(rest) != 0 {
		t.Fatalf("victim read %q after the greeting, want a close", rest)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("victim not closed after the upstream reset")
	}
	waitFor(t, "reset counted", func() bool {
		return countOf(forwardSnap(r, 0).ConnectionsClosed, string(relay.ReasonUpstreamError)) == 1
	})
	if err := echoRoundTrip(bystander, data); err != nil {
		t.Fatalf("bystander after the reset: %v", err)
	}
}

// The target's DNS answer changes between connections: each new connection
// follows the current answer; the earlier one keeps working.
func TestDNSAnswerChangesBetweenConnections(t *testing.T) {
	dns, a, b, r := startFailover(t, proxy.Config{})

	first := dial(t, r.addrs[0])
	if err := exchange(first, []byte("one")); err != nil {
		t.Fatal(err)
	}
	dns.Set("db.sidecar.test", b.addr.Addr()) // failover
	second := dial(t, r.addrs[0])
	if err := exchange(second, []byte("two")); err != nil {
		t.Fatal(err)
	}
	if a.count() != 1 || b.count() != 1 {
		t.Fatalf("upstream A got %d connections, B got %d; want 1 each", a.count(), b.count())
	}
	if err := exchange(first, []byte("still there")); err != nil {
		t.Fatalf("first connection after the DNS change: %v", err)
	}
	if dns.Queries() < 2 {
		t.Errorf("DNS queries = %d, want one lookup per connection at least", dns.Queries())
	}
}

// startPair starts echo upstreams on 127.0.0.1 and 127.0.0.2 sharing one
// port, as two Aurora instances behind one endpoint name.
func startPair(t *testing.T) (a, b *upstream) {
	t.Helper()
	for range 20 {
		a = startUpstream(t, "127.0.0.1", echo)
		b, err := startUpstreamAt(t, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: int(a.addr.Port())}, echo)
		if err == nil {
			return a, b
		}
	}
	t.Fatal("no port free on both 127.0.0.1 and 127.0.0.2")
	return nil, nil
}

// startFailover starts an upstream pair, a DNS server answering
// db.sidecar.test with a, and a proxy with cfg forwarding to that name
// through the server's resolver. Tests fail over by setting the answer to b.
// Unless cfg says otherwise, every connection looks the name up, so a test
// sees a DNS change at the next connection (dnscache_test.go covers the cache).
func startFailover(t *testing.T, cfg proxy.Config) (dns *testdns.Server, a, b *upstream, r *rig) {
	t.Helper()
	if cfg.DNSCacheTTL == 0 {
		cfg.DNSCacheTTL = -1
	}
	dns = testdns.Start(t)
	a, b = startPair(t)
	dns.Set("db.sidecar.test", a.addr.Addr())
	cfg.Forwards = []proxy.Forward{{TargetHost: "db.sidecar.test", TargetPort: int(a.addr.Port())}}
	cfg.Resolver = dns.Resolver()
	return dns, a, b, startProxy(t, cfg)
}

// exchange writes msg and expects it echoed back, without closing.
func exchange(c *net.TCPConn, msg []byte) error {
	_ = c.SetDeadline(time.Now().Add(safety))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return errors.New("echo mismatch")
	}
	return nil
}

// Beyond MaxConnections a new connection is closed at once (not queued), and
// counted; once a slot frees up, connections are served again.
func TestMaxConnections(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", echo)
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, MaxConnections: 2})
	held := []*net.TCPConn{dial(t, r.addrs[0]), dial(t, r.addrs[0])}
	for _, c := range held {
		if err := exchange(c, []byte("hi")); err != nil {
			t.Fatal(err)
		}
	}
	expectClosed(t, dial(t, r.addrs[0]), "connection beyond the limit")
	if s := forwardSnap(r, 0); s.Rejected != 1 || s.Active != 2 {
		t.Errorf("rejected = %d, active = %d; want 1 and 2", s.Rejected, s.Active)
	}
	if l := r.logs.lines("connection limit reached"); len(l) != 1 {
		t.Errorf("limit log lines = %d, want 1", len(l))
	}
	// A reconnect storm is counted in full but logged sparingly.
	for range 20 {
		expectClosed(t, dial(t, r.addrs[0]), "connection beyond the limit")
	}
	if s := forwardSnap(r, 0); s.Rejected != 21 {
		t.Errorf("rejected = %d, want 21", s.Rejected)
	}
	if l := r.logs.lines("connection limit reached"); len(l) >= 20 {
		t.Errorf("%d log lines for 21 rejections: not rate-limited", len(l))
	}
	_ = held[0].Close()
	waitFor(t, "slot freed", func() bool { return forwardSnap(r, 0).Active == 1 })
	if err := exchange(dial(t, r.addrs[0]), []byte("again")); err != nil {
		t.Fatalf("after a slot freed: %v", err)
	}
}

// The limit is proxy.DefaultMaxConnections (which config.Settings and the
// README show) when Config leaves it 0: that many are served at once, and
// the next is closed at once.
func TestMaxConnectionsDefault(t *testing.T) {
	n := proxy.DefaultMaxConnections
	needFDs(t, uint64(4*n+256)) // each: the client, both of the forwarder's sockets, the upstream's
	up := startUpstream(t, "127.0.0.1", hold)
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}})
	for range n {
		_ = dial(t, r.addrs[0])
	}
	waitFor(t, "every connection relayed", func() bool { return forwardSnap(r, 0).Active == int64(n) })
	expectClosed(t, dial(t, r.addrs[0]), "connection beyond the default limit")
	if s := forwardSnap(r, 0); s.Rejected != 1 || s.Active != int64(n) {
		t.Errorf("rejected = %d, active = %d; want 1 and %d", s.Rejected, s.Active, n)
	}
}

// Shutdown with a transfer in flight: not ready and not accepting at once;
// the transfer completes; Serve returns with nothing cut.
func TestDrainLetsTransferFinish(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", echo)
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, DrainTimeout: safety})
	c := dial(t, r.addrs[0])
	data := randomBytes(t, 8<<20)
	half := len(data) / 2
	_ = c.SetDeadline(time.Now().Add(safety))
	if _, err := c.Write(data[:half]); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, half)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}

	r.cancel() // SIGTERM's effect
	waitFor(t, "not ready", func() bool { return !r.srv.Ready() })
	waitFor(t, "listener closed", func() bool {
		nc, err := net.DialTimeout("tcp", r.addrs[0], time.Second)
		if err == nil {
			_ = nc.Close()
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	})

	rest := make(chan error, 1)
	go writeAndHalfClose(c, data[half:], rest)
	tail, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(append(got, tail...), data) {
		t.Fatalf("transfer across the drain: read %d+%d bytes (err %v), want %d intact", len(got), len(tail), err, len(data))
	}
	if err := <-rest; err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if cut := r.shutdown(t); cut != 0 {
		t.Errorf("connections cut = %d, want 0", cut)
	}
}

// Connections still open at the drain deadline are closed, and counted, on
// both data paths.
func TestDrainDeadlineClosesTheRest(t *testing.T) {
	eachRelay(t, func(t *testing.T, f relay.Func) {
		up := startUpstream(t, "127.0.0.1", hold)
		r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, DrainTimeout: 200 * time.Millisecond, Relay: f})
		c := dial(t, r.addrs[0])
		waitFor(t, "connection active", func() bool { return forwardSnap(r, 0).Active == 1 })
		began := time.Now()
		if cut := r.shutdown(t); cut != 1 {
			t.Errorf("connections cut = %d, want 1", cut)
		}
		// The docs' task definitions leave config.StopMargin between
		// DRAIN_TIMEOUT and stopTimeout for what follows the deadline.
		if d := time.Since(began); d < 200*time.Millisecond || d > 200*time.Millisecond+config.StopMargin {
			t.Errorf("shut down after %v; want after the 200ms drain deadline and within %v of it", d, config.StopMargin)
		}
		expectClosed(t, c, "straggler after the drain deadline")
		if n := countOf(forwardSnap(r, 0).ConnectionsClosed, "drain_deadline"); n != 1 {
			t.Errorf("closed{drain_deadline} = %d, want 1", n)
		}
	})
}

// A port in use: Listen fails naming the address, and the listeners it had
// already opened are closed again.
func TestListenPortInUse(t *testing.T) {
	busy := testkit.Listen(t)
	busyPort := busy.Addr().(*net.TCPAddr).Port
	freePort := testkit.FreePort(t)

	srv, err := proxy.New(proxy.Config{ListenAddr: "127.0.0.1", Forwards: []proxy.Forward{
		{ListenPort: freePort, TargetHost: "127.0.0.1", TargetPort: 1},
		{ListenPort: busyPort, TargetHost: "127.0.0.1", TargetPort: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Listen(context.Background())
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(busyPort)) {
		t.Fatalf("Listen error = %v, want address in use naming 127.0.0.1:%d", err, busyPort)
	}
	if srv.Ready() {
		t.Error("ready after a failed Listen")
	}
	again, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(freePort))
	if err != nil {
		t.Fatalf("first listener left open after the failure: %v", err)
	}
	_ = again.Close()
}

// Several forwards side by side, each to its own target.
func TestSeveralForwards(t *testing.T) {
	writer := startUpstream(t, "127.0.0.1", func(c *net.TCPConn) { _, _ = c.Write([]byte("writer")) })
	reader := startUpstream(t, "127.0.0.1", func(c *net.TCPConn) { _, _ = c.Write([]byte("reader")) })
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(writer), forwardTo(reader)}})
	for i, want := range []string{"writer", "reader"} {
		c := dial(t, r.addrs[i])
		_ = c.SetDeadline(time.Now().Add(safety))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != want {
			t.Errorf("forward %d: got %q (err %v), want %q", i, got, err, want)
		}
	}
	waitFor(t, "both counted", func() bool { return forwardSnap(r, 0).Total == 1 && forwardSnap(r, 1).Total == 1 })
}

// The DNS lookup itself failing is a dial failure with reason dns.
func TestDNSFailureClosesClient(t *testing.T) {
	dns := testdns.Start(t) // knows no names: NXDOMAIN
	r := startProxy(t, proxy.Config{
		Forwards: []proxy.Forward{{TargetHost: "gone.sidecar.test", TargetPort: 3306}},
		Resolver: dns.Resolver(),
	})
	expectClosed(t, dial(t, r.addrs[0]), "client of an unresolvable target")
	waitFor(t, "dns failure counted", func() bool { return countOf(forwardSnap(r, 0).DialFailures, "dns") == 1 })
}

// Each address the name resolves to is tried in turn.
func TestTriesEachAddress(t *testing.T) {
	dns := testdns.Start(t)
	up := startUpstream(t, "127.0.0.1", echo)
	// 127.0.0.3 has nothing on the port: refused, then 127.0.0.1 answers.
	dns.Set("db.sidecar.test", netip.MustParseAddr("127.0.0.3"), up.addr.Addr())
	r := startProxy(t, proxy.Config{
		Forwards: []proxy.Forward{{TargetHost: "db.sidecar.test", TargetPort: int(up.addr.Port())}},
		Resolver: dns.Resolver(),
	})
	if err := exchange(dial(t, r.addrs[0]), []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if n := countOf(forwardSnap(r, 0).DialFailures, "refused"); n != 1 {
		t.Errorf("dial failures{refused} = %d, want 1 (the first address)", n)
	}
}

// Byte counters are live: a pooled connection's traffic shows while it is
// still open, and closing it adds nothing more (no double count).
func TestBytesCountedLive(t *testing.T) {
	eachRelay(t, func(t *testing.T, f relay.Func) {
		up := startUpstream(t, "127.0.0.1", echo)
		r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, Relay: f})
		c := dial(t, r.addrs[0])
		msg := randomBytes(t, 1000)
		if err := exchange(c, msg); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "bytes counted while open", func() bool {
			s := forwardSnap(r, 0)
			return s.BytesToUpstream == 1000 && s.BytesToClient == 1000
		})
		if s := forwardSnap(r, 0); s.Active != 1 {
			t.Fatalf("active = %d, want the connection still open", s.Active)
		}
		_ = c.Close()
		waitFor(t, "close counted", func() bool { return forwardSnap(r, 0).Active == 0 })
		waitFor(t, "close counted", func() bool { return accountedCloses(forwardSnap(r, 0)) == 1 })
		if s := forwardSnap(r, 0); s.BytesToUpstream != 1000 || s.BytesToClient != 1000 {
			t.Errorf("after close: %d bytes up, %d down; want 1000 each", s.BytesToUpstream, s.BytesToClient)
		}
	})
}

func accountedCloses(s proxy.ForwardSnapshot) uint64 {
	var n uint64
	for _, c := range s.ConnectionsClosed {
		n += c.Value
	}
	return n
}

// DRAIN_TIMEOUT=0 with no connection open cuts nothing, and says so at
// INFO: the deadline WARN is for connections that were cut.
func TestZeroDrainWithNothingOpen(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", hold)
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, DrainTimeout: -1})
	if cut := r.shutdown(t); cut != 0 {
		t.Errorf("connections cut = %d, want 0", cut)
	}
	logs := r.logs.String()
	if strings.Contains(logs, "drain deadline passed") || len(testkit.JSONLogLines(logs, "drained")) != 1 {
		t.Errorf("want one \"drained\" line and no deadline WARN:\n%s", logs)
	}
}

// A session that ends cleanly as the drain deadline passes (its peers'
// EOFs and the cut cross in the relay) was not cut: Serve's count, and so
// the "drain deadline passed" line, agrees with
// sidecar_connections_closed_total, which counts it as eof.
func TestDrainCountsOnlyWhatItCut(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", hold)
	endsAsCut := func(ctx context.Context, client, upstream *net.TCPConn, _ time.Duration) relay.Result {
		<-ctx.Done() // the last EOF came with the cut
		_ = client.Close()
		_ = upstream.Close()
		return relay.Result{Reason: relay.ReasonDone}
	}
	for _, tc := range []struct {
		name  string
		relay relay.Func
		cut   int
	}{
		{"ended as the deadline passed", endsAsCut, 0},
		{"cut", relay.Copy, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, DrainTimeout: 50 * time.Millisecond, Relay: tc.relay})
			_ = dial(t, r.addrs[0])
			waitFor(t, "connection active", func() bool { return forwardSnap(r, 0).Active == 1 })
			cut := r.shutdown(t)
			if n := countOf(forwardSnap(r, 0).ConnectionsClosed, "drain_deadline"); cut != tc.cut || n != uint64(tc.cut) {
				t.Errorf("connections cut = %d, closed{drain_deadline} = %d; want %d, as the metric counts", cut, n, tc.cut)
			}
		})
	}
}
