package ci

import (
	"context"
	"errors"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/engine"
)

// Exit codes of the mage targets.
const (
	ExitFailed   = 1 // the pipeline failed (build, size budget, tests, push)
	ExitConfig   = 2 // configuration to fix: a bad variable, or push's missing AWS region or credentials
	ExitNoEngine = 3 // no Dagger engine reachable
	// ExitInterrupted: Ctrl-C (SIGINT) cancelled the target, as a shell
	// reports a command it interrupted.
	ExitInterrupted = 130
)

// InterruptedError is a target's error once its context was cancelled: the
// error is what the interruption caused, whatever it says ("Dagger engine
// unavailable", "AWS credentials not found").
type InterruptedError struct{ Err error }

func (e *InterruptedError) Error() string { return "interrupted (Ctrl-C): " + e.Err.Error() }
func (e *InterruptedError) Unwrap() error { return e.Err }

// Interrupted is err as an InterruptedError when ctx, the target's, has
// been cancelled.
func Interrupted(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	return &InterruptedError{Err: err}
}

// ExitCode is the exit code for a target's error (nil: 0).
func ExitCode(err error) int {
	var (
		ie *InterruptedError
		ee *engine.Error
		pe *ecr.PreflightError
	)
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ie):
		return ExitInterrupted
	case errors.As(err, &ee):
		return ExitNoEngine
	case config.IsError(err), errors.As(err, &pe):
		return ExitConfig
	}
	return ExitFailed
}
