package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// MinRelookup is how long after a lookup of the target a connection whose
// every address failed may look it up again: so while a writer is down a
// target costs at most two DNS queries per MinRelookup on top of two per
// DNSCacheTTL (docs/operations.md quotes it; a test ties them).
const MinRelookup = 100 * time.Millisecond

// answers is a target's last DNS answer, reused for new connections for
// DNSCacheTTL: in a reconnect storm a lookup per connection would pass the
// VPC resolver's limit (1024 packets a second per network interface, then
// dropped), failing the app's own lookups as well as the sidecar's.
type answers struct {
	mu       sync.Mutex
	addrs    []netip.Addr // nil when there is no answer, or the answer is err
	err      error        // no such name, or a failed lookup with no addresses to hold
	asked    time.Time    // when the lookup that gave the answer began: orders answers
	answered time.Time    // when it ended: the TTL counts from then
	held     time.Time    // until then addrs serve whatever their age: a lookup failed
	failed   bool         // every address of addrs failed a connection: look the name up first
	relooked time.Time    // when the last lookup began (MinRelookup)
	failure  bool         // err is a failed lookup's, not an answer: any answer replaces it
	running  *lookupCall  // the lookup under way; nil if none
}

// lookupCall is one lookup of the target, shared by the connections that
// wait for it. It runs apart from them, so a client that leaves (an app
// whose connect timeout is shorter than the lookup) does not end it: its
// answer or failure still reaches the cache.
type lookupCall struct {
	began time.Time
	// until then, unless the lookup ends first, connections that can keep
	// using the last answer do. The lookup ends itself within
	// CONNECT_TIMEOUT; this is the backstop.
	until time.Time
	done  chan struct{} // closed when res is set
	res   answer
	ended bool // res is set: by end, or by put with a newer answer
}

// answer is what the cache gives a connection: addresses, or the error a
// lookup begun at asked ended with (no such name, or a failure with no
// addresses to fall back on). cached is whether it may be out of date:
// when its every address fails, the connection asks forget.
type answer struct {
	addrs  []netip.Addr
	asked  time.Time
	err    error
	cached bool
}

// get is the answer if it arrived less than ttl before now, or while a
// failed lookup holds it. Else the caller waits for the lookup under way,
// or starts one (start). While a lookup runs, connections keep using the
// last addresses, so a resolver that drops queries delays only those that
// have nothing else: not addresses that just failed (they wait for the
// lookup rather than dial them again), nor an error.
func (a *answers) get(now time.Time, ttl, lookupTimeout time.Duration) (hit answer, wait *lookupCall, start bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fresh := now.Sub(a.answered) < ttl
	usable := a.addrs != nil && !a.failed
	running := a.running != nil && now.Before(a.running.until)
	switch {
	case a.err != nil && fresh:
		return answer{asked: a.asked, err: a.err}, nil, false
	case usable && (fresh || now.Before(a.held) || running):
		return answer{addrs: a.addrs, asked: a.asked, cached: true}, nil, false
	case running:
		return answer{}, a.running, false
	}
	a.running = &lookupCall{began: now, until: now.Add(2 * lookupTimeout), done: make(chan struct{})}
	a.relooked = now
	return answer{}, a.running, true
}

// end gives the lookup c's result to those waiting for it.
func (a *answers) end(c *lookupCall, res answer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.running == c {
		a.running = nil
	}
	c.finish(res)
}

// finish gives res to those waiting for c, unless they have an answer
// already. The answers' lock is held.
func (c *lookupCall) finish(res answer) {
	if !c.ended {
		c.res, c.ended = res, true
		close(c.done)
	}
}

// current is the answer the cache holds. The lock is held.
func (a *answers) current() answer {
	return answer{addrs: a.addrs, asked: a.asked, err: a.err, cached: a.err == nil}
}

// put keeps the answer (addresses, or no such name as err) of a lookup
// that began at asked and ended at now, unless one that began later has
// answered already, and returns the answer the cache holds then. It ends
// a hold. A failure, or addresses that failed, any answer replaces. An
// answer from a lookup begun after the running one (the stale check's) is
// given to those waiting for it: the running lookup may take until it
// times out, and its own answer would be the older.
func (a *answers) put(addrs []netip.Addr, err error, asked, now time.Time) answer {
	a.mu.Lock()
	defer a.mu.Unlock()
	if asked.After(a.relooked) {
		a.relooked = asked // the stale check's lookups count too
	}
	if asked.Before(a.asked) && !a.failure && !a.failed {
		return a.current()
	}
	a.addrs, a.err, a.asked, a.answered, a.held, a.failed, a.failure = addrs, err, asked, now, time.Time{}, false, false
	ans := answer{addrs: addrs, asked: asked, err: err}
	if c := a.running; c != nil && asked.After(c.began) {
		a.running = nil
		c.finish(ans)
	}
	return ans
}

// hold keeps serving the last answer for ttl after the lookup c failed
// with err, as resolvers serve stale answers (RFC 8767): a resolver
// dropping queries, the VPC resolver over its limit, must not fail
// connections to a database that has not moved. A lookup that answers
// ends the hold. If one that began after c has answered, the answer is
// that one. With no addresses to hold, err is the answer for ttl, so a
// failing resolver is not asked again for every connection. renewed is
// whether a new hold period began (the last one, if any, had ended), and
// started whether it is the first since a lookup answered: an outage.
func (a *answers) hold(c *lookupCall, err error, now time.Time, ttl time.Duration) (ans answer, renewed, started bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.asked.After(c.began):
		return a.current(), false, false
	case a.addrs == nil:
		a.err, a.asked, a.answered, a.held, a.failed, a.failure = err, c.began, now, time.Time{}, false, true
		return answer{asked: c.began, err: err}, false, false
	}
	renewed, started = !now.Before(a.held), a.held.IsZero()
	a.held, a.failed = now.Add(ttl), false
	return answer{addrs: a.addrs, asked: a.asked, cached: true}, renewed, started
}

// dropsFamily reports whether addrs lack a family (IPv4 or IPv6) of the
// addresses the cache holds.
func (a *answers) dropsFamily(addrs []netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, v4 := range []bool{true, false} {
		is := func(x netip.Addr) bool { return x.Is4() == v4 }
		if slices.ContainsFunc(a.addrs, is) && !slices.ContainsFunc(addrs, is) {
			return true
		}
	}
	return false
}

// forget marks the answer a lookup that began at asked gave as failed,
// because every address in it failed, and reports whether a lookup now
// may find another. Within MinRelookup of the last lookup it does not: DNS
// answered so recently that a new lookup would most likely repeat it, and
// a lookup for every failed connection, while a writer is down, is the
// flood the cache is there to prevent. Nor while a failed lookup holds
// the answer: DNS has nothing newer to say until the hold ends. The answer
// is kept until another replaces it: if DNS fails too, it is still the
// best there is.
func (a *answers) forget(asked, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.asked.Equal(asked) {
		return true // a newer lookup has answered already
	}
	if now.Before(a.held) {
		return false
	}
	// A lookup that has put or held its answer is still running until it
	// has handed it to its waiters: its answer is the one that failed.
	if a.running != nil && now.Before(a.running.until) && a.running.began.After(a.asked) {
		a.failed = true // wait for the lookup under way: it costs no query
		return true
	}
	if now.Sub(a.relooked) < MinRelookup {
		return false
	}
	a.failed = true
	return true
}

// lookup is the target's addresses, when the lookup that gave them began,
// and whether they came from the cache: the cached answer while it is
// younger than DNSCacheTTL, else a new one. An IP literal is its own answer.
func (s *Server) lookup(ctx context.Context, f *forward) (addrs []netip.Addr, asked time.Time, cached bool, err error) {
	if s.cfg.DNSCacheTTL <= 0 || isIP(f.TargetHost) {
		asked = time.Now()
		addrs, err = s.resolve(ctx, f.TargetHost, false)
		return addrs, asked, false, err
	}
	hit, c, start := f.answers.get(time.Now(), s.cfg.DNSCacheTTL, s.cfg.ConnectTimeout)
	if c == nil {
		return hit.addrs, hit.asked, hit.cached, hit.err
	}
	if start {
		s.lookups.Add(1) // the caller holds a conns count: waitConns has not reached lookups.Wait
		go s.lookupTarget(f, c)
	}
	select {
	case <-c.done:
		return c.res.addrs, c.res.asked, c.res.cached, c.res.err
	case <-ctx.Done():
		return nil, c.began, false, fmt.Errorf("resolve %s: %w", f.TargetHost, context.Cause(ctx))
	}
}

// lookupTarget runs the lookup c and keeps its result in the cache.
func (s *Server) lookupTarget(f *forward, c *lookupCall) {
	defer s.lookups.Done()
	ctx, cancel := context.WithTimeout(s.lookupCtx, s.cfg.ConnectTimeout) // both asks below: one lookup's bound
	defer cancel()
	addrs, err := s.resolve(ctx, f.TargetHost, false)
	if err == nil && f.answers.dropsFamily(addrs) {
		// Go's resolver answers with one family when the other's lookup
		// failed (a throttled resolver dropping the A query of a
		// dual-stack name): ask each apart, so a failure holds the last
		// answer, whose dropped addresses may be the ones that serve.
		addrs, err = s.resolve(ctx, f.TargetHost, true)
	}
	now := time.Now()
	switch {
	case err == nil:
		f.answers.end(c, f.answers.put(addrs, nil, c.began, now))
		return
	case s.lookupCtx.Err() != nil:
		f.answers.end(c, answer{asked: c.began, err: err}) // stopping
		return
	case errors.Is(err, errNotFound):
		f.answers.end(c, f.answers.put(nil, err, c.began, now)) // an answer, not a failure: for the TTL
		return
	}
	old, renewed, started := f.answers.hold(c, err, now, s.cfg.DNSCacheTTL)
	if renewed {
		f.stats.heldAnswers.Add(1)
	}
	if started {
		s.log.Warn("DNS lookup failed; using the last answer", "target", f.target, "answer", old.addrs,
			"answer_age_ms", durationMS(c.began.Sub(old.asked)), "held_ms", s.cfg.DNSCacheTTL.Milliseconds(), "err", err.Error())
	}
	f.answers.end(c, old)
}
