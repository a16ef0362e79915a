package ci

import (
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
)

// ExitCode is the exit code for a target's error (nil: 0).
func ExitCode(err error) int {
	var (
		ee *engine.Error
		pe *ecr.PreflightError
	)
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ExitNoEngine
	case config.IsError(err), errors.As(err, &pe):
		return ExitConfig
	}
	return ExitFailed
}
