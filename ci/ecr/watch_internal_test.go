package ecr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// A wait's error names what ended it: its own bound, or the run's
// deadline or Ctrl-C, which must not be blamed on the bound.
func TestWatchedNamesWhatEndedTheWait(t *testing.T) {
	t.Parallel()
	// As the SDK does, the call ends with its context, quoting its error.
	call := func(ctx context.Context) error {
		<-ctx.Done()
		return fmt.Errorf("operation error ECR: GetAuthorizationToken, %w", ctx.Err())
	}
	for _, tc := range []struct {
		name   string
		caller func() (context.Context, context.CancelFunc)
		bound  time.Duration
		want   string
		is     error
	}{
		{"its own bound", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			100 * time.Millisecond, "no answer from ECR (ecr:GetAuthorizationToken) within 100ms: check the network path to AWS", context.DeadlineExceeded},
		{"the run's deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}, time.Hour, "stopped waiting for ECR (ecr:GetAuthorizationToken): the run's deadline passed first, not the 1h0m0s this wait allows", context.DeadlineExceeded},
		{"Ctrl-C", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, time.Hour, "stopped waiting for ECR (ecr:GetAuthorizationToken): the run was stopped (Ctrl-C)", context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := tc.caller()
			defer cancel()
			w := Wait{Report: func(string) {}, What: "ECR (ecr:GetAuthorizationToken)", Bound: tc.bound, Every: time.Hour}
			err := watched(ctx, w, call)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want one starting %q, a %v", err, tc.want, tc.is)
			}
			if tc.bound == time.Hour && strings.Contains(err.Error(), "no answer") {
				t.Errorf("the bound is blamed: %v", err)
			}
		})
	}
}
