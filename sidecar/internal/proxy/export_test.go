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
