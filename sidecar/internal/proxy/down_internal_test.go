package proxy

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestDownAddrs(t *testing.T) {
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	answer := []netip.Addr{a, b, c}
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name   string
		failed []time.Duration // a fails at t0 plus each
		ok     bool            // then a's dial succeeds
		at     time.Duration
		want   []netip.Addr
	}{
		{"nothing failed", nil, false, 0, answer},
		{"failed: last", []time.Duration{0}, false, time.Second, []netip.Addr{b, c, a}},
		{"back in place after DownFor, for one caller", []time.Duration{0}, false, DownFor, answer},
		{"failed again soon after: twice as long", []time.Duration{0, DownFor + time.Second}, false, 2*DownFor + 2*time.Second, []netip.Addr{b, c, a}},
		{"the doubled period ends", []time.Duration{0, DownFor + time.Second}, false, 3*DownFor + 2*time.Second, answer},
		{"failed long after: DownFor again", []time.Duration{0, 3 * DownFor}, false, 4*DownFor + time.Second, answer},
		{"failed again as its window closes: twice as long", []time.Duration{0, 2*DownFor - time.Second}, false, 3*DownFor + time.Second, []netip.Addr{b, c, a}},
		{"failed again after a quiet spell longer than its period: DownFor again", []time.Duration{0, 2*DownFor + time.Second}, false, 3*DownFor + 2*time.Second, answer},
		{"answered: back in place", []time.Duration{0}, true, time.Second, answer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d downAddrs
			for _, f := range tc.failed {
				d.failed(a, t0.Add(f))
			}
			if tc.ok {
				d.answered(a)
			}
			got := d.order(answer, t0.Add(tc.at), time.Second)
			if !slices.Equal(got, tc.want) {
				t.Errorf("order = %v, want %v", got, tc.want)
			}
			if !slices.Equal(answer, []netip.Addr{a, b, c}) {
				t.Fatalf("order changed the cached answer: %v", answer)
			}
		})
	}
}

// When a period ends, one caller tries the address in its place; the
// others keep it last while that dial may run, then the next one tries.
func TestDownAddrsOneProbe(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	answer := []netip.Addr{a, b}
	t0 := time.Unix(1000, 0)
	var d downAddrs
	d.failed(a, t0)
	end := t0.Add(DownFor)
	for _, tc := range []struct {
		at   time.Time
		want []netip.Addr
	}{
		{end, answer}, // the probe
		{end.Add(time.Second / 2), []netip.Addr{b, a}}, // while it may run
		{end.Add(time.Second), answer},                 // it never answered: another probe
	} {
		if got := d.order(answer, tc.at, time.Second); !slices.Equal(got, tc.want) {
			t.Errorf("order at %v past the period = %v, want %v", tc.at.Sub(end), got, tc.want)
		}
	}
	d.failed(a, end.Add(time.Second))
	if m := d.marks[a]; m.period != 2*DownFor {
		t.Errorf("the probe failed: period %v, want %v", m.period, 2*DownFor)
	}
}

// The period doubles up to DownForMax, and marks long over are dropped.
func TestDownAddrsBounds(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	var d downAddrs
	now := time.Unix(1000, 0)
	for range 10 {
		d.failed(a, now)
		now = d.marks[a].until.Add(time.Second)
	}
	if p := d.marks[a].period; p != DownForMax {
		t.Errorf("period after 10 failures in a row: %v, want %v", p, DownForMax)
	}
	d.failed(b, now.Add(3*DownForMax))
	if _, kept := d.marks[a]; kept || len(d.marks) != 1 {
		t.Errorf("marks %v; want only %v's, %v's long over", d.marks, b, a)
	}
}

// A probe refused at once, long after the address's period ended, starts
// it afresh at DownFor: the probe does not keep the old mark alive.
func TestDownAddrsQuickProbeFailureLongAfter(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	t0 := time.Unix(1000, 0)
	var d downAddrs
	d.failed(a, t0)
	probeAt := t0.Add(time.Hour)
	d.order([]netip.Addr{a, b}, probeAt, 5*time.Second)
	d.failed(a, probeAt.Add(time.Millisecond)) // refused: at once
	if m := d.marks[a]; m.period != DownFor {
		t.Errorf("failed an hour after its period: period %v, want DownFor %v", m.period, DownFor)
	}
}
