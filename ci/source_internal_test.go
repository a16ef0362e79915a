package ci

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/example/sidecar/internal/testenv"
)

// A local build compiles the worktree as it is: an untracked source file
// makes its revision <commit>-dirty, as a changed tracked one does.
func TestLocalBuildRevisionCountsUntrackedFiles(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Unavailable(t, "git is not installed (apt-get install git)")
	}
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	if err := os.MkdirAll(filepath.Join(dir, "sidecar"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sidecar", "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", ".")
	git("commit", "-qm", "first")
	r := &run{Runner: &Runner{Log: &strings.Builder{}}, target: "build"}
	r.Config.Dir = dir
	clean := r.source(context.Background()).revision
	if len(clean) != 40 {
		t.Fatalf("revision of a clean worktree %q, want the commit", clean)
	}
	if err := os.WriteFile(filepath.Join(dir, "sidecar", "extra.go"), []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := r.source(context.Background()).revision; got != clean+"-dirty" {
		t.Errorf("revision with an untracked source file %q, want %q", got, clean+"-dirty")
	}
}
