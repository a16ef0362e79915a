package ci

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/example/sidecar/internal/msgdoc"
)

// docs/troubleshooting.md explains the pipeline's exit codes and its
// top-level messages: the mage targets' own, the runner's, and the
// headers of the configuration and engine errors. (The messages of the
// steps below them are documented by step, not tied one by one.)
func TestTroubleshootingCoversPipelineMessages(t *testing.T) {
	b, err := os.ReadFile("../docs/troubleshooting.md")
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	_, pipeline, _ := strings.Cut(page, "\n## The pipeline")
	msgs, err := msgdoc.Collect([]string{"../magefiles", "runner.go"}, false, msgdoc.Errors|msgdoc.Stderr|msgdoc.Logs)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) < 5 {
		t.Fatalf("found only %d messages in magefiles and runner.go; the collector no longer sees them", len(msgs))
	}
	for _, m := range msgdoc.Missing(pipeline, msgs) {
		t.Errorf("docs/troubleshooting.md's pipeline section does not explain %q (%s)", m.Text, m.Pos)
	}
	for _, head := range []string{
		strings.SplitN((&ConfigError{}).Error(), ":", 2)[0],
		strings.TrimSpace((&EngineError{}).Error()),
	} {
		if !strings.Contains(pipeline, "`"+strings.TrimRight(head, ": ")) {
			t.Errorf("docs/troubleshooting.md's pipeline section does not explain %q", head)
		}
	}

	codes, err := msgdoc.ExitCodes("../magefiles/magefile.go")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(pipeline, "### Pipeline exit codes")
	section, _, _ = strings.Cut(section, "\n### ")
	for name, code := range codes {
		if !strings.Contains(section, fmt.Sprintf("\n| `%d` |", code)) {
			t.Errorf("docs/troubleshooting.md's pipeline exit codes lack %d (%s)", code, name)
		}
	}
}
