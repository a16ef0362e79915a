package proxy

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// memoryReleaser gives memory back to the OS once a burst of connections
// has drained. After 10,000 connections close, their goroutine stacks and
// buffers are garbage the runtime keeps (and its scavenger returns only
// slowly), so RSS stays at the burst's peak. A release is a forced GC and
// scavenge (debug.FreeOSMemory): a few milliseconds with a small heap.
//
// It runs only when the connection count has fallen to a quarter of a peak
// of at least burst connections, and at most once per every: a steady
// load, whose count never falls that far, pays nothing.
type memoryReleaser struct {
	burst int64         // smallest peak that counts as a burst
	every time.Duration // at most one release per
	free  func()

	peak atomic.Int64              // highest count since the last release
	kick chan struct{}             // a drop below a quarter of the peak
	last atomic.Pointer[time.Time] // when memory was last released (tests)
}

func newMemoryReleaser(burst int, every time.Duration, free func()) *memoryReleaser {
	return &memoryReleaser{burst: int64(burst), every: every, free: free, kick: make(chan struct{}, 1)}
}

// up records the count after a connection took its slot.
func (m *memoryReleaser) up(n int64) {
	for {
		p := m.peak.Load()
		if n <= p || m.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

// down records the count after a connection gave its slot back.
func (m *memoryReleaser) down(n int64) {
	if p := m.peak.Load(); p >= m.burst && n <= p/4 {
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
}

// run releases memory after each drained burst, rate-limited, until ctx
// ends. active reads the current count.
func (m *memoryReleaser) run(ctx context.Context, active func() int64, log func(peak, now int64, took time.Duration)) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.kick:
		}
		if wait := m.every - time.Since(last); !last.IsZero() && wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		// The peak is re-read after the wait: a new burst may have begun.
		peak, now := m.peak.Load(), active()
		if peak < m.burst || now > peak/4 {
			continue
		}
		start := time.Now()
		m.free()
		last = time.Now()
		m.peak.Store(now)
		log(peak, now, last.Sub(start))
	}
}

func freeOSMemory() { debug.FreeOSMemory() }
