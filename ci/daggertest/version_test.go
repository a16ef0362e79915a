package daggertest_test

import (
	"os"
	"regexp"
	"testing"

	"github.com/example/sidecar/ci/daggertest"
)

// The model describes one engine version: go.mod's Dagger SDK must be it,
// so a bump fails here until the model is checked against the new engine.
func TestModelMatchesGoMod(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?dagger\.io/dagger\s+(v\S+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod does not require dagger.io/dagger")
	}
	if got := string(m[1]); got != daggertest.Version {
		t.Fatalf("go.mod requires dagger.io/dagger %s, but the recording session models the engine at %s (commit %s): "+
			"re-read each behaviour in ci/daggertest's package comment in the new engine's source, then update Version",
			got, daggertest.Version, daggertest.ModelCommit)
	}
}
