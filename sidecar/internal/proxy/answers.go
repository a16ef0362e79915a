package proxy

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"
)

// MinRelookup is how old a cached answer must be before a connection whose
// every address in it failed looks the target up again: so while a writer
// is down a target costs at most two DNS queries per MinRelookup on top of
// two per DNSCacheTTL (docs/operations.md quotes it; a test ties them).
const MinRelookup = 100 * time.Millisecond

// answers is a target's last DNS answer, reused for new connections for
// DNSCacheTTL: in a reconnect storm a lookup per connection would pass the
// VPC resolver's limit (1024 packets a second per network interface, then
// dropped), failing the app's own lookups as well as the sidecar's.
type answers struct {
	mu    sync.Mutex
	addrs []netip.Addr
	asked time.Time // when the lookup that gave addrs began
	held  time.Time // until then addrs serve whatever their age: a lookup failed
	// Until then addrs serve whatever their age: one caller is looking
	// the name up again (zero when none is).
	revalidating time.Time
}

// get is the answer if it was asked for less than ttl before now, or while
// a failed lookup holds it. Else the caller told to miss looks the name up
// again while the others keep the answer for as long as that lookup may
// take (lookupTimeout): a resolver that drops queries then delays the one
// connection that asks, not every connection until the lookup times out.
func (a *answers) get(now time.Time, ttl, lookupTimeout time.Duration) ([]netip.Addr, time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.addrs == nil:
		return nil, time.Time{}, false
	case now.Sub(a.asked) < ttl || now.Before(a.held) || now.Before(a.revalidating):
		return a.addrs, a.asked, true
	}
	a.revalidating = now.Add(lookupTimeout)
	return nil, time.Time{}, false
}

// abandon says the caller told to miss gave up its lookup (its client
// left): the next caller looks the name up instead.
func (a *answers) abandon() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.revalidating = time.Time{}
}

// hold keeps serving the last answer for ttl after a lookup failed, as
// resolvers serve stale answers (RFC 8767): a resolver dropping queries,
// the VPC resolver over its limit, must not fail connections to a
// database that has not moved. A lookup that answers ends the hold.
// started is whether this failure began it (the others continue it).
func (a *answers) hold(now time.Time, ttl time.Duration) (addrs []netip.Addr, asked time.Time, started, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.addrs == nil {
		return nil, time.Time{}, false, false
	}
	started = a.held.IsZero()
	a.held, a.revalidating = now.Add(ttl), time.Time{}
	return a.addrs, a.asked, started, true
}

// put keeps addrs unless a lookup that began later has answered already.
func (a *answers) put(addrs []netip.Addr, asked time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if asked.Before(a.asked) {
		return
	}
	a.addrs, a.asked, a.held, a.revalidating = addrs, asked, time.Time{}, time.Time{}
}

// forget drops the answer a lookup that began at asked gave, because
// every address in it failed, and reports whether a lookup now may find
// another. An answer younger than MinRelookup is kept: DNS gave it so
// recently that a new lookup would most likely repeat it, and a lookup for
// every failed connection, while a writer is down, is the flood the cache
// is there to prevent.
func (a *answers) forget(asked, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.asked.Equal(asked) {
		return true // a newer lookup has answered already
	}
	if now.Sub(asked) < MinRelookup {
		return false
	}
	a.addrs, a.held, a.revalidating = nil, time.Time{}, time.Time{}
	return true
}

// lookup is the target's addresses, when the lookup that gave them began,
// and whether they came from the cache: the cached answer while it is
// younger than DNSCacheTTL, else a new one. An IP literal is its own answer.
func (s *Server) lookup(ctx context.Context, f *forward) (addrs []netip.Addr, asked time.Time, cached bool, err error) {
	now := time.Now()
	if s.cfg.DNSCacheTTL > 0 && !isIP(f.TargetHost) {
		if addrs, asked, ok := f.answers.get(now, s.cfg.DNSCacheTTL, s.cfg.ConnectTimeout); ok {
			return addrs, asked, true, nil
		}
	}
	addrs, err = s.resolve(ctx, f.TargetHost)
	if err != nil {
		if ctx.Err() != nil {
			f.answers.abandon()
			return nil, now, false, err
		}
		if s.cfg.DNSCacheTTL <= 0 || errors.Is(err, errNotFound) {
			return nil, now, false, err // no such name is an answer, not a failure
		}
		old, oldAsked, started, ok := f.answers.hold(time.Now(), s.cfg.DNSCacheTTL)
		if !ok {
			return nil, now, false, err
		}
		f.stats.heldAnswers.Add(1)
		if started {
			s.log.Warn("DNS lookup failed; using the last answer", "target", f.target, "answer", old,
				"answer_age_ms", durationMS(now.Sub(oldAsked)), "held_ms", s.cfg.DNSCacheTTL.Milliseconds(), "err", err.Error())
		}
		return old, oldAsked, true, nil
	}
	f.answers.put(addrs, now)
	return addrs, now, false, nil
}
