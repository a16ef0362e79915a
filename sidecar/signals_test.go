package main

import (
	"os"
	"slices"
	"syscall"
	"testing"
	"time"
)

// watchSignals ends the drain at once on a second signal, but not on the
// first one delivered twice: GNU timeout signals the command and then its
// process group, and a drain cut by that loses the connections in flight.
func TestWatchSignals(t *testing.T) {
	type signal struct {
		sig os.Signal
		at  time.Duration // since the first signal
	}
	for _, tc := range []struct {
		name    string
		signals []signal
		exits   []int // exit's calls
	}{
		{"one SIGTERM: the drain alone", []signal{{syscall.SIGTERM, 0}}, nil},
		{"SIGTERM delivered twice at once", []signal{{syscall.SIGTERM, 0}, {syscall.SIGTERM, 0}}, nil},
		{"SIGTERM twice just inside the window", []signal{{syscall.SIGTERM, 0}, {syscall.SIGTERM, repeatWindow - 1}}, nil},
		{"SIGTERM again after the window", []signal{{syscall.SIGTERM, 0}, {syscall.SIGTERM, repeatWindow}}, []int{143}},
		{"a duplicate, then a second SIGTERM", []signal{{syscall.SIGTERM, 0}, {syscall.SIGTERM, 0}, {syscall.SIGTERM, time.Second}}, []int{143}},
		{"Ctrl-C twice", []signal{{syscall.SIGINT, 0}, {syscall.SIGINT, 300 * time.Millisecond}}, []int{130}},
		{"SIGINT at once after SIGTERM: another request", []signal{{syscall.SIGTERM, 0}, {syscall.SIGINT, 0}}, []int{130}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			signals := make(chan os.Signal)
			var times []time.Time // now's answers, one per signal received
			for _, s := range tc.signals {
				times = append(times, start.Add(s.at))
			}
			now := func() time.Time {
				if len(times) == 0 {
					t.Error("now called more often than a signal came")
					return start
				}
				next := times[0]
				times = times[1:]
				return next
			}
			drains := 0
			var exits []int
			done := make(chan struct{})
			go func() {
				defer close(done)
				watchSignals(signals, func() { drains++ }, func(code int) { exits = append(exits, code) }, now)
			}()
		send:
			for _, s := range tc.signals {
				select {
				case signals <- s.sig:
				case <-done: // it has exited
					break send
				}
			}
			close(signals)
			<-done
			if drains != 1 || !slices.Equal(exits, tc.exits) {
				t.Errorf("drain called %d times, exit called with %v; want 1 and %v", drains, exits, tc.exits)
			}
		})
	}
}
