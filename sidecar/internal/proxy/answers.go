package proxy

import (
	"context"
	"errors"
	"net/netip"
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
	err      error        // no such name, or a failed lookup with no addresses to hold: cached as long
	asked    time.Time    // when the lookup that gave the answer began
	held     time.Time    // until then addrs serve whatever their age: a lookup failed
	failed   bool         // every address of addrs failed a connection: look the name up first
	relooked time.Time    // when the last lookup for a connection began (MinRelookup)
	owner    *ticket      // the lookup the others keep the last answer for; nil if none
}

// ticket is a connection's lookup of the target, after a miss.
type ticket struct {
	began time.Time
	// until then, unless the lookup ends first, the others keep using the
	// last answer (zero: another lookup had that role). Twice the lookup's
	// timeout, as the lookup ends the role itself on every path.
	until time.Time
}

// answer is what the cache gives a connection: addresses, or the error a
// lookup begun at asked ended with (no such name, or a failure with no
// addresses to fall back on).
type answer struct {
	addrs []netip.Addr
	asked time.Time
	err   error
}

// get is the answer if it was asked for less than ttl before now, or while
// a failed lookup holds it. Else it is a miss: the caller looks the name
// up with the ticket, and when the last answer has addresses the others
// keep using it while that lookup runs, so a resolver that drops queries
// delays the one connection that asks, not every one until it times out.
// An answer whose addresses all failed is never used so: a connection
// waits for the lookup rather than dial what just failed.
func (a *answers) get(now time.Time, ttl, lookupTimeout time.Duration) (answer, *ticket) {
	a.mu.Lock()
	defer a.mu.Unlock()
	usable := a.addrs != nil && !a.failed
	switch {
	case a.err != nil && now.Sub(a.asked) < ttl:
		return answer{asked: a.asked, err: a.err}, nil
	case usable && (now.Sub(a.asked) < ttl || now.Before(a.held)),
		usable && a.owner != nil && now.Before(a.owner.until):
		return answer{addrs: a.addrs, asked: a.asked}, nil
	}
	t := &ticket{began: now}
	a.relooked = now
	if a.owner == nil || !now.Before(a.owner.until) {
		t.until = now.Add(2 * lookupTimeout)
		a.owner = t
	}
	return answer{}, t
}

// end says the lookup t is over, however it ended: if the others were
// keeping the last answer for it, the next miss looks the name up.
func (a *answers) end(t *ticket) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.owner == t {
		a.owner = nil
	}
}

// put keeps a lookup's answer, addresses or no such name (err), unless a
// lookup that began later has answered already. It ends a hold.
func (a *answers) put(addrs []netip.Addr, err error, began time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if began.Before(a.asked) {
		return
	}
	a.addrs, a.err, a.asked, a.held, a.failed = addrs, err, began, time.Time{}, false
}

// hold keeps serving the last answer for ttl after the lookup t failed
// with err, as resolvers serve stale answers (RFC 8767): a resolver
// dropping queries, the VPC resolver over its limit, must not fail
// connections to a database that has not moved. A lookup that answers
// ends the hold. If a lookup that began after t has answered, the answer
// is that one, not held. With no addresses to hold, err is the answer for
// ttl, so a failing resolver is not asked again for every connection.
// started is whether this failure began the hold.
func (a *answers) hold(t *ticket, err error, now time.Time, ttl time.Duration) (ans answer, held, started bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.asked.After(t.began):
		return answer{addrs: a.addrs, asked: a.asked, err: a.err}, false, false
	case a.addrs == nil:
		a.err, a.asked, a.held, a.failed = err, t.began, time.Time{}, false
		return answer{asked: t.began, err: err}, false, false
	}
	started = a.held.IsZero()
	a.held, a.failed = now.Add(ttl), false
	return answer{addrs: a.addrs, asked: a.asked}, true, started
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
	if now.Sub(a.relooked) < MinRelookup || now.Before(a.held) {
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
	hit, t := f.answers.get(time.Now(), s.cfg.DNSCacheTTL, s.cfg.ConnectTimeout)
	if t == nil {
		return hit.addrs, hit.asked, hit.err == nil, hit.err
	}
	defer f.answers.end(t)
	addrs, err = s.resolve(ctx, f.TargetHost, false)
	switch {
	case err == nil:
		f.answers.put(addrs, nil, t.began)
		return addrs, t.began, false, nil
	case ctx.Err() != nil:
		return nil, t.began, false, err // given up: the next miss looks the name up
	case errors.Is(err, errNotFound):
		f.answers.put(nil, err, t.began) // an answer, not a failure: it fails connections for the TTL
		return nil, t.began, false, err
	}
	old, held, started := f.answers.hold(t, err, time.Now(), s.cfg.DNSCacheTTL)
	if held && (started || !t.until.IsZero()) { // others sharing this lookup count it once
		f.stats.heldAnswers.Add(1)
	}
	if started {
		s.log.Warn("DNS lookup failed; using the last answer", "target", f.target, "answer", old.addrs,
			"answer_age_ms", durationMS(t.began.Sub(old.asked)), "held_ms", s.cfg.DNSCacheTTL.Milliseconds(), "err", err.Error())
	}
	return old.addrs, old.asked, old.err == nil, old.err
}
