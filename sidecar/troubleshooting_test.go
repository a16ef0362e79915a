package main

import (
	"os"
	"strings"
	"testing"

	"github.com/example/sidecar/internal/msgdoc"
)

// docs/troubleshooting.md explains every exit code and every line the
// sidecar writes, warnings and errors and the INFO and DEBUG lines too: a
// new message or code fails this test until the page explains it.
func TestTroubleshootingCoversEveryMessage(t *testing.T) {
	b, err := os.ReadFile("../docs/troubleshooting.md")
	if err != nil {
		t.Fatal(err)
	}
	msgdoc.Require(t, string(b), []string{"."}, true, msgdoc.Logs|msgdoc.Notes|msgdoc.Stderr, 20)
	section := docSection(t, "docs/troubleshooting.md", "### Sidecar exit codes")
	section, _, _ = strings.Cut(section, "\n### ")
	msgdoc.RequireExitCodes(t, section, "run.go")
}
