package proxy

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// DefaultStaleAfter is how long an address must have been missing from
// the stale check's answers, in two checks at least, before connections to
// it are closed: during a failover Aurora's DNS (TTL 5 s) can answer with
// the old writer once more after naming the new one, and one such answer
// must not close every connection to the new writer. docs/operations.md
// quotes it.
const DefaultStaleAfter = 5 * time.Second

// staleLoop re-resolves the target every StaleCheckInterval and cancels the
// relays whose upstream address has left the answer: after a failover the
// demoted writer keeps old connections open (read-only) until something
// closes them. A failed lookup or an empty answer closes nothing.
func (s *Server) staleLoop(ctx context.Context, f *forward, loops *sync.WaitGroup) {
	defer loops.Done()
	t := time.NewTicker(s.cfg.StaleCheckInterval)
	defer t.Stop()
	var failing time.Time                   // when lookups began to fail; zero while they answer
	missing := map[netip.Addr]missingAddr{} // addresses of connections, gone from the answers
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		asked := time.Now()
		addrs, err := s.resolve(ctx, f.TargetHost, true)
		if err != nil {
			if ctx.Err() == nil && failing.IsZero() {
				failing = asked
				s.log.Warn("stale check: lookup failed; closing nothing until it answers", "target", f.target, "err", err)
			}
			continue
		}
		if !failing.IsZero() {
			s.log.Info("stale check: lookup answers again", "target", f.target, "failed_for_ms", durationMS(asked.Sub(failing)))
			failing = time.Time{}
		}
		f.answers.put(addrs, nil, asked, time.Now()) // fresher for new connections too
		stale := f.staleConns(asked, addrs, missing, s.cfg.StaleAfter)
		if len(stale) > 0 {
			s.log.Info("stale check: closing connections to addresses no longer in DNS", "target", f.target, "connections", len(stale), "answer", addrs)
		}
		for _, c := range stale {
			c.cancel(errStale)
		}
	}
}

// missingAddr is an address the stale check's answers have left out since
// the check asked at since, checks times in a row.
type missingAddr struct {
	since  time.Time
	checks int
}

// staleConns are the connections to addresses missing from addrs, an
// answer to a lookup that began at asked, and from every answer for after
// before it, in two checks at least (missing keeps count). A connection
// whose own lookup began later may have seen a newer answer, so it waits
// for the next check. Those returned are no longer tracked: they are
// closing, and the next check may come before they end (two ticks in a
// row on a loaded machine), which would close and log them again.
func (f *forward) staleConns(asked time.Time, addrs []netip.Addr, missing map[netip.Addr]missingAddr, after time.Duration) []*conn {
	var stale []*conn
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[netip.Addr]bool{}
	for c := range f.conns {
		if slices.Contains(addrs, c.upstream) {
			continue
		}
		m, ok := missing[c.upstream]
		if !seen[c.upstream] {
			seen[c.upstream] = true
			if !ok {
				m.since = asked
			}
			m.checks++
			missing[c.upstream] = m
		}
		if m.checks >= 2 && asked.Sub(m.since) >= after && c.asked.Before(asked) {
			stale = append(stale, c)
			delete(f.conns, c)
		}
	}
	for a := range missing {
		if !seen[a] {
			delete(missing, a) // back in the answer, or no connections left to it
		}
	}
	return stale
}
