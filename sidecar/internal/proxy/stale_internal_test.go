package proxy

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// A stale check closes the connections to addresses its answer lacks,
// unless a connection's own lookup is newer than the check's: around a
// failover the check may hear the old writer after a new connection has
// reached the new one (seen as a flaky TestStaleCheckClosesDemotedUpstream).
func TestStaleConns(t *testing.T) {
	t0 := time.Now()
	oldWriter, newWriter := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	before := &conn{upstream: oldWriter, asked: t0.Add(-time.Second)}
	current := &conn{upstream: newWriter, asked: t0.Add(-time.Second)}
	newer := &conn{upstream: oldWriter, asked: t0.Add(time.Millisecond)}
	same := &conn{upstream: oldWriter, asked: t0} // joined the check's lookup
	f := &forward{conns: map[*conn]struct{}{before: {}, current: {}, newer: {}, same: {}}}

	got := f.staleConns(t0, []netip.Addr{newWriter})
	if len(got) != 1 || got[0] != before {
		t.Errorf("stale = %v, want only the connection whose lookup predates the check's", got)
	}
	if got := f.staleConns(t0.Add(time.Second), []netip.Addr{newWriter}); len(got) != 3 || slices.Contains(got, current) {
		t.Errorf("a later check: stale = %d connections, want the 3 to the old writer", len(got))
	}
}
