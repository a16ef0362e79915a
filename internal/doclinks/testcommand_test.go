package doclinks

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// gotestsumCommands returns the go tool gotestsum command lines of text,
// without their trailing comments, as word lists.
func gotestsumCommands(text string) [][]string {
	var out [][]string
	for line := range strings.Lines(text) {
		line, _, _ = strings.Cut(strings.TrimSpace(line), " #")
		if strings.HasPrefix(line, "go tool gotestsum ") {
			out = append(out, strings.Fields(line))
		}
	}
	return out
}

// README.md and CONTRIBUTING.md give the test command; .ci/run runs it with
// -count=1 added (README says so), and so does the users' workflow. A
// change to one copy alone would have contributors, or users' CI, run
// something this repository's CI does not.
func TestTestCommandIsWhatCIRuns(t *testing.T) {
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("..", "..", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	readme := gotestsumCommands(read("README.md"))
	if len(readme) != 2 {
		t.Fatalf("README.md has %d go tool gotestsum lines, want 2 (the full run, the quick loop): %q", len(readme), readme)
	}
	contributing := gotestsumCommands(read("CONTRIBUTING.md"))
	if !slices.EqualFunc(contributing, readme, slices.Equal) {
		t.Errorf("CONTRIBUTING.md's test commands %q differ from README.md's %q", contributing, readme)
	}
	ci := gotestsumCommands(read(".ci/run"))
	if len(ci) != 1 {
		t.Fatalf(".ci/run has %d go tool gotestsum lines, want 1: %q", len(ci), ci)
	}
	i := slices.Index(ci[0], "-count=1")
	if i < 0 {
		t.Fatalf(".ci/run's test command %q has no -count=1, which README.md says it adds", ci[0])
	}
	if run := slices.Delete(slices.Clone(ci[0]), i, i+1); !slices.Equal(run, readme[0]) {
		t.Errorf(".ci/run runs %q; without -count=1 that is %q, but README.md's full run is %q", ci[0], run, readme[0])
	}
	// The users' workflow runs the same tests, after its sudo and env.
	var workflow [][]string
	for line := range strings.Lines(read(".github/workflows/pipeline.yml")) {
		if _, cmd, ok := strings.Cut(line, " go tool gotestsum "); ok {
			workflow = append(workflow, strings.Fields("go tool gotestsum "+cmd))
		}
	}
	if len(workflow) != 1 || !slices.Equal(workflow[0], ci[0]) {
		t.Errorf("pipeline.yml's unit tests run %q; want .ci/run's %q", workflow, ci[0])
	}
}
