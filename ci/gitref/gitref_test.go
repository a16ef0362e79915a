package gitref

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testenv"
)

// repo makes a real git repository with one commit at a fixed time.
func repo(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Unavailable(t, "git is not installed (apt-get install git)")
	}
	dir := t.TempDir()
	run(t, dir, "init", "-q")
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, dir, "add", "a.txt")
	run(t, dir, "commit", "-q", "-m", "first")
	return dir
}

func run(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
		"GIT_AUTHOR_DATE=2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2026-01-02T03:04:05Z",
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestRead(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		tags      []string // lightweight tags on HEAD
		dirty     bool
		untracked bool
		wantVer   string
		wantDirty bool
		wantOther []string
	}{
		{name: "plain commit"},
		{name: "version tag", tags: []string{"v1.2.3"}, wantVer: "v1.2.3"},
		{name: "highest of several", tags: []string{"v1.9.0", "v1.10.0", "v1.10.0-rc1"}, wantVer: "v1.10.0"},
		{name: "non-version tags ignored", tags: []string{"release-7"}},
		{name: "modified tracked file", dirty: true, wantDirty: true},
		{name: "untracked file is not dirty", untracked: true, wantOther: []string{".gitignore", "b.txt", "wip/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := repo(t)
			for _, tag := range tc.tags {
				run(t, dir, "tag", tag)
			}
			if tc.dirty {
				if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("two\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.untracked {
				// An ignored file is not listed; a new directory is one entry.
				for name, body := range map[string]string{"b.txt": "x\n", ".gitignore": "*.log\n", "run.log": "x\n", "wip/c.go": "package wip\n", "wip/d.go": "package wip\n"} {
					if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			ref, err := Read(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			full := run(t, dir, "rev-parse", "HEAD")
			if ref.Commit != full || ref.Short != full[:ShortLen] {
				t.Errorf("commit = %q/%q, want %q", ref.Commit, ref.Short, full)
			}
			if ref.GitTag != tc.wantVer {
				t.Errorf("git tag = %q, want %q", ref.GitTag, tc.wantVer)
			}
			if ref.Dirty != tc.wantDirty {
				t.Errorf("dirty = %v, want %v", ref.Dirty, tc.wantDirty)
			}
			if !slices.Equal(ref.Untracked, tc.wantOther) {
				t.Errorf("untracked = %q, want %q", ref.Untracked, tc.wantOther)
			}
			if want := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC); !ref.Time.Equal(want) {
				t.Errorf("time = %v, want %v", ref.Time, want)
			}
		})
	}
}

func TestReadOutsideRepo(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Unavailable(t, "git is not installed (apt-get install git)")
	}
	t.Setenv("GIT_CEILING_DIRECTORIES", os.TempDir())
	dir := t.TempDir()
	_, err := Read(context.Background(), dir)
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Read outside a repository: err = %v, want an error naming %s", err, dir)
	}
}

func TestVersionLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"v1.9.0", "v1.10.0", true},
		{"v1.10.0", "v1.9.0", false},
		{"v1.0.0-rc1", "v1.0.0", true},
		{"v1.0.0", "v1.0.0-rc1", false},
		{"v1.0", "v1.0.1", true},
		{"v1.0.0-rc1", "v1.0.0-rc2", true},
	} {
		if got := versionLess(tc.a, tc.b); got != tc.want {
			t.Errorf("versionLess(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
