package proxy

import (
	"context"
	"sync"
	"time"
)

// Defaults of the departure grace (Config.DepartureGrace, DepartureFlood).
const (
	DefaultDepartureGrace = time.Millisecond
	DefaultDepartureFlood = 10
)

// departures counts a forward's clients that left without sending a byte
// (client_gone), per second. A client that connects and closes at once
// (an `nc -z` check, a pool giving up) often closes in the microseconds
// after the pre-dial check; dialing for it opens a database connection
// that never logs in, which the server counts as an aborted connect. While
// such clients arrive in a flood, a new client is given a short grace
// before the dial to show whether it stays; otherwise nobody waits.
type departures struct {
	mu       sync.Mutex
	window   time.Time // start of the current one-second window
	count    int       // departures in it
	previous int       // departures in the window before, if it just ended
}

// add records a departure at now.
func (d *departures) add(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.roll(now)
	d.count++
}

// flooding reports whether at least flood departures came in the current
// or the previous one-second window.
func (d *departures) flooding(now time.Time, flood int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.roll(now)
	return d.count >= flood || d.previous >= flood
}

func (d *departures) roll(now time.Time) {
	switch elapsed := now.Sub(d.window); {
	case elapsed < time.Second:
	case elapsed < 2*time.Second:
		d.window, d.previous, d.count = d.window.Add(time.Second), d.count, 0
	default:
		d.window, d.previous, d.count = now, 0, 0
	}
}

// pause waits d, or until ctx is done.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
