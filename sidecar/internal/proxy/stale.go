package proxy

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// staleLoop re-resolves the target every StaleCheckInterval and cancels the
// relays whose upstream address is no longer in the answer: after a
// failover the demoted writer keeps old connections open (read-only) until
// something closes them. A failed lookup or an empty answer closes nothing.
func (s *Server) staleLoop(ctx context.Context, f *forward, loops *sync.WaitGroup) {
	defer loops.Done()
	t := time.NewTicker(s.cfg.StaleCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		asked := time.Now()
		addrs, err := s.resolve(ctx, f.TargetHost, true)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("stale check: lookup failed; closing nothing", "target", f.target, "err", err)
			}
			continue
		}
		f.answers.put(addrs, nil, asked, time.Now()) // fresher for new connections too
		stale := f.staleConns(asked, addrs)
		if len(stale) > 0 {
			s.log.Info("stale check: closing connections to addresses no longer in DNS", "target", f.target, "connections", len(stale), "answer", addrs)
		}
		for _, c := range stale {
			c.cancel(errStale)
		}
	}
}

// staleConns are the connections to addresses not in addrs, an answer to
// a lookup that began at asked. A connection whose own lookup began later
// may have seen a newer answer, so it waits for the next check.
func (f *forward) staleConns(asked time.Time, addrs []netip.Addr) []*conn {
	var stale []*conn
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		if !slices.Contains(addrs, c.upstream) && c.asked.Before(asked) {
			stale = append(stale, c)
		}
	}
	return stale
}
