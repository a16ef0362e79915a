// Package progress paces the lines a long wait prints while it waits.
package progress

import (
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
