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
	if _, _, ok := a.get(t0, time.Hour, time.Second); ok {
		t.Fatal("an empty cache answered")
	}
	a.put(newer, t0)
	a.put(older, t0.Add(-time.Millisecond)) // a slower lookup that began first
	got, asked, ok := a.get(t0.Add(999*time.Millisecond), time.Second, time.Second)
	if !ok || !slices.Equal(got, newer) || !asked.Equal(t0) {
		t.Errorf("get = %v asked %v, %v; want the newer lookup's answer", got, asked, ok)
	}
	if _, _, ok := a.get(t0.Add(time.Second), time.Second, time.Second); ok {
		t.Error("an answer as old as the TTL still served")
	}
	if !a.forget(t0.Add(-time.Millisecond), t0.Add(time.Second)) { // the older answer failed: not the cached one
		t.Error("forget of a replaced answer said a new lookup would not help")
	}
	if _, _, ok := a.get(t0, time.Second, time.Second); !ok {
		t.Error("forgetting an older answer dropped the newer one")
	}
	if a.forget(t0, t0.Add(MinRelookup-time.Millisecond)) {
		t.Error("forget asked for a new lookup of an answer younger than MinRelookup")
	}
	if _, _, ok := a.get(t0, time.Second, time.Second); !ok {
		t.Error("an answer younger than MinRelookup was dropped")
	}
	if !a.forget(t0, t0.Add(MinRelookup)) {
		t.Error("forget of an answer MinRelookup old said a new lookup would not help")
	}
	if _, _, ok := a.get(t0, time.Second, time.Second); ok {
		t.Error("a forgotten answer still served")
	}
}

// Past the TTL the first caller misses and looks the name up again; the
// others keep the answer while that lookup may take, unless it is
// abandoned or answers.
func TestAnswersRevalidate(t *testing.T) {
	t0 := time.Now()
	const ttl, lookup = time.Second, 5 * time.Second
	old, newer := []netip.Addr{netip.MustParseAddr("10.0.0.1")}, []netip.Addr{netip.MustParseAddr("10.0.0.2")}
	var a answers
	a.put(old, t0)
	exp := t0.Add(ttl)
	if _, _, ok := a.get(exp, ttl, lookup); ok {
		t.Fatal("an expired answer served the first caller: no one would look the name up")
	}
	if got, _, ok := a.get(exp.Add(lookup-time.Millisecond), ttl, lookup); !ok || !slices.Equal(got, old) {
		t.Errorf("get while one caller looks up = %v, %v; want the last answer", got, ok)
	}
	if _, _, ok := a.get(exp.Add(lookup), ttl, lookup); ok {
		t.Error("the last answer served past the time the lookup may take")
	}
	a.abandon()
	late := exp.Add(lookup + time.Millisecond)
	if _, _, ok := a.get(late, ttl, lookup); ok {
		t.Error("the last answer served after the lookup was abandoned")
	}
	a.put(newer, late)
	if got, _, ok := a.get(late.Add(ttl), ttl, lookup); ok {
		t.Errorf("an answer as old as the TTL served %v: the lookup's answer did not end the wait for it", got)
	}
}

// After a failed lookup the last answer serves for the TTL; when that
// ends, one caller looks up again while the others keep the answer; an
// answer ends the hold.
func TestAnswersHold(t *testing.T) {
	t0 := time.Now()
	const ttl, lookup = time.Second, 5 * time.Second
	old, newer := []netip.Addr{netip.MustParseAddr("10.0.0.1")}, []netip.Addr{netip.MustParseAddr("10.0.0.2")}
	var a answers
	if _, _, _, ok := a.hold(t0, ttl); ok {
		t.Fatal("an empty cache held an answer")
	}
	a.put(old, t0)
	if _, _, ok := a.get(t0.Add(2*time.Second), ttl, lookup); ok {
		t.Fatal("an expired answer served before any lookup failed")
	}
	failed := t0.Add(2 * time.Second)
	got, asked, started, ok := a.hold(failed, ttl)
	if !ok || !started || !slices.Equal(got, old) || !asked.Equal(t0) {
		t.Fatalf("hold = %v asked %v, started %v, %v; want the last answer, asked at t0, started", got, asked, started, ok)
	}
	if _, _, started, _ := a.hold(failed.Add(time.Millisecond), ttl); started {
		t.Error("a second failure during the hold said it started one")
	}
	if got, _, ok := a.get(failed.Add(ttl), ttl, lookup); !ok || !slices.Equal(got, old) {
		t.Errorf("get during the hold = %v, %v; want the held answer", got, ok)
	}
	end := failed.Add(time.Millisecond + ttl) // the second failure renewed the hold
	if _, _, ok := a.get(end, ttl, lookup); ok {
		t.Error("get as the hold ended served: no caller would look up again")
	}
	if got, _, ok := a.get(end.Add(time.Millisecond), ttl, lookup); !ok || !slices.Equal(got, old) {
		t.Errorf("get while one caller looks up again = %v, %v; want the held answer", got, ok)
	}
	if _, _, ok := a.get(end.Add(lookup), ttl, lookup); ok {
		t.Error("the held answer served past the time the new lookup may take")
	}
	a.put(newer, end)
	if got, _, ok := a.get(end.Add(ttl), ttl, lookup); ok {
		t.Errorf("an answer ended its TTL but served %v: the hold survived a lookup that answered", got)
	}
	if _, _, started, _ := a.hold(end.Add(ttl), ttl); !started {
		t.Error("a failure after a lookup answered did not start a new hold")
	}
	if !a.forget(end, end.Add(ttl)) {
		t.Fatal("forget refused an answer older than MinRelookup")
	}
	if _, _, _, ok := a.hold(end.Add(ttl), ttl); ok {
		t.Error("a forgotten answer was held")
	}
}
