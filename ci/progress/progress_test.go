package progress_test

import (
	"context"
	"errors"
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

// A wait that runs out of its bound says so; one whose context ended
// first does not, though its bound's context ended too; and no line
// comes once the bound is reached.
func TestBounded(t *testing.T) {
	wait := func(ctx context.Context) error { // returns a little after its context ends, as a remote call does
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond)
		return ctx.Err()
	}
	var late atomic.Int64
	report := func(waited time.Duration) {
		if waited >= 50*time.Millisecond {
			late.Add(1)
		}
	}
	timedOut, err := progress.Bounded(context.Background(), 50*time.Millisecond, time.Millisecond, report, wait)
	if !timedOut || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ran out of its bound: timedOut %v, err %v", timedOut, err)
	}
	if n := late.Load(); n != 0 {
		t.Errorf("%d lines at or past the bound", n)
	}

	parent, cancel := context.WithDeadline(context.Background(), time.Now().Add(time.Millisecond))
	defer cancel()
	<-parent.Done() // ended before the bound's context is made: both end
	if timedOut, err := progress.Bounded(parent, time.Millisecond, time.Hour, report, wait); timedOut || err == nil {
		t.Errorf("ended by its caller's deadline: timedOut %v, err %v; want false and an error", timedOut, err)
	}
	// The bound ran out first; ctx ended after it, before Bounded looked.
	later, cancelLater := context.WithCancel(context.Background())
	defer cancelLater()
	if timedOut, _ := progress.Bounded(later, time.Millisecond, time.Hour, report, func(ctx context.Context) error {
		err := wait(ctx)
		cancelLater()
		return err
	}); !timedOut {
		t.Error("ran out of its bound, then its caller ended: not taken for a timeout")
	}
	if timedOut, _ := progress.Bounded(context.Background(), time.Hour, time.Hour, report, func(context.Context) error { return errors.New("refused") }); timedOut {
		t.Error("an error within the bound taken for a timeout")
	}
}
