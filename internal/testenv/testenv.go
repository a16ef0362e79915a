// Package testenv decides what a test does when a service it needs is not
// on this machine: in CI (CI is set) the test fails, elsewhere it skips and
// says what is missing.
package testenv

import (
	"fmt"
	"os"
	"testing"
)

// InCI reports whether the tests run in CI, where every service must exist.
func InCI() bool { return os.Getenv("CI") != "" }

// Unavailable fails the test in CI and skips it elsewhere, naming what is
// missing and how to get it.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("required in CI: %s", msg)
	}
	t.Skipf("skipping: %s", msg)
}
