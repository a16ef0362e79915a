package ci

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/engine"
)

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("size budget exceeded"), ExitFailed},
		{&config.Error{Problems: []string{`SIZE_BUDGET="huge"`}}, ExitConfig},
		// Push's AWS preflight: a region or credentials to set.
		{fmt.Errorf("push: %w", &ecr.PreflightError{Problems: []string{"AWS region is not set"}}), ExitConfig},
		{fmt.Errorf("connect: %w", &engine.Error{Missing: "no session"}), ExitNoEngine},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
		if got := ExitCode(Interrupted(context.Background(), tc.err)); got != tc.want {
			t.Errorf("ExitCode(%v) with a live context = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// Ctrl-C cancels the target's context; whatever error that causes (an
// engine session that never started, credentials not found) exits 130,
// not the code that would send the user to fix Docker or AWS.
func TestInterruptedExitCode(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, err := range []error{
		fmt.Errorf("connect: %w", &engine.Error{Missing: "the engine session did not start in time"}),
		&ecr.PreflightError{Problems: []string{"AWS credentials not found: context canceled"}},
		errors.New("build: context canceled"),
	} {
		got := Interrupted(ctx, err)
		if ExitCode(got) != ExitInterrupted || !strings.HasPrefix(got.Error(), "interrupted (Ctrl-C): ") || !errors.Is(got, err) {
			t.Errorf("Interrupted(%v) = %v, exit %d; want exit %d saying it was interrupted", err, got, ExitCode(got), ExitInterrupted)
		}
	}
	if Interrupted(ctx, nil) != nil {
		t.Error("a target that finished despite Ctrl-C failed")
	}
}
