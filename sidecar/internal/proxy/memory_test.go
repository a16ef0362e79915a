package proxy_test

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/example/sidecar/sidecar/internal/proxy"
)

// releases counts calls of the injected FreeOSMemory.
type releases struct {
	mu sync.Mutex
	at []time.Time
}

func (r *releases) free() {
	r.mu.Lock()
	r.at = append(r.at, time.Now())
	r.mu.Unlock()
}

func (r *releases) times() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.at...)
}

// openHeld opens n connections through the proxy and waits until every
// one holds a slot.
func openHeld(t *testing.T, r *rig, n int) []*net.TCPConn {
	t.Helper()
	cs := make([]*net.TCPConn, n)
	for i := range cs {
		cs[i] = dial(t, r.addrs[0])
	}
	return cs
}

func activeOf(r *rig) int64 { return forwardSnap(r, 0).Active }

// After a burst drains to a quarter of its peak, memory is released once;
// a second burst within ReleaseMemoryEvery is released only after it.
func TestMemoryReleasedAfterBurst(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", hold)
	var rel releases
	const every = 500 * time.Millisecond
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, BurstConnections: 20,
		ReleaseMemoryEvery: every, FreeOSMemory: rel.free})

	for burst := 1; burst <= 2; burst++ {
		cs := openHeld(t, r, 40)
		waitFor(t, "40 connections active", func() bool { return activeOf(r) == 40 })
		if n := len(rel.times()); n != burst-1 {
			t.Fatalf("burst %d: %d releases while the burst is up, want %d", burst, n, burst-1)
		}
		for _, c := range cs {
			_ = c.Close()
		}
		waitFor(t, "burst drained", func() bool { return activeOf(r) == 0 })
		waitFor(t, "memory released", func() bool { return len(rel.times()) == burst })
	}
	at := rel.times()
	if gap := at[1].Sub(at[0]); gap < every {
		t.Errorf("second release %v after the first, want at least ReleaseMemoryEvery (%v)", gap, every)
	}
	time.Sleep(2 * every)
	if n := len(rel.times()); n != 2 {
		t.Errorf("%d releases for 2 bursts", n)
	}
}

// A steady load (connections replaced as they close, the count never
// falling far below its level) never triggers a release, and neither does
// a peak below BurstConnections.
func TestMemoryNotReleasedUnderSteadyLoad(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", hold)
	var rel releases
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, BurstConnections: 20,
		ReleaseMemoryEvery: 10 * time.Millisecond, FreeOSMemory: rel.free})

	cs := openHeld(t, r, 40)
	waitFor(t, "40 connections active", func() bool { return activeOf(r) == 40 })
	for round := range 20 {
		for i := range 5 {
			j := (round*5 + i) % len(cs)
			_ = cs[j].Close()
			cs[j] = dial(t, r.addrs[0])
		}
		waitFor(t, "load back at 40", func() bool { return activeOf(r) == 40 })
	}
	for _, c := range cs[:20] { // down to 20: half the peak, not a quarter
		_ = c.Close()
	}
	waitFor(t, "20 connections active", func() bool { return activeOf(r) == 20 })
	time.Sleep(100 * time.Millisecond)
	if n := len(rel.times()); n != 0 {
		t.Errorf("%d releases under a steady load", n)
	}
	for _, c := range cs[20:] {
		_ = c.Close()
	}
	waitFor(t, "drained", func() bool { return activeOf(r) == 0 })
	waitFor(t, "released once drained", func() bool { return len(rel.times()) == 1 })

	// A small peak is no burst.
	small := openHeld(t, r, 10)
	waitFor(t, "10 active", func() bool { return activeOf(r) == 10 })
	for _, c := range small {
		_ = c.Close()
	}
	waitFor(t, "drained", func() bool { return activeOf(r) == 0 })
	time.Sleep(100 * time.Millisecond)
	if n := len(rel.times()); n != 1 {
		t.Errorf("%d releases, want 1: a peak of 10 is below BurstConnections", n)
	}
}

// Rejections at the connection limit go through the same log limiter as
// dial failures: each one is logged in full or counted in a summary's
// not_logged, including those still pending at shutdown.
func TestRejectionsLoggedOrSummarized(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", echo)
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, MaxConnections: 1})
	held := dial(t, r.addrs[0])
	if err := exchange(held, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	const n = 15
	for range n {
		expectClosed(t, dial(t, r.addrs[0]), "connection beyond the limit")
	}
	_ = held.Close()
	waitFor(t, "slot freed", func() bool { return activeOf(r) == 0 })
	r.shutdown(t)
	lines := r.logs.lines("connection limit reached")
	if got := accounted(lines); got != n {
		t.Errorf("%d rejections accounted in the logs, want %d:\n%v", got, n, lines)
	}
	for _, l := range lines {
		if l["level"] != "WARN" || l["max_connections"] != float64(1) || l["client"] == nil {
			t.Errorf("line %v, want WARN with max_connections and client", l)
		}
	}
}
