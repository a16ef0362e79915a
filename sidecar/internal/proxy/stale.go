package proxy

import (
	"context"
	"net/netip"
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
		addrs, err := s.resolve(ctx, f.TargetHost)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("stale check: lookup failed; closing nothing", "target", f.target, "err", err)
			}
			continue
		}
		current := make(map[netip.Addr]bool, len(addrs))
		for _, a := range addrs {
			current[a] = true
		}
		var stale []*conn
		f.mu.Lock()
		for c := range f.conns {
			if !current[c.upstream] {
				stale = append(stale, c)
			}
		}
		f.mu.Unlock()
		if len(stale) > 0 {
			s.log.Info("stale check: closing connections to addresses no longer in DNS", "target", f.target, "connections", len(stale), "answer", addrs)
		}
		for _, c := range stale {
			c.cancel(errStale)
		}
	}
}
