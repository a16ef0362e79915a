package proxy

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

// An address whose dial failed is tried after the target's other
// addresses for a while, so one dead address in an answer (an IPv6 path a
// security group drops, an instance gone from an NLB's zone) costs one
// connection CONNECT_TIMEOUT, not every connection. The period doubles
// while the address keeps failing, and ends when a dial of it succeeds.
// When a period ends, one connection tries the address in its place
// again; the others keep it last until that dial has answered.
//
// An address that fails again only after a quiet spell longer than its
// last period (no connection tried it for that long after the period
// ended) starts again at DownFor, not at the doubled period: the spell
// says nothing of whether it stayed down, and the new failure may be a new
// outage (an instance restarting again) that ends soon. Kept last for up
// to 10 minutes, an address that serves again would leave its share of a
// reader endpoint's connections to the others that long; rebuilding the
// period costs one connection's dial per period, a handful in all. The
// accept loop's backoff restarts after a calm spell for the same reason.
const (
	DownFor    = 30 * time.Second // docs/operations.md quotes both
	DownForMax = 10 * time.Minute
)

// downAddrs remembers the addresses of a target whose dials failed.
type downAddrs struct {
	mu    sync.Mutex
	marks map[netip.Addr]downMark
}

type downMark struct {
	until  time.Time     // tried last until then
	period time.Duration // how long it was put last for
	probe  time.Time     // after until, one connection tries it; the others keep it last until then
}

// order returns addrs with those down at now moved to the end, each group
// in its order; addrs itself is not changed (the cache shares it). An
// address whose period has ended is this caller's to try again, in its
// place, for as long as probeFor (its dial's bound).
func (d *downAddrs) order(addrs []netip.Addr, now time.Time, probeFor time.Duration) []netip.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.marks) == 0 || len(addrs) < 2 {
		return addrs
	}
	down := map[netip.Addr]bool{}
	for _, a := range addrs {
		m, ok := d.marks[a]
		switch {
		case !ok:
		case now.Before(m.until) || now.Before(m.probe):
			down[a] = true
		default: // this caller probes it
			m.probe = now.Add(probeFor)
			d.marks[a] = m
		}
	}
	if len(down) == 0 {
		return addrs
	}
	up := slices.DeleteFunc(slices.Clone(addrs), func(a netip.Addr) bool { return down[a] })
	for _, a := range addrs {
		if down[a] {
			up = append(up, a)
		}
	}
	return up
}

// failed puts a last for DownFor, or twice its last period if it failed
// again within that period of its end, up to DownForMax; later, DownFor
// again (the quiet spell above). Marks long over are dropped, so
// addresses DNS no longer gives are not kept.
func (d *downAddrs) failed(a netip.Addr, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.marks == nil {
		d.marks = map[netip.Addr]downMark{}
	}
	for b, m := range d.marks {
		// Another's mark outlives its probe (its dial may yet fail);
		// a's own is over once its period has passed again.
		if now.After(m.until.Add(m.period)) && (b == a || now.After(m.probe)) {
			delete(d.marks, b)
		}
	}
	period := DownFor
	if m, ok := d.marks[a]; ok {
		period = min(2*m.period, DownForMax)
		if now.Before(m.until) {
			period = m.period // a connection that began before it was put last
		}
	}
	d.marks[a] = downMark{until: now.Add(period), period: period}
}

// answered forgets a's failures.
func (d *downAddrs) answered(a netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.marks, a)
}
