package proxy

import (
	"context"
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
}

// get is the answer if it was asked for less than ttl before now.
func (a *answers) get(now time.Time, ttl time.Duration) ([]netip.Addr, time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.addrs == nil || now.Sub(a.asked) >= ttl {
		return nil, time.Time{}, false
	}
	return a.addrs, a.asked, true
}

// put keeps addrs unless a lookup that began later has answered already.
func (a *answers) put(addrs []netip.Addr, asked time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if asked.Before(a.asked) {
		return
	}
	a.addrs, a.asked = addrs, asked
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
	a.addrs = nil
	return true
}

// lookup is the target's addresses, when the lookup that gave them began,
// and whether they came from the cache: the cached answer while it is
// younger than DNSCacheTTL, else a new one. An IP literal is its own answer.
func (s *Server) lookup(ctx context.Context, f *forward) (addrs []netip.Addr, asked time.Time, cached bool, err error) {
	now := time.Now()
	if s.cfg.DNSCacheTTL > 0 && !isIP(f.TargetHost) {
		if addrs, asked, ok := f.answers.get(now, s.cfg.DNSCacheTTL); ok {
			return addrs, asked, true, nil
		}
	}
	addrs, err = s.resolve(ctx, f.TargetHost)
	if err != nil {
		return nil, now, false, err
	}
	f.answers.put(addrs, now)
	return addrs, now, false, nil
}
