// Package loglimit rate-limits a kind of log line that can come in storms.
package loglimit

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Limiter rate-limits one kind of log line written from many goroutines:
// the first of a burst is logged in full, then at most one summary a second
// says how many were not logged and shows the latest. During a failover a
// large connection pool fails its dials all at once; the logs (CloudWatch
// bills per byte) get a few lines, while metrics still count every failure.
type Limiter struct {
	log     *slog.Logger
	level   slog.Level
	msg     string // the full line
	summary string // the summary line
	every   time.Duration

	mu        sync.Mutex
	last      time.Time   // when a line was last written
	notLogged int         // events since then not written
	latest    []any       // the latest of those, shown in the summary
	timer     *time.Timer // the pending summary, if any
}

// New returns a Limiter writing msg in full, then summary once a second
// with not_logged, both at level to log.
func New(log *slog.Logger, level slog.Level, msg, summary string) *Limiter {
	return &Limiter{log: log, level: level, msg: msg, summary: summary, every: time.Second}
}

// Event logs attrs now, or keeps them for the next summary.
func (l *Limiter) Event(attrs ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.timer == nil && now.Sub(l.last) >= l.every {
		l.last = now
		l.log.Log(context.Background(), l.level, l.msg, attrs...)
		return
	}
	l.notLogged++
	l.latest = attrs
	if l.timer == nil {
		l.timer = time.AfterFunc(l.last.Add(l.every).Sub(now), l.flush)
	}
}

// flush writes the summary of the events not logged, if any.
func (l *Limiter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = nil
	l.flushLocked()
}

func (l *Limiter) flushLocked() {
	if l.notLogged == 0 {
		return
	}
	attrs := append([]any{"not_logged", l.notLogged}, l.latest...)
	l.log.Log(context.Background(), l.level, l.summary, attrs...)
	l.last, l.notLogged, l.latest = time.Now(), 0, nil
}

// Close writes a pending summary at once, so no count is lost at exit.
func (l *Limiter) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.flushLocked()
}

// Msg is the full line's message, for the same event logged unlimited at
// a lower level.
func (l *Limiter) Msg() string { return l.msg }
