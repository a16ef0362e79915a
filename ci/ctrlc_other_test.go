//go:build !unix

package ci

import (
	"context"
	"testing"
)

// testCtrlC sends SIGINT to mage's process group, which only Unix has.
func testCtrlC(_ context.Context, t *testing.T, _, _ string) {
	t.Skip("Ctrl-C is tested on Unix: it signals a process group")
}
