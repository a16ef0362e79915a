package proxy_test

// Reliability under load and faults (issue 5). Every test here runs on each
// data path dataPaths returns: the portable one and, on Linux, epoll.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/sidecar/internal/proxy"
	"github.com/example/sidecar/sidecar/internal/relay"
	"github.com/example/sidecar/sidecar/internal/testdns"
)

// namedRelay is a data path the reliability tests run on.
type namedRelay struct {
	name string
	f    relay.Func
}

// eachRelay runs test on every data path this system has (dataPaths).
func eachRelay(t *testing.T, test func(*testing.T, relay.Func)) {
	for _, r := range dataPaths(t) {
		t.Run(r.name, func(t *testing.T) { test(t, r.f) })
	}
}

// hashAndReply reads the client's request to EOF, then answers with the
// SHA-256 of what it read, size random bytes, and the SHA-256 of those.
func hashAndReply(size int) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		h := sha256.New()
		if _, err := io.Copy(h, patient{c}); err != nil {
			return
		}
		payload := make([]byte, size)
		_, _ = cryptoRead(payload)
		sum := sha256.Sum256(payload)
		msg := append(append(h.Sum(nil), payload...), sum[:]...)
		_, _ = patient{c}.Write(msg)
		_ = c.CloseWrite()
	}
}

// loadClient sends size random bytes, half-closes, and checks the reply of
// hashAndReply: both directions verified by checksum.
func loadClient(c *net.TCPConn, size int, errs chan<- error) {
	errs <- loadExchange(c, size)
}

func loadExchange(c *net.TCPConn, size int) error {
	data := make([]byte, size)
	if _, err := cryptoRead(data); err != nil {
		return err
	}
	if _, err := (patient{c}).Write(data); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	reply, err := io.ReadAll(patient{c})
	if err != nil {
		return fmt.Errorf("read after %d bytes: %w", len(reply), err)
	}
	if len(reply) != 32+size+32 {
		return fmt.Errorf("reply of %d bytes, want %d", len(reply), 64+size)
	}
	if sent := sha256.Sum256(data); !bytes.Equal(reply[:32], sent[:]) {
		return errors.New("upstream received different bytes than sent")
	}
	if got := sha256.Sum256(reply[32 : 32+size]); !bytes.Equal(reply[32+size:], got[:]) {
		return errors.New("client received different bytes than the upstream sent")
	}
	return nil
}

// 1,000 connections open at once, each moving random data both ways,
// checked by checksum: nothing lost, reordered, crossed or stuck.
func TestLoad1000Connections(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 1,000 connections moving 64 KiB each way take 7-22 s; TestDrainUnderLoad (200 transfers at once) and TestUpstreamResetUnderLoad still load the relay")
	}
	eachRelay(t, func(t *testing.T, f relay.Func) {
		const n, size = 1000, 64 << 10
		needFDs(t, 6*n)
		up := startUpstream(t, "127.0.0.1", hashAndReply(size))
		r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, MaxConnections: 2 * n, Relay: f})
		conns := make([]*net.TCPConn, n)
		for i := range conns {
			conns[i] = dial(t, r.addrs[0])
		}
		waitFor(t, "all connections relayed", func() bool { return forwardSnap(r, 0).Active == n && up.count() == n })
		errs := make(chan error, n)
		for _, c := range conns {
			go loadClient(c, size, errs)
		}
		failed := 0
		for range n {
			if err := <-errs; err != nil {
				if failed++; failed <= 10 {
					t.Error(err)
				}
			}
		}
		if failed > 0 {
			t.Fatalf("%d of %d connections failed", failed, n)
		}
		for _, c := range conns {
			_ = c.Close()
		}
		waitFor(t, "all connections ended", func() bool { return forwardSnap(r, 0).Active == 0 })
		s := forwardSnap(r, 0)
		if s.Total != n || countOf(s.ConnectionsClosed, "eof") != n {
			t.Errorf("total %d, closed{eof} %d; want %d each", s.Total, countOf(s.ConnectionsClosed, "eof"), n)
		}
		if s.BytesToUpstream != n*size || s.BytesToClient != n*(size+64) {
			t.Errorf("bytes up %d, down %d; want %d and %d", s.BytesToUpstream, s.BytesToClient, n*size, n*(size+64))
		}
	})
}

// The upstream never answers the SYN: the connect timeout is honoured, for
// every address, and the client is closed with the failure counted.
func TestConnectTimeoutBlackhole(t *testing.T) {
	const timeout = 300 * time.Millisecond
	var calls atomic.Int32
	var badDeadline atomic.Bool
	blackhole := func(ctx context.Context, network, addr string) (net.Conn, error) {
		calls.Add(1)
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > timeout {
			badDeadline.Store(true)
		}
		<-ctx.Done() // like a SYN that is never answered
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	}
	dns := testdns.Start(t)
	dns.Set("db.sidecar.test", netip.MustParseAddr("127.0.0.10"), netip.MustParseAddr("127.0.0.11"))
	r := startProxy(t, proxy.Config{
		Forwards:       []proxy.Forward{{TargetHost: "db.sidecar.test", TargetPort: 3306}},
		ConnectTimeout: timeout, DialContext: blackhole, Resolver: dns.Resolver(),
	})
	began := time.Now()
	expectClosed(t, dial(t, r.addrs[0]), "client of a blackholed upstream")
	if d := time.Since(began); d < 2*timeout {
		t.Errorf("client closed after %v, before two connect timeouts (%v)", d, 2*timeout)
	}
	if calls.Load() != 2 || badDeadline.Load() {
		t.Errorf("dial calls = %d (want 2, one per address); a dial without the connect-timeout deadline: %v", calls.Load(), badDeadline.Load())
	}
	waitFor(t, "timeouts counted", func() bool { return countOf(forwardSnap(r, 0).DialFailures, "timeout") == 2 })
}

// muxUpstream serves by the first byte a client sends: 'E' echo, 'R' send
// "bye" then reset once byeRead is closed (the client has read it: an
// earlier RST may overtake the data), 'S' stream forever (for clients that
// never read). Tests that send no 'R' pass a nil byeRead.
func muxUpstream(byeRead <-chan struct{}) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		_ = c.SetDeadline(time.Now().Add(2 * safety))
		cmd := make([]byte, 1)
		if _, err := io.ReadFull(c, cmd); err != nil {
			return
		}
		switch cmd[0] {
		case 'E':
			echo(c)
		case 'R':
			_, _ = c.Write([]byte("bye"))
			select {
			case <-byeRead:
			case <-time.After(safety):
			}
			_ = c.SetLinger(0)
		case 'S':
			chunk := make([]byte, 64<<10)
			for {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}
	}
}

// echoClient runs one echo round trip of size random bytes through the mux.
func echoClient(addr string, size int, errs chan<- error) {
	errs <- echoVia(addr, size)
}

func echoVia(addr string, size int) error {
	nc, err := net.DialTimeout("tcp", addr, safety)
	if err != nil {
		return err
	}
	defer nc.Close()
	c := nc.(*net.TCPConn)
	if _, err := c.Write([]byte{'E'}); err != nil {
		return err
	}
	data := make([]byte, size)
	if _, err := cryptoRead(data); err != nil {
		return err
	}
	return echoRoundTrip(c, data)
}

// An upstream resetting one connection mid-stream under load: that client
// sees the close promptly; the 50 transfers around it complete intact.
func TestUpstreamResetUnderLoad(t *testing.T) {
	eachRelay(t, func(t *testing.T, f relay.Func) {
		byeRead := make(chan struct{})
		up := startUpstream(t, "127.0.0.1", muxUpstream(byeRead))
		r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, Relay: f})
		const n = 50
		errs := make(chan error, n)
		for range n {
			go echoClient(r.addrs[0], 1<<20, errs)
		}
		victim := dial(t, r.addrs[0])
		if _, err := victim.Write([]byte{'R'}); err != nil {
			t.Fatal(err)
		}
		_ = victim.SetReadDeadline(time.Now().Add(safety))
		bye := make([]byte, 3)
		if _, err := io.ReadFull(victim, bye); err != nil || string(bye) != "bye" {
			t.Errorf("victim read %q, %v; want 'bye'", bye, err)
		}
		close(byeRead)
		rest, err := io.ReadAll(victim)
		var ne net.Error
		if len(rest) != 0 || errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("victim read %q, %v after 'bye'; want a prompt close", rest, err)
		}
		for range n {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		waitFor(t, "reset counted", func() bool {
			return countOf(forwardSnap(r, 0).ConnectionsClosed, string(relay.ReasonUpstreamError)) == 1
		})
	})
}

// Stalled and trickling clients next to bulk transfers: the stalled ones
// (never reading while their upstream streams) and a client sending one byte
// at a time do not hold up the others.
func TestSlowClientsDoNotSlowOthers(t *testing.T) {
	eachRelay(t, func(t *testing.T, f relay.Func) {
		up := startUpstream(t, "127.0.0.1", muxUpstream(nil))
		r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, Relay: f})
		for range 5 {
			stalled := dial(t, r.addrs[0])
			if _, err := stalled.Write([]byte{'S'}); err != nil {
				t.Fatal(err)
			}
		}
		trickle := dial(t, r.addrs[0])
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go trickleUntil(trickle, stop, &wg)

		const n = 30
		errs := make(chan error, n)
		for range n {
			go echoClient(r.addrs[0], 2<<20, errs)
		}
		for range n {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		close(stop)
		wg.Wait()
	})
}

func trickleUntil(c *net.TCPConn, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	if _, err := c.Write([]byte{'E'}); err != nil {
		return
	}
	one := make([]byte, 1)
	for {
		select {
		case <-stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
		_ = c.SetDeadline(time.Now().Add(safety))
		if _, err := c.Write([]byte{'x'}); err != nil {
			return
		}
		if _, err := io.ReadFull(c, one); err != nil {
			return
		}
	}
}

// Aurora failover under load: connections keep flowing to A while the DNS
// answer switches to B; every new connection goes to B and the old ones keep
// working (the stale check is off by default).
func TestDNSSwitchUnderLoad(t *testing.T) {
	eachRelay(t, func(t *testing.T, f relay.Func) {
		dns, a, b, r := startFailover(t, proxy.Config{Relay: f})
		const n = 100
		old := make([]*net.TCPConn, n)
		for i := range old {
			old[i] = dial(t, r.addrs[0])
		}
		stop := make(chan struct{})
		errs := make(chan error, n)
		var exchanges atomic.Int64
		for _, c := range old {
			go keepExchanging(c, stop, &exchanges, errs)
		}
		waitFor(t, "old connections on A", func() bool { return a.count() == n && exchanges.Load() >= 2*n })

		dns.Set("db.sidecar.test", b.addr.Addr()) // failover
		newErrs := make(chan error, n)
		for range n {
			go newConnExchange(r.addrs[0], newErrs)
		}
		for range n {
			if err := <-newErrs; err != nil {
				t.Error(err)
			}
		}
		before := exchanges.Load()
		waitFor(t, "old connections still exchanging after the switch", func() bool { return exchanges.Load() >= before+2*n })
		close(stop)
		for range n {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		if a.count() != n || b.count() != n {
			t.Errorf("A got %d connections, B %d; want %d each", a.count(), b.count(), n)
		}
	})
}

func keepExchanging(c *net.TCPConn, stop <-chan struct{}, count *atomic.Int64, errs chan<- error) {
	msg := make([]byte, 1024)
	for i := 0; ; i++ {
		select {
		case <-stop:
			errs <- nil
			return
		default:
		}
		msg[0] = byte(i)
		if err := exchange(c, msg); err != nil {
			errs <- fmt.Errorf("old connection, exchange %d: %w", i, err)
			return
		}
		count.Add(1)
		time.Sleep(2 * time.Millisecond)
	}
}

func newConnExchange(addr string, errs chan<- error) {
	errs <- dialExchange(addr, []byte("new connection"))
}

// dialExchange opens a connection to addr, exchanges msg on it and closes
// it; unlike dial it may run outside the test's goroutine.
func dialExchange(addr string, msg []byte) error {
	nc, err := net.DialTimeout("tcp", addr, safety)
	if err != nil {
		return err
	}
	defer nc.Close()
	return exchange(nc.(*net.TCPConn), msg)
}

// The opt-in stale check closes connections whose upstream address left
// the DNS answer, keeps those to current addresses, and closes nothing when
// the lookup fails.
func TestStaleCheckClosesDemotedUpstream(t *testing.T) {
	eachRelay(t, func(t *testing.T, f relay.Func) {
		dns, _, b, r := startFailover(t, proxy.Config{StaleCheckInterval: 100 * time.Millisecond, StaleAfter: 200 * time.Millisecond, Relay: f})
		onA := dial(t, r.addrs[0])
		if err := exchange(onA, []byte("writer")); err != nil {
			t.Fatal(err)
		}
		// Several checks pass while A is still the answer: nothing closes.
		q := dns.Queries()
		waitFor(t, "three stale checks", func() bool { return dns.Queries() >= q+6 }) // A and AAAA per check
		if err := exchange(onA, []byte("still writer")); err != nil {
			t.Fatalf("connection to a current address closed: %v", err)
		}

		dns.Set("db.sidecar.test", b.addr.Addr()) // failover: A demoted
		onB := dial(t, r.addrs[0])
		if err := exchange(onB, []byte("new writer")); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, onA, "connection to the demoted writer")
		waitFor(t, "stale close counted", func() bool {
			return countOf(forwardSnap(r, 0).ConnectionsClosed, "stale_upstream") == 1
		})

		dns.Set("db.sidecar.test") // lookups fail (NXDOMAIN): close nothing
		q = dns.Queries()
		waitFor(t, "three failed stale checks", func() bool { return dns.Queries() >= q+6 })
		if err := exchange(onB, []byte("survives a DNS outage")); err != nil {
			t.Fatalf("connection closed during a DNS outage: %v", err)
		}
		if n := countOf(forwardSnap(r, 0).ConnectionsClosed, "stale_upstream"); n != 1 {
			t.Errorf("closed{stale_upstream} = %d, want 1", n)
		}
		if l := r.logs.lines("stale check: closing"); len(l) != 1 {
			t.Errorf("stale close log lines = %d, want 1", len(l))
		}
	})
}

// A stale check whose A lookup fails while AAAA answers (a dual-stack
// name, a throttled resolver) closes nothing: the writer has not moved.
func TestStaleCheckIgnoresPartialAnswer(t *testing.T) {
	dns, a, _, r := startFailover(t, proxy.Config{DNSCacheTTL: time.Hour, StaleCheckInterval: 50 * time.Millisecond, StaleAfter: 100 * time.Millisecond})
	dns.Set("db.sidecar.test", a.addr.Addr(), netip.MustParseAddr("fd00::1"))
	c := dial(t, r.addrs[0])
	if err := exchange(c, []byte("writer")); err != nil {
		t.Fatal(err)
	}
	dns.FailA("db.sidecar.test")
	q := dns.Queries()
	waitFor(t, "three stale checks", func() bool { return dns.Queries() >= q+6 })
	if err := exchange(c, []byte("still writer")); err != nil {
		t.Errorf("connection to the unchanged writer closed after its A lookup failed: %v (closed: %v)", err, forwardSnap(r, 0).ConnectionsClosed)
	}
}

// While the stale check's lookups fail (a throttled resolver: the outage
// the held answer is for), it says so once, not at every interval, and
// once more when they answer again.
func TestStaleCheckLogsADNSOutageOnce(t *testing.T) {
	dns, a, _, r := startFailover(t, proxy.Config{StaleCheckInterval: 50 * time.Millisecond})
	connectEcho(t, r)
	dns.Fail("db.sidecar.test")
	q := dns.Queries()
	waitFor(t, "five failed stale checks", func() bool { return dns.Queries() >= q+10 })
	dns.Set("db.sidecar.test", a.addr.Addr())
	waitFor(t, "the lookups answering again", func() bool { return len(r.logs.lines("stale check: lookup answers again")) == 1 })
	if n := len(r.logs.lines("stale check: lookup failed")); n != 1 {
		t.Errorf("one DNS outage logged %d \"stale check: lookup failed\" lines; want 1", n)
	}
}

// hostsResolver answers as Go's resolver does for a name that /etc/hosts
// lists with IPv4 addresses only (localhost on many images, docker
// --add-host, ECS extraHosts): the IPv4 addresses, and for "ip6" the
// error Go gives when no address of that family is left, which is no
// DNS error. That error is Go's own: a lookup of an IPv4 literal gets it.
type hostsResolver struct{ v4 atomic.Pointer[netip.Addr] }

func (h *hostsResolver) LookupNetIP(ctx context.Context, network, _ string) ([]netip.Addr, error) {
	a := *h.v4.Load()
	switch network {
	case "ip6":
		return net.DefaultResolver.LookupNetIP(ctx, "ip6", a.String())
	default:
		return []netip.Addr{a}, nil
	}
}

// A name with IPv4 addresses only in /etc/hosts answers the stale check:
// its lookups were taken for failures ("no suitable address found" for
// IPv6), so the check logged "lookup failed" at start and never closed a
// connection to a writer that had left the answer.
func TestStaleCheckFollowsAHostsFileName(t *testing.T) {
	a, b := startPair(t)
	res := &hostsResolver{}
	aAddr, bAddr := a.addr.Addr(), b.addr.Addr()
	res.v4.Store(&aAddr)
	if _, err := res.LookupNetIP(context.Background(), "ip6", "db"); err == nil {
		t.Fatal("Go's resolver gave an IPv6 lookup of an IPv4 literal no error; this test then shows nothing")
	}
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{{TargetHost: "db", TargetPort: int(a.addr.Port())}}, Resolver: res,
		DNSCacheTTL: -1, StaleCheckInterval: 50 * time.Millisecond, StaleAfter: 100 * time.Millisecond})
	onA := dial(t, r.addrs[0])
	if err := exchange(onA, []byte("writer")); err != nil {
		t.Fatal(err)
	}
	res.v4.Store(&bAddr) // failover: the hosts file now names b
	expectClosed(t, onA, "connection to the address the name no longer gives")
	if l := r.logs.lines("stale check: lookup failed"); len(l) != 0 {
		t.Errorf("the stale check logged %q for a name that resolves", l)
	}
}

// flakyListener fails Accept with EMFILE while failing is set, as a process
// out of file descriptors does; with alternate, every other Accept fails,
// as when descriptors are freed and taken by turns. It records when each
// failure came.
type flakyListener struct {
	net.Listener
	failing   atomic.Bool
	alternate atomic.Bool

	mu       sync.Mutex
	turn     bool
	failedAt []time.Time
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.failing.Load() {
		l.mu.Lock()
		l.turn = !l.turn
		fail := !l.alternate.Load() || l.turn
		if fail {
			l.failedAt = append(l.failedAt, time.Now())
		}
		l.mu.Unlock()
		if fail {
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
		}
	}
	return l.Listener.Accept()
}

// failures returns the times of the failures so far and forgets them.
func (l *flakyListener) failures() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.failedAt
	l.failedAt = nil
	return f
}

func (l *flakyListener) failed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.failedAt)
}

// Out of file descriptors: the accept loop backs off (doubling from 5 ms,
// capped) instead of spinning, also when accepts succeed between the
// failures, and serving resumes once descriptors are available again.
// Failures are logged once in full, then in summaries, and each is counted.
func TestAcceptErrorsBackOff(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", echo)
	fl := &flakyListener{}
	fl.failing.Store(true)
	listen := func(ctx context.Context, network, addr string) (net.Listener, error) {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, network, addr)
		fl.Listener = ln
		return fl, err
	}
	const maxBackoff = 80 * time.Millisecond
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, Listen: listen, AcceptBackoffMax: maxBackoff})
	// The pause after failure i is at least its backoff; a machine's load
	// only lengthens it.
	backsOff := func(phase string, at []time.Time) {
		t.Helper()
		for i := 1; i < len(at); i++ {
			want := min(5*time.Millisecond<<(i-1), maxBackoff)
			if gap := at[i].Sub(at[i-1]); gap < want-time.Millisecond {
				t.Errorf("%s: failure %d came %v after the one before; want at least %v (doubling from 5ms, capped)", phase, i, gap, want)
			}
		}
	}
	waitFor(t, "backoff to reach its cap", func() bool { return fl.failed() >= 7 })
	fails := fl.failures()
	backsOff("failing", fails)
	total := len(fails)

	fl.failing.Store(false) // descriptors are back
	if err := dialExchange(r.addrs[0], []byte("served again")); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	total += len(fl.failures())

	// A calm spell restarts the backoff; then accepts succeed and fail by
	// turns, and the pause keeps doubling.
	time.Sleep(2*maxBackoff + 10*time.Millisecond)
	fl.alternate.Store(true)
	fl.failing.Store(true)
	var held []net.Conn
	for range 6 {
		held = append(held, dial(t, r.addrs[0])) // each is accepted between two failures
	}
	waitFor(t, "five failures between accepts", func() bool { return fl.failed() >= 5 })
	fl.failing.Store(false)
	fails = fl.failures()
	backsOff("failing by turns", fails[:5])
	total += len(fails)
	if err := dialExchange(r.addrs[0], []byte("served again")); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	total += len(fl.failures())
	for _, c := range held {
		_ = c.Close()
	}

	if s := forwardSnap(r, 0); s.AcceptErrors != uint64(total) {
		t.Errorf("accept_errors = %d, want %d", s.AcceptErrors, total)
	}
	r.shutdown(t)
	lines := r.logs.lines("accept failed")
	if accounted(lines) != total {
		t.Errorf("%d accept failures logged or summarized; want %d", accounted(lines), total)
	}
	if len(lines) > 4 {
		t.Errorf("%d accept failure lines for %d failures in a second or two; want one in full and a summary a second", len(lines), total)
	}
	first := lines[0]
	if first["level"] != "ERROR" || first["retry_in_ms"] != float64(5) {
		t.Errorf("first accept failure: level %v, retry_in_ms %v; want ERROR and 5", first["level"], first["retry_in_ms"])
	}
	if _, ok := first["listen_port"].(float64); !ok {
		t.Errorf("accept failure line has listen_port %#v, want a JSON number as every per-forward line has", first["listen_port"])
	}
}

// SIGTERM under load: 200 paced transfers in flight when the drain begins
// all complete intact; nothing is cut before the drain deadline.
func TestDrainUnderLoad(t *testing.T) {
	eachRelay(t, func(t *testing.T, f relay.Func) {
		up := startUpstream(t, "127.0.0.1", echo)
		r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, DrainTimeout: safety, Relay: f})
		const n, chunks, chunk = 200, 20, 16 << 10
		var started sync.WaitGroup
		started.Add(n)
		errs := make(chan error, n)
		for range n {
			go pacedTransfer(r.addrs[0], chunks, chunk, &started, errs)
		}
		started.Wait() // every connection has a transfer under way
		r.cancel()     // SIGTERM
		waitFor(t, "not ready", func() bool { return !r.srv.Ready() })
		for range n {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		if cut := r.shutdown(t); cut != 0 {
			t.Errorf("%d connections cut before the drain deadline", cut)
		}
		if n := countOf(forwardSnap(r, 0).ConnectionsClosed, "eof"); n != 200 {
			t.Errorf("closed{eof} = %d, want 200", n)
		}
	})
}

// pacedTransfer echoes chunks with pauses, so it spans the drain.
func pacedTransfer(addr string, chunks, size int, started *sync.WaitGroup, errs chan<- error) {
	once := sync.OnceFunc(started.Done)
	defer once()
	nc, err := net.DialTimeout("tcp", addr, safety)
	if err != nil {
		errs <- err
		return
	}
	defer nc.Close()
	c := nc.(*net.TCPConn)
	_ = c.SetDeadline(time.Now().Add(safety))
	sent, recv := sha256.New(), sha256.New()
	buf, back := make([]byte, size), make([]byte, size)
	for i := range chunks {
		if _, err := cryptoRead(buf); err != nil {
			errs <- err
			return
		}
		sent.Write(buf)
		if _, err := c.Write(buf); err != nil {
			errs <- fmt.Errorf("chunk %d write: %w", i, err)
			return
		}
		if _, err := io.ReadFull(c, back); err != nil {
			errs <- fmt.Errorf("chunk %d read: %w", i, err)
			return
		}
		recv.Write(back)
		once()
		time.Sleep(10 * time.Millisecond)
	}
	_ = c.CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		errs <- fmt.Errorf("after the last chunk: %d extra bytes, %v", len(rest), err)
		return
	}
	if !bytes.Equal(sent.Sum(nil), recv.Sum(nil)) {
		errs <- errors.New("checksum mismatch")
		return
	}
	errs <- nil
}

// A client that resets its connection before a byte moved either way (a
// pool giving up, a health probe) has left: client_gone, which the
// departure grace counts. One that resets after sending is a client error.
func TestClientResetBeforeAByteIsGone(t *testing.T) {
	eachRelay(t, func(t *testing.T, f relay.Func) {
		up := startUpstream(t, "127.0.0.1", hold)
		r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{{TargetHost: "127.0.0.1", TargetPort: int(up.addr.Port())}}, Relay: f})
		for i, tc := range []struct {
			send   []byte
			reason string
		}{{nil, "client_gone"}, {[]byte("x"), "client_error"}} {
			c := dial(t, r.addrs[0])
			waitFor(t, "the upstream connection", func() bool { return up.count() == i+1 })
			if tc.send != nil {
				if _, err := c.Write(tc.send); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "the byte relayed", func() bool { return forwardSnap(r, 0).BytesToUpstream == 1 })
			}
			_ = c.SetLinger(0)
			_ = c.Close() // a reset
			waitFor(t, tc.reason, func() bool { return countOf(forwardSnap(r, 0).ConnectionsClosed, tc.reason) == 1 })
		}
	})
}

// A failover during the drain: the stale check keeps running until Serve
// returns, so a connection to the writer demoted in that window is closed
// (the app's pool reconnects elsewhere) rather than kept until
// DRAIN_TIMEOUT, with its writes failing as read-only.
func TestStaleCheckRunsDuringDrain(t *testing.T) {
	dns, _, b, r := startFailover(t, proxy.Config{StaleCheckInterval: 50 * time.Millisecond, StaleAfter: 100 * time.Millisecond,
		DrainTimeout: 2 * safety}) // longer than expectClosed waits: only the stale check can close the connection
	onA := dial(t, r.addrs[0])
	if err := exchange(onA, []byte("writer")); err != nil {
		t.Fatal(err)
	}
	r.cancel() // SIGTERM's effect
	waitFor(t, "the drain", r.srv.Draining)
	dns.Set("db.sidecar.test", b.addr.Addr()) // failover: A demoted
	expectClosed(t, onA, "connection to the writer demoted during the drain")
	// The app sees the close before the connection is counted.
	if cut := r.shutdown(t); cut != 0 {
		t.Errorf("connections cut = %d, want 0", cut)
	}
	if n := countOf(forwardSnap(r, 0).ConnectionsClosed, "stale_upstream"); n != 1 {
		t.Errorf("closed{stale_upstream} = %d, want 1 (closed: %v)", n, forwardSnap(r, 0).ConnectionsClosed)
	}
}
