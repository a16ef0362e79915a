package gitref

import (
	"context"
	"errors"
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
		wantDirty []string // the changed tracked files
		wantOther []string
	}{
		{name: "plain commit"},
		{name: "version tag", tags: []string{"v1.2.3"}, wantVer: "v1.2.3"},
		{name: "highest of several", tags: []string{"v1.9.0", "v1.10.0", "v1.10.0-rc1"}, wantVer: "v1.10.0"},
		{name: "non-version tags ignored", tags: []string{"release-7"}},
		{name: "v-words are not versions", tags: []string{"vendor-sync", "v1.2.0"}, wantVer: "v1.2.0"},
		{name: "modified tracked files", dirty: true, wantDirty: []string{"a.txt", "dir/e f.txt"}},
		{name: "untracked file is not dirty", untracked: true, wantOther: []string{".gitignore", "b.txt", "wip/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := repo(t)
			for _, tag := range tc.tags {
				run(t, dir, "tag", tag)
			}
			if tc.dirty {
				// One committed first: a path with a space, which git quotes
				// unless asked for -z.
				if err := os.MkdirAll(filepath.Join(dir, "dir"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "dir", "e f.txt"), []byte("one\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				run(t, dir, "add", "dir")
				run(t, dir, "commit", "-q", "-m", "second")
				for _, name := range []string{"a.txt", "dir/e f.txt"} {
					if err := os.WriteFile(filepath.Join(dir, name), []byte("two\n"), 0o644); err != nil {
						t.Fatal(err)
					}
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
			if !slices.Equal(ref.Changed, tc.wantDirty) || ref.Dirty() != (len(tc.wantDirty) > 0) {
				t.Errorf("changed = %q (dirty %v), want %q", ref.Changed, ref.Dirty(), tc.wantDirty)
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

// A tag that looks like a version but cannot be released is an error
// that still comes with the rest of the state, so a local build can go on
// as dev while a push refuses.
func TestReadBadVersionTag(t *testing.T) {
	dir := repo(t)
	run(t, dir, "tag", "v1.4.0+build.7")
	ref, err := Read(context.Background(), dir)
	var bt *BadTagError
	if !errors.As(err, &bt) || bt.Tag != "v1.4.0+build.7" {
		t.Fatalf("Read: %v, want a BadTagError for v1.4.0+build.7", err)
	}
	if ref.Commit == "" || ref.GitTag != "" || ref.Time.IsZero() {
		t.Errorf("ref with the bad tag = %+v, want the commit and time, no version", ref)
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

func TestPickVersion(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tags    []string
		want    string
		bad     string   // the tag refused
		ignored []string // the tags that name no version, with why
	}{
		{name: "numeric order", tags: []string{"v1.9.0", "v1.10.0"}, want: "v1.10.0"},
		{name: "a release beats its pre-release", tags: []string{"v1.0.0", "v1.0.0-rc1"}, want: "v1.0.0"},
		{name: "numeric pre-release identifiers", tags: []string{"v1.0.0-rc.10", "v1.0.0-rc.9"}, want: "v1.0.0-rc.10"},
		{name: "release-line tags are not versions", tags: []string{"v1", "v1.0", "v1.0.1"}, want: "v1.0.1",
			ignored: []string{"v1 (a release-line tag)", "v1.0 (a release-line tag)"}},
		{name: "a release-line tag does not tie with its release", tags: []string{"v1.4.0", "v1.4"}, want: "v1.4.0", ignored: []string{"v1.4 (a release-line tag)"}},
		{name: "only release-line tags", tags: []string{"v1", "v2.3"}, ignored: []string{"v1 (a release-line tag)", "v2.3 (a release-line tag)"}},
		{name: "shorthand with a pre-release is not semver", tags: []string{"v1.4-rc.1"}, bad: "v1.4-rc.1"},
		{name: "not versions: ignored", tags: []string{"vendor-sync", "v1.2.0", "very-good", "v"}, want: "v1.2.0",
			ignored: []string{"vendor-sync (no digit after the v)", "very-good (no digit after the v)", "v (no digit after the v)"}},
		{name: "only non-versions", tags: []string{"vendor-sync"}, ignored: []string{"vendor-sync (no digit after the v)"}},
		{name: "none"},
		{name: "build metadata cannot be an image tag", tags: []string{"v1.2.0", "v1.2.0+build.5"}, bad: "v1.2.0+build.5"},
		{name: "not semver", tags: []string{"v1.2.3.4"}, bad: "v1.2.3.4"},
		{name: "not semver either", tags: []string{"v2_final"}, bad: "v2_final"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ignored, err := pickVersion(tc.tags)
			var bt *BadTagError
			switch {
			case tc.bad != "" && (!errors.As(err, &bt) || bt.Tag != tc.bad || !strings.Contains(err.Error(), "v1.4.0-rc.1")):
				t.Errorf("pickVersion(%q) = %q, %v; want a BadTagError for %q saying what is accepted", tc.tags, got, err, tc.bad)
			case tc.bad == "" && (err != nil || got != tc.want || !slices.Equal(ignored, tc.ignored)):
				t.Errorf("pickVersion(%q) = %q, %q, %v; want %q, %q", tc.tags, got, ignored, err, tc.want, tc.ignored)
			}
		})
	}
}

// Later follows git's history: main's next commit is later, the same,
// an earlier one or a side branch's is not, and a commit the history
// lacks is unknown.
func TestLater(t *testing.T) {
	ctx := context.Background()
	dir := repo(t)
	first := run(t, dir, "rev-parse", "HEAD")
	run(t, dir, "commit", "-q", "--allow-empty", "-m", "second")
	second := run(t, dir, "rev-parse", "HEAD")
	run(t, dir, "checkout", "-q", "-b", "side", first)
	run(t, dir, "commit", "-q", "--allow-empty", "-m", "side")
	side := run(t, dir, "rev-parse", "HEAD")
	short := func(c string) string { return c[:ShortLen] }
	for _, tc := range []struct {
		name         string
		commit, tag  string
		later, known bool
	}{
		{"a later commit", first, short(second), true, true},
		{"an earlier commit", second, short(first), false, true},
		{"the same commit", second, short(second), false, true},
		{"another branch", second, short(side), false, true},
		{"not in this history", first, strings.Repeat("ab", ShortLen/2), false, false},
		{"not a commit tag", first, "1.4.0", false, false},
		{"a full hash is no commit tag", first, second, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			later, known, err := Later(ctx, dir, tc.commit, tc.tag)
			if err != nil || later != tc.later || known != tc.known {
				t.Errorf("Later(%.7s, %s) = %v, %v, %v; want %v, %v", tc.commit, tc.tag, later, known, err, tc.later, tc.known)
			}
		})
	}
}

// A rename's (or copy's) source path follows it in the -z output and is
// not a changed file of its own.
func TestChangedPaths(t *testing.T) {
	for _, tc := range []struct {
		status string
		want   []string
	}{
		{"", nil},
		{" M a.txt\x00", []string{"a.txt"}},
		{"R  new name.txt\x00old.txt\x00 M b.txt\x00", []string{"new name.txt", "b.txt"}},
		{"C  copy.txt\x00orig.txt\x00D  gone.txt\x00", []string{"copy.txt", "gone.txt"}},
	} {
		if got := changedPaths(tc.status); !slices.Equal(got, tc.want) {
			t.Errorf("changedPaths(%q) = %q, want %q", tc.status, got, tc.want)
		}
	}
}
