// Package progress paces the lines a long wait prints while it waits.
package progress

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Every calls fn with the time waited, every every, until the returned
// stop is called; fn is not called once stop has returned.
func Every(every time.Duration, fn func(waited time.Duration)) (stop func()) {
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fn(time.Since(start))
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// Bounded runs fn under bound, with report called every every with the
// time waited while fn runs, but not once bound is reached: the caller's
// error says it then. timedOut reports whether fn failed because bound
// ran out, not because ctx ended (Ctrl-C, the run's own deadline), whose
// error must not claim the bound.
func Bounded(ctx context.Context, bound, every time.Duration, report func(waited time.Duration), fn func(context.Context) error) (timedOut bool, err error) {
	// The cause tells the bound from ctx's end even when ctx ends just
	// after the bound ran out. It reads as DeadlineExceeded: calls quote
	// their context's cause in their errors.
	ranOut := fmt.Errorf("%w", context.DeadlineExceeded)
	bctx, cancel := context.WithTimeoutCause(ctx, bound, ranOut)
	defer cancel()
	stop := Every(every, func(waited time.Duration) {
		if waited < bound {
			report(waited)
		}
	})
	err = fn(bctx)
	stop()
	return err != nil && context.Cause(bctx) == ranOut, err
}
