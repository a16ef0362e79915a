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

// The cached answer is the newest lookup's, whatever order lookups end in,
// and it serves only while younger than the TTL.
func TestAnswers(t *testing.T) {
	t0 := time.Now()
	older, newer := []netip.Addr{netip.MustParseAddr("10.0.0.1")}, []netip.Addr{netip.MustParseAddr("10.0.0.2")}
	var a answers
	if _, _, ok := a.get(t0, time.Hour); ok {
		t.Fatal("an empty cache answered")
	}
	a.put(newer, t0)
	a.put(older, t0.Add(-time.Millisecond)) // a slower lookup that began first
	got, asked, ok := a.get(t0.Add(999*time.Millisecond), time.Second)
	if !ok || !slices.Equal(got, newer) || !asked.Equal(t0) {
		t.Errorf("get = %v asked %v, %v; want the newer lookup's answer", got, asked, ok)
	}
	if _, _, ok := a.get(t0.Add(time.Second), time.Second); ok {
		t.Error("an answer as old as the TTL still served")
	}
	if !a.forget(t0.Add(-time.Millisecond), t0.Add(time.Second)) { // the older answer failed: not the cached one
		t.Error("forget of a replaced answer said a new lookup would not help")
	}
	if _, _, ok := a.get(t0, time.Second); !ok {
		t.Error("forgetting an older answer dropped the newer one")
	}
	if a.forget(t0, t0.Add(MinRelookup-time.Millisecond)) {
		t.Error("forget asked for a new lookup of an answer younger than MinRelookup")
	}
	if _, _, ok := a.get(t0, time.Second); !ok {
		t.Error("an answer younger than MinRelookup was dropped")
	}
	if !a.forget(t0, t0.Add(MinRelookup)) {
		t.Error("forget of an answer MinRelookup old said a new lookup would not help")
	}
	if _, _, ok := a.get(t0, time.Second); ok {
		t.Error("a forgotten answer still served")
	}
}
