package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
)

const (
	testTTL    = time.Second
	testLookup = 5 * time.Second // the lookup's timeout
)

var (
	errFail = errors.New("server misbehaving")
	addrA   = []netip.Addr{netip.MustParseAddr("10.0.0.1")}
	addrB   = []netip.Addr{netip.MustParseAddr("10.0.0.2")}
)

// hit fails the test unless the cache answers at now with want.
func hit(t *testing.T, a *answers, now time.Time, want []netip.Addr, why string) {
	t.Helper()
	got, c, _ := a.get(now, testTTL, testLookup)
	if c != nil || got.err != nil || !slices.Equal(got.addrs, want) {
		t.Fatalf("%s: get = %v, %v, lookup %v; want %v", why, got.addrs, got.err, c != nil, want)
	}
}

// miss fails the test unless the cache sends the caller to a lookup at
// now, one it starts if start.
func miss(t *testing.T, a *answers, now time.Time, start bool, why string) *lookupCall {
	t.Helper()
	got, c, started := a.get(now, testTTL, testLookup)
	if c == nil || started != start {
		t.Fatalf("%s: get = %v, %v, lookup %v, started %v; want a lookup, started %v", why, got.addrs, got.err, c != nil, started, start)
	}
	return c
}

// answered ends the lookup c with addrs at now, as lookupTarget does.
func answered(a *answers, c *lookupCall, addrs []netip.Addr, now time.Time) {
	a.put(addrs, nil, c.began, now)
	a.end(c, answer{addrs: addrs, asked: c.began})
}

// The cached answer is the newest lookup's, whatever order lookups end in,
// and serves for the TTL from its arrival; then one caller starts a lookup
// and the others keep the answer until it ends (or could have).
func TestAnswers(t *testing.T) {
	t0 := time.Now()
	var a answers
	first := miss(t, &a, t0, true, "an empty cache")
	if c := miss(t, &a, t0.Add(time.Millisecond), false, "an empty cache while a lookup runs"); c != first {
		t.Fatal("a second caller got a lookup of its own, not the one under way")
	}
	slow := t0.Add(3 * time.Second) // the lookup took longer than the TTL
	answered(&a, first, addrB, slow)
	select {
	case <-first.done:
	default:
		t.Fatal("the lookup ended but those waiting for it were not told")
	}
	a.put(addrA, nil, t0.Add(-time.Millisecond), slow) // a slower lookup that began first
	hit(t, &a, slow.Add(testTTL-time.Millisecond), addrB, "the newer lookup's answer, for the TTL from its arrival")

	exp := slow.Add(testTTL)
	second := miss(t, &a, exp, true, "an answer as old as the TTL")
	hit(t, &a, exp.Add(time.Millisecond), addrB, "while the lookup runs")
	hit(t, &a, second.until.Add(-time.Millisecond), addrB, "while the lookup may still run")
	third := miss(t, &a, second.until, true, "past the time the lookup could take")
	a.end(second, answer{}) // ends late: the third lookup keeps its role
	hit(t, &a, third.began.Add(time.Millisecond), addrB, "while the third lookup runs")

	// A lookup begun after the running one answers first (the stale
	// check's): those waiting for the running one get it at once.
	stale := third.began.Add(time.Millisecond)
	a.put(addrA, nil, stale, stale)
	select {
	case <-third.done:
	default:
		t.Fatal("a newer answer arrived, but those waiting for the running lookup still wait")
	}
	if !slices.Equal(third.res.addrs, addrA) || third.res.cached {
		t.Fatalf("waiters got %v (cached %v); want the newer answer %v, fresh", third.res.addrs, third.res.cached, addrA)
	}
	answered(&a, third, addrB, stale.Add(time.Millisecond)) // the running lookup ends later, with the older answer
	if !slices.Equal(third.res.addrs, addrA) {
		t.Fatalf("the lookup's end replaced what its waiters were given: %v", third.res.addrs)
	}
	hit(t, &a, stale.Add(testTTL-time.Millisecond), addrA, "the newer lookup's answer, not the older one arriving after it")
}

// No such name is an answer: it fails connections for the TTL without a
// lookup each, and is not used while the name is looked up again.
func TestAnswersNotFound(t *testing.T) {
	t0 := time.Now()
	errNone := errors.New("no such host")
	var a answers
	a.put(addrA, nil, t0.Add(-testTTL), t0.Add(-testTTL))
	a.put(nil, errNone, t0, t0)
	if got, c, _ := a.get(t0.Add(testTTL-time.Millisecond), testTTL, testLookup); c != nil || got.err != errNone || got.addrs != nil {
		t.Fatalf("get = %v, %v, lookup %v; want the cached no such name", got.addrs, got.err, c != nil)
	}
	miss(t, &a, t0.Add(testTTL), true, "no such name as old as the TTL")
	miss(t, &a, t0.Add(testTTL+time.Millisecond), false, "no such name while it is looked up again")
}

// A connection whose every address failed marks the answer (unless DNS
// was asked within MinRelookup): the next callers wait for a lookup rather
// than dial it, and the answer stays until another replaces it. While a
// failed lookup holds it, it is not marked: DNS has nothing newer to say.
func TestAnswersForget(t *testing.T) {
	t0 := time.Now()
	var a answers
	answered(&a, miss(t, &a, t0, true, "an empty cache"), addrA, t0)
	if !a.forget(t0.Add(-time.Millisecond), t0.Add(MinRelookup)) {
		t.Error("forget of a replaced answer said a new lookup would not help")
	}
	hit(t, &a, t0.Add(MinRelookup), addrA, "after forgetting a replaced answer")
	if a.forget(t0, t0.Add(MinRelookup-time.Millisecond)) {
		t.Error("forget asked for a lookup within MinRelookup of the last")
	}
	a.put(addrA, nil, t0.Add(MinRelookup/2), t0.Add(MinRelookup/2)) // the stale check's
	if a.forget(t0.Add(MinRelookup/2), t0.Add(MinRelookup)) {
		t.Error("forget asked for a lookup within MinRelookup of the stale check's")
	}
	hit(t, &a, t0.Add(MinRelookup), addrA, "an answer not marked")
	now := t0.Add(2 * MinRelookup)
	if !a.forget(t0.Add(MinRelookup/2), now) {
		t.Fatal("forget MinRelookup after the last lookup said a new one would not help")
	}
	relook := miss(t, &a, now, true, "a failed answer")
	miss(t, &a, now.Add(time.Millisecond), false, "a failed answer while it is looked up again")
	failed := now.Add(testLookup)
	if got, _, _ := a.hold(relook, errFail, failed, testTTL); !got.cached || !slices.Equal(got.addrs, addrA) {
		t.Fatalf("hold of a failed answer when DNS fails = %v, %v; want it kept", got.addrs, got.err)
	}
	a.end(relook, answer{})
	hit(t, &a, failed.Add(time.Millisecond), addrA, "a failed answer held: DNS failed too")
	if a.forget(t0.Add(MinRelookup/2), failed.Add(MinRelookup)) {
		t.Error("forget during a hold asked for a lookup: DNS failed, it has nothing newer to say")
	}
	hit(t, &a, failed.Add(MinRelookup), addrA, "an answer failing again during the hold")

	// Addresses that failed, any answer replaces, even one from a lookup
	// that began before theirs.
	later := failed.Add(testTTL)
	a.put(addrA, nil, later, later)
	if !a.forget(later, later.Add(MinRelookup)) {
		t.Fatal("forget MinRelookup after the last lookup said a new one would not help")
	}
	a.put(addrB, nil, later.Add(-time.Millisecond), later.Add(MinRelookup))
	hit(t, &a, later.Add(MinRelookup), addrB, "an older lookup's answer after the newer one failed")
}

// After a failed lookup the last answer serves for the TTL; then one
// caller looks up again while the others keep it; an answer ends the hold,
// and a lookup that failed after a newer one answered holds nothing. With
// nothing to hold, the failure is the answer for the TTL from its arrival.
func TestAnswersHold(t *testing.T) {
	t0 := time.Now()
	var a answers
	cold := miss(t, &a, t0, true, "an empty cache")
	if got, renewed, _ := a.hold(cold, errFail, t0.Add(testLookup), testTTL); renewed || got.addrs != nil || got.err != errFail {
		t.Fatalf("hold of an empty cache = %v, %v, renewed %v; want the failure", got.addrs, got.err, renewed)
	}
	a.end(cold, answer{})
	if got, c, _ := a.get(t0.Add(testLookup+testTTL-time.Millisecond), testTTL, testLookup); c != nil || got.err != errFail {
		t.Fatalf("get after a failure with nothing to hold = %v, lookup %v; want the failure, for the TTL from its arrival", got.err, c != nil)
	}

	a.put(addrA, nil, t0.Add(testLookup), t0.Add(testLookup))
	asked := t0.Add(testLookup)
	c := miss(t, &a, asked.Add(2*testTTL), true, "an expired answer before any lookup failed")
	failed := c.began.Add(testLookup)
	got, renewed, started := a.hold(c, errFail, failed, testTTL)
	if !renewed || !started || !got.cached || !slices.Equal(got.addrs, addrA) || !got.asked.Equal(asked) {
		t.Fatalf("hold = %v asked %v, renewed %v, started %v; want the last answer, renewed, started", got.addrs, got.asked, renewed, started)
	}
	a.end(c, got)
	if _, renewed, started := a.hold(c, errFail, failed.Add(time.Millisecond), testTTL); renewed || started {
		t.Error("a second failure during the hold said it began a hold period")
	}
	hit(t, &a, failed.Add(testTTL), addrA, "during the hold")
	end := failed.Add(time.Millisecond + testTTL) // the second failure renewed the hold
	again := miss(t, &a, end, true, "as the hold ended")
	hit(t, &a, end.Add(time.Millisecond), addrA, "while one caller looks up again")
	if _, renewed, started := a.hold(again, errFail, end.Add(testLookup), testTTL); !renewed || started {
		t.Errorf("a failure after the hold ended: renewed %v, started %v; want a new period of the same outage", renewed, started)
	}
	a.end(again, answer{})
	back := miss(t, &a, end.Add(testLookup+testTTL), true, "as the second hold ended")
	answered(&a, back, addrB, back.began)
	miss(t, &a, back.began.Add(testTTL), true, "an answer as old as the TTL after a lookup answered: the hold survived")

	late := &lookupCall{began: back.began.Add(-time.Millisecond)} // began before the answer above
	if got, renewed, _ := a.hold(late, errFail, back.began.Add(testTTL), testTTL); renewed || !slices.Equal(got.addrs, addrB) {
		t.Errorf("hold for a lookup older than the answer = %v, renewed %v; want the newer answer, not held", got.addrs, renewed)
	}
	a.put(nil, errors.New("no such host"), back.began.Add(testTTL), back.began.Add(testTTL))
	after := &lookupCall{began: back.began.Add(2 * testTTL)}
	if got, renewed, _ := a.hold(after, errFail, after.began, testTTL); renewed || got.addrs != nil || got.err != errFail {
		t.Errorf("hold after no such name = %v, %v, renewed %v; want the failure, nothing to hold", got.addrs, got.err, renewed)
	}
	// An answer from a lookup that began just before the failed one (the
	// stale check's) and arrived after it replaces the failure.
	a.put(addrA, nil, after.began.Add(-time.Millisecond), after.began.Add(time.Millisecond))
	hit(t, &a, after.began.Add(2*time.Millisecond), addrA, "an answer arriving after a failure")
}

// gateResolver answers every lookup with addrs once gate is closed.
type gateResolver struct {
	gate  chan struct{}
	addrs []netip.Addr
}

func (g *gateResolver) LookupNetIP(ctx context.Context, _, _ string) ([]netip.Addr, error) {
	select {
	case <-g.gate:
		return g.addrs, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// A lookup answering after a newer one (the stale check's) gives those
// waiting for it the cache's answer, not its own older one: around a
// failover that is the new writer rather than the old.
func TestLookupWaitersGetTheNewestAnswer(t *testing.T) {
	port := acceptingPort(t)
	oldWriter, newWriter := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")
	res := &gateResolver{gate: make(chan struct{}), addrs: []netip.Addr{oldWriter}}
	var d net.Dialer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if netip.MustParseAddrPort(addr).Addr() == oldWriter {
			return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
		}
		return d.DialContext(ctx, network, addr)
	}
	s, err := New(Config{Forwards: []Forward{{TargetHost: "db.sidecar.test", TargetPort: port}},
		Resolver: res, DialContext: dial, DNSCacheTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.hardCancel(nil)
	f := s.fwds[0]
	s.conns.Add(1) // as serveConn holds
	type result struct {
		d   dialed
		err error
	}
	done := make(chan result, 1)
	go func() { d, _, err := s.dial(context.Background(), f); done <- result{d, err} }()
	began := runningLookup(f)
	f.answers.put([]netip.Addr{newWriter}, nil, began.Add(time.Millisecond), time.Now()) // the stale check's
	close(res.gate)                                                                      // the lookup answers: the old writer
	r := <-done
	if r.err != nil {
		t.Fatalf("dial: %v; want the newer answer in the cache, %v", r.err, newWriter)
	}
	_ = r.d.conn.Close()
	if r.d.addr != newWriter {
		t.Errorf("dialed %v, want %v", r.d.addr, newWriter)
	}
}

// A connection waiting for a lookup that DNS drops takes the stale
// check's newer answer as soon as it arrives, not after the lookup's
// timeout (here a minute: the test's own timeout would end first).
func TestLookupWaitersTakeANewerAnswer(t *testing.T) {
	port := acceptingPort(t)
	res := &gateResolver{gate: make(chan struct{})} // never opened
	s, err := New(Config{Forwards: []Forward{{TargetHost: "db.sidecar.test", TargetPort: port}},
		Resolver: res, DNSCacheTTL: time.Hour, ConnectTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.hardCancel(nil)
	f := s.fwds[0]
	s.conns.Add(1) // as serveConn holds
	done := make(chan error, 1)
	go func() {
		d, _, err := s.dial(context.Background(), f)
		if err == nil {
			_ = d.conn.Close()
		}
		done <- err
	}()
	began := runningLookup(f)
	f.answers.put([]netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil, began.Add(time.Millisecond), time.Now()) // the stale check's
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("dial: %v; want the stale check's answer", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the connection still waits for the dropped lookup though the cache holds a newer answer")
	}
}

// acceptingPort is a loopback port that accepts connections (and closes
// them) until the test ends.
func acceptingPort(t *testing.T) int {
	t.Helper()
	ln := testkit.Serve(t, func(c net.Conn) { _ = c.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// runningLookup waits for f's lookup to start and is when it began.
func runningLookup(f *forward) time.Time {
	for {
		f.answers.mu.Lock()
		c := f.answers.running
		f.answers.mu.Unlock()
		if c != nil {
			return c.began
		}
		time.Sleep(time.Millisecond)
	}
}

// A connection whose every address failed may call forget after the
// running lookup has held the last answer (hold) but before lookupTarget's
// end hands it over: the held answer stays, and nothing is looked up
// before the hold ends.
func TestAnswersForgetAfterHoldBeforeEnd(t *testing.T) {
	a, c, exp := relooking(t)
	failed := exp.Add(10 * time.Millisecond)
	old, _, _ := a.hold(c, errFail, failed, testTTL) // the lookup failed: addrA held for the TTL
	// lookupTarget has not called end yet (it logs first): a connection
	// served addrA meanwhile fails on every address and asks forget.
	hit(t, a, failed, addrA, "the held answer")
	a.forget(exp.Add(-testTTL), failed.Add(time.Millisecond))
	a.end(c, old)
	// Still well inside the hold: DNS failed, it has nothing newer to say.
	hit(t, a, failed.Add(2*time.Millisecond), addrA, "the held answer after a connection to it failed")
}

// The same window on success: forget between put and end is paced by
// MinRelookup like any other, so the next connection does not look the
// name up again at once.
func TestAnswersForgetAfterPutBeforeEnd(t *testing.T) {
	a, c, exp := relooking(t)
	now := exp.Add(time.Millisecond)
	res := a.put(addrA, nil, c.began, now) // the lookup answered
	hit(t, a, now, addrA, "the answer just put")
	ok := a.forget(c.began, now.Add(time.Millisecond)) // a connection to it failed, 2 ms after the lookup began
	a.end(c, res)
	if ok {
		t.Errorf("forget 2 ms after a lookup began said a new lookup may run (MinRelookup is %v)", MinRelookup)
	}
	if _, c2, start := a.get(now.Add(2*time.Millisecond), testTTL, testLookup); c2 != nil || start {
		t.Errorf("a new lookup started %v after the last began; MinRelookup is %v", now.Add(2*time.Millisecond).Sub(c.began), MinRelookup)
	}
}

// relooking is a cache that answered addrA when it was empty and a lookup
// c begun when that answer expired, at exp.
func relooking(t *testing.T) (a *answers, c *lookupCall, exp time.Time) {
	t.Helper()
	a = &answers{}
	t0 := time.Now()
	answered(a, miss(t, a, t0, true, "an empty cache"), addrA, t0)
	exp = t0.Add(testTTL)
	return a, miss(t, a, exp, true, "an expired answer"), exp
}
