package proxy

import "time"

// WithUnansweredAfter returns cfg with d in place of unansweredAfter, so a
// test puts a client's departure on the side of it the test is about,
// whatever the machine's load: an hour for one within it, a nanosecond
// (less than any dial takes) for one past it.
func WithUnansweredAfter(cfg Config, d time.Duration) Config {
	cfg.unansweredAfter = d
	return cfg
}

// WithQueuedCap returns cfg with the drain taking at most n connections
// from each accept queue, in place of a full queue: a test then shows the
// cap holding by queueing more than it, which a full queue cannot be.
func WithQueuedCap(cfg Config, n int) Config {
	cfg.queuedCap = n
	return cfg
}
