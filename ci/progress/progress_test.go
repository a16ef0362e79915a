package progress_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/example/sidecar/ci/progress"
)

// Lines come while the wait lasts, each with the time waited so far, and
// none once stop has returned.
func TestEvery(t *testing.T) {
	var calls atomic.Int64
	var last atomic.Int64
	stop := progress.Every(10*time.Millisecond, func(waited time.Duration) {
		calls.Add(1)
		last.Store(int64(waited))
	})
	for calls.Load() < 3 {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	n := calls.Load()
	if waited := time.Duration(last.Load()); waited < 10*time.Millisecond {
		t.Errorf("a line said %v waited, before the first period ended", waited)
	}
	time.Sleep(50 * time.Millisecond)
	if calls.Load() != n {
		t.Errorf("%d lines after stop returned", calls.Load()-n)
	}
}
