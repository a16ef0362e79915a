package ci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/engine"
	"github.com/example/sidecar/internal/msgdoc"
)

// docs/troubleshooting.md explains the pipeline's exit codes and its
// top-level messages: the mage targets' own, the runner's, and the
// headers of the configuration and engine errors. (The messages of the
// steps below them are documented by step, not tied one by one.)
func TestTroubleshootingCoversPipelineMessages(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../docs/troubleshooting.md")
	if err != nil {
		t.Fatal(err)
	}
	_, pipeline, _ := strings.Cut(string(b), "\n## The pipeline")
	msgdoc.Require(t, pipeline, []string{"../magefiles", "runner.go", "steps.go"}, false, msgdoc.Errors|msgdoc.Stderr|msgdoc.Logs, 5)
	for _, head := range []string{
		strings.SplitN((&config.Error{}).Error(), ":", 2)[0],
		strings.TrimSpace((&engine.Error{}).Error()),
	} {
		if !strings.Contains(pipeline, "`"+strings.TrimRight(head, ": ")) {
			t.Errorf("docs/troubleshooting.md's pipeline section does not explain %q", head)
		}
	}
	// A variable's many problems end in a line saying how many more.
	var platforms []string
	for i := range 100 {
		platforms = append(platforms, fmt.Sprintf("linux/p%d", i))
	}
	_, err = config.Load(t.TempDir(), func(k string) (string, bool) { return strings.Join(platforms, ","), k == "PLATFORMS" })
	var ce *config.Error
	if !errors.As(err, &ce) || len(ce.Problems) == 0 {
		t.Fatalf("PLATFORMS of %d bad entries: %v, want a config.Error", len(platforms), err)
	}
	last := ce.Problems[len(ce.Problems)-1]
	if _, more, ok := strings.Cut(last, " more "); !ok || !strings.Contains(pipeline, "more "+more) {
		t.Errorf("docs/troubleshooting.md's pipeline section does not explain %q", last)
	}
	_, section, _ := strings.Cut(pipeline, "### Pipeline exit codes")
	section, _, _ = strings.Cut(section, "\n### ")
	msgdoc.RequireExitCodes(t, section, "exitcode.go")
}

// The row of the LOCAL_IMAGE message gives the exit code a run refused
// by it ends with.
func TestTroubleshootingGivesTheLocalDockerExitCode(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../docs/troubleshooting.md")
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{Config: config.Config{LocalImage: "sidecar:dev"}, Log: io.Discard,
		lookupEnv:  func(string) (string, bool) { return "", false },
		pingDocker: func(context.Context) error { return errors.New("connection refused") }}
	refused := r.checkLocalDocker(context.Background(), "build")
	if refused == nil {
		t.Fatal("checkLocalDocker passed with Docker down")
	}
	want := fmt.Sprintf("Exit code %d.", ExitCode(refused))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "| `LOCAL_IMAGE=… needs the local Docker") {
			if !strings.Contains(line, want) {
				t.Errorf("docs/troubleshooting.md's row does not say %q:\n%s", want, line)
			}
			return
		}
	}
	t.Error("docs/troubleshooting.md has no row for `LOCAL_IMAGE=… needs the local Docker`")
}
