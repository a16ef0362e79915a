package proxy

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// A stale check closes the connections to an address missing from its
// answer and from every answer for the StaleAfter before it (two checks
// at least), unless a connection's own lookup is newer than the check's:
// around a failover the check may hear the old writer after a new
// connection has reached the new one (seen as a flaky
// TestStaleCheckClosesDemotedUpstream).
func TestStaleConns(t *testing.T) {
	const after = 5 * time.Second
	t0 := time.Now()
	oldWriter, newWriter := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	before := &conn{upstream: oldWriter, asked: t0.Add(-time.Second)}
	current := &conn{upstream: newWriter, asked: t0.Add(-time.Second)}
	newer := &conn{upstream: oldWriter, asked: t0.Add(after + time.Millisecond)}
	same := &conn{upstream: oldWriter, asked: t0.Add(after)} // joined the check's lookup
	f := &forward{conns: map[*conn]struct{}{before: {}, current: {}, newer: {}, same: {}}}
	missing := map[netip.Addr]missingAddr{}

	if got := f.staleConns(t0, []netip.Addr{newWriter}, missing, after); len(got) != 0 {
		t.Errorf("the first check without the old writer closed %d connections; want none before %v", len(got), after)
	}
	if got := f.staleConns(t0.Add(after-time.Millisecond), []netip.Addr{newWriter}, missing, after); len(got) != 0 {
		t.Errorf("a second check within %v closed %d connections; want none", after, len(got))
	}
	got := f.staleConns(t0.Add(after), []netip.Addr{newWriter}, missing, after)
	if len(got) != 1 || got[0] != before {
		t.Errorf("stale = %v, want only the connection whose lookup predates the check's", got)
	}
	if got := f.staleConns(t0.Add(after+time.Second), []netip.Addr{newWriter}, missing, after); len(got) != 2 || slices.Contains(got, current) || slices.Contains(got, before) {
		t.Errorf("a later check: stale = %d connections, want the 2 others to the old writer (the first is closing)", len(got))
	}
}

// One answer that lacks an address (a lagging DNS answer naming the old
// writer during a failover) closes nothing: the next answer names it
// again, which starts the count afresh.
func TestStaleConnsOneLaggingAnswer(t *testing.T) {
	const after = 5 * time.Second
	t0 := time.Now()
	oldWriter, newWriter := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	onNew := &conn{upstream: newWriter, asked: t0.Add(-time.Minute)}
	f := &forward{conns: map[*conn]struct{}{onNew: {}}}
	missing := map[netip.Addr]missingAddr{}
	for i, answer := range [][]netip.Addr{{oldWriter}, {newWriter}, {oldWriter}, {newWriter}, {oldWriter}} {
		if got := f.staleConns(t0.Add(time.Duration(i)*after), answer, missing, after); len(got) != 0 {
			t.Fatalf("check %d (answer %v) closed the connection to the new writer", i, answer)
		}
	}
	if got := f.staleConns(t0.Add(5*after), []netip.Addr{oldWriter}, missing, after); len(got) != 1 {
		t.Errorf("missing from two checks %v apart: stale = %d connections, want 1", after, len(got))
	}
}

// A connection a check closes is not closed again by the next check, which
// may come before it has ended: a loaded machine's ticker fires twice in
// a row, and the line saying how many connections the check closes then
// counted it twice (seen as a flaky TestStaleCheckClosesDemotedUpstream).
func TestStaleConnsClosedOnce(t *testing.T) {
	const after = 5 * time.Second
	t0 := time.Now()
	oldWriter, newWriter := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	onOld := &conn{upstream: oldWriter, asked: t0.Add(-time.Second)}
	f := &forward{conns: map[*conn]struct{}{onOld: {}}}
	missing := map[netip.Addr]missingAddr{}
	f.staleConns(t0, []netip.Addr{newWriter}, missing, after)
	if got := f.staleConns(t0.Add(after), []netip.Addr{newWriter}, missing, after); len(got) != 1 {
		t.Fatalf("stale = %d connections, want the one to the old writer", len(got))
	}
	if got := f.staleConns(t0.Add(after+time.Millisecond), []netip.Addr{newWriter}, missing, after); len(got) != 0 {
		t.Errorf("the next check, before the closed connection ended, closed %d connections again; want none", len(got))
	}
}
