package ecr

import (
	"testing"
	"time"
)

// WaitForScans paces itself with the documented defaults when the
// caller (the pipeline, which sets neither) leaves them zero, and keeps
// what a caller sets.
func TestWaitOptionsDefaults(t *testing.T) {
	o := WaitOptions{}.withDefaults()
	if o.Poll != DefaultPoll || o.Progress != DefaultProgress {
		t.Errorf("zero WaitOptions paced %s / %s, want %s / %s", o.Poll, o.Progress, DefaultPoll, DefaultProgress)
	}
	if o := (WaitOptions{Poll: time.Second, Progress: time.Minute}).withDefaults(); o.Poll != time.Second || o.Progress != time.Minute {
		t.Errorf("set WaitOptions changed: %+v", o)
	}
}
