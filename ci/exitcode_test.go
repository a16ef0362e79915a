package ci

import (
	"errors"
	"fmt"
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
	}
}
