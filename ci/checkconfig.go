package ci

import (
	"context"
	"errors"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/ecr"
)

// CheckConfig is what go tool mage config checks: the configuration as
// every target loads it (config.Load), and, when a region is set, push's
// region check (build and test need none), every problem in one
// config.Error. It reads the shared AWS files but reaches nothing.
func CheckConfig(ctx context.Context, dir string, lookup func(string) (string, bool)) (config.Config, error) {
	cfg, err := config.Load(dir, lookup)
	var (
		problems []string
		ce       *config.Error
		pe       *ecr.PreflightError
	)
	if errors.As(err, &ce) {
		problems = ce.Problems
	} else if err != nil {
		return config.Config{}, err
	}
	if err := ecr.CheckRegion(ctx, lookup, false); errors.As(err, &pe) {
		problems = append(problems, pe.Problems...)
	} else if err != nil {
		return config.Config{}, err
	}
	if len(problems) > 0 {
		return config.Config{}, &config.Error{Problems: problems}
	}
	return cfg, nil
}
