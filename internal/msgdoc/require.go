package msgdoc

import (
	"fmt"
	"strings"
	"testing"
)

// Require fails t for every message of kinds in paths that page does not
// contain, and when fewer than atLeast are found (the collector no longer
// sees them).
func Require(t testing.TB, page string, paths []string, recursive bool, kinds, atLeast int) {
	t.Helper()
	msgs, err := Collect(paths, recursive, kinds)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) < atLeast {
		t.Fatalf("found only %d messages in %v; the collector no longer sees them", len(msgs), paths)
	}
	for _, m := range Missing(page, msgs) {
		t.Errorf("the troubleshooting page does not explain %q (%s)", m.Text, m.Pos)
	}
}

// RequireExitCodes fails t for every exit… constant of file that has no
// "| `N` |" row in section.
func RequireExitCodes(t testing.TB, section, file string) {
	t.Helper()
	codes, err := ExitCodes(file)
	if err != nil {
		t.Fatal(err)
	}
	for name, code := range codes {
		if !strings.Contains(section, fmt.Sprintf("\n| `%d` |", code)) {
			t.Errorf("the troubleshooting page's exit codes lack %d (%s in %s)", code, name, file)
		}
	}
}
