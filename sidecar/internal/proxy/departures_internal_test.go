package proxy

import (
	"testing"
	"time"
)

// The grace turns on at the flood rate, stays on through the next
// one-second window, and turns off once a window passes without a flood.
func TestDeparturesFlooding(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name   string
		events []int // departures at these milliseconds after t0
		at     int   // asked at this millisecond
		want   bool
	}{
		{"none", nil, 0, false},
		{"below the rate", []int{0, 100}, 200, false},
		{"at the rate", []int{0, 100, 200}, 300, true},
		{"the window after a flood", []int{0, 100, 200}, 1500, true},
		{"two windows later", []int{0, 100, 200}, 2100, false},
		{"spread over windows", []int{0, 900, 1800, 2700}, 2800, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d departures
			d.window = t0
			for _, e := range tt.events {
				d.add(ms(e))
			}
			if got := d.flooding(ms(tt.at), 3); got != tt.want {
				t.Errorf("flooding = %v, want %v", got, tt.want)
			}
		})
	}
}
