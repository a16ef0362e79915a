package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/example/sidecar/internal/msgdoc"
)

// docs/troubleshooting.md explains every exit code and every warning or
// error the sidecar writes: a new message or code fails this test until
// the page explains it.
func TestTroubleshootingCoversEveryMessage(t *testing.T) {
	b, err := os.ReadFile("../docs/troubleshooting.md")
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	msgs, err := msgdoc.Collect([]string{"."}, true, msgdoc.Logs|msgdoc.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) < 20 {
		t.Fatalf("found only %d messages in the sidecar's source; the collector no longer sees them", len(msgs))
	}
	for _, m := range msgdoc.Missing(page, msgs) {
		t.Errorf("docs/troubleshooting.md does not explain %q (%s)", m.Text, m.Pos)
	}

	codes, err := msgdoc.ExitCodes("run.go")
	if err != nil {
		t.Fatal(err)
	}
	section := docSection(t, "docs/troubleshooting.md", "### Sidecar exit codes")
	section, _, _ = strings.Cut(section, "\n### ")
	for name, code := range codes {
		if !strings.Contains(section, fmt.Sprintf("\n| `%d` |", code)) {
			t.Errorf("docs/troubleshooting.md's sidecar exit codes lack %d (%s)", code, name)
		}
	}
}
