package proxy

import (
	"testing"
	"time"
)

func TestNextBackoff(t *testing.T) {
	const ms, limit = time.Millisecond, time.Second
	for _, tc := range []struct {
		last, since, want time.Duration
	}{
		{0, 100 * 365 * 24 * time.Hour, 5 * ms}, // the first failure (the zero time long ago)
		{5 * ms, 5 * ms, 10 * ms},
		{640 * ms, 640 * ms, limit},     // capped
		{limit, limit, limit},           // failing by turns with accepts: stays
		{limit, 2 * limit, limit},       // not yet calm
		{limit, 2*limit + ms, 5 * ms},   // a calm spell restarts it
		{80 * ms, 2*limit + ms, 5 * ms}, // also below the cap
	} {
		if got := nextBackoff(tc.last, tc.since, limit); got != tc.want {
			t.Errorf("nextBackoff(%v, %v since the failure before) = %v, want %v", tc.last, tc.since, got, tc.want)
		}
	}
}
