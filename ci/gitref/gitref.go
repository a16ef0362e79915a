// Package gitref reads what the pipeline needs to know about the source's
// git state: the commit, the v* version tag on HEAD, the commit time and
// whether the worktree has uncommitted changes. Image tags are decided
// from it by package imagetag.
package gitref

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ShortLen is the length of the commit tag. Fixed (not git's adaptive
// --short) so the same commit gets the same tag in every clone.
const ShortLen = 12

// Ref is the git state of a source tree.
type Ref struct {
	Commit string    // full commit hash of HEAD
	Short  string    // first ShortLen characters of Commit
	GitTag string    // highest v* git tag pointing at HEAD, "" when none
	Time   time.Time // committer time of HEAD (reproducible CREATED label)
	Dirty  bool      // tracked files differ from HEAD
	// Untracked files that .gitignore does not ignore, relative to the
	// directory read; a wholly untracked directory is one entry, "dir/".
	Untracked []string
}

// tagRE is the OCI distribution spec's tag grammar.
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// ValidTag reports whether s can be used as an image tag.
func ValidTag(s string) bool { return tagRE.MatchString(s) }

// Read inspects the git repository containing dir.
func Read(ctx context.Context, dir string) (Ref, error) {
	out, err := git(ctx, dir, "log", "-1", "--format=%H %ct")
	if err != nil {
		return Ref{}, err
	}
	fields := strings.Fields(out)
	if len(fields) != 2 || len(fields[0]) < ShortLen {
		return Ref{}, fmt.Errorf("git log in %s: unexpected output %q", dir, out)
	}
	secs, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return Ref{}, fmt.Errorf("git log in %s: bad commit time %q: %w", dir, fields[1], err)
	}
	ref := Ref{Commit: fields[0], Short: fields[0][:ShortLen], Time: time.Unix(secs, 0).UTC()}

	tags, err := git(ctx, dir, "tag", "--points-at", "HEAD", "--list", "v*")
	if err != nil {
		return Ref{}, err
	}
	ref.GitTag, err = pickVersion(strings.Fields(tags))
	if err != nil {
		return Ref{}, err
	}

	// --untracked-files=no: a stray build artefact doesn't change what the
	// commit tag names; a modified tracked file does.
	status, err := git(ctx, dir, "status", "--porcelain", "--untracked-files=no")
	if err != nil {
		return Ref{}, err
	}
	ref.Dirty = strings.TrimSpace(status) != ""

	others, err := git(ctx, dir, "ls-files", "-z", "--others", "--exclude-standard", "--directory", "--no-empty-directory")
	if err != nil {
		return Ref{}, err
	}
	for _, p := range strings.Split(others, "\x00") {
		if p != "" {
			ref.Untracked = append(ref.Untracked, p)
		}
	}
	return ref, nil
}

// pickVersion chooses the highest version among the v* tags on HEAD
// (v1.10.0 beats v1.9.0), ignoring names that are not valid image tags.
func pickVersion(tags []string) (string, error) {
	var ok []string
	var bad []string
	for _, t := range tags {
		if ValidTag(t) {
			ok = append(ok, t)
		} else {
			bad = append(bad, t)
		}
	}
	if len(ok) == 0 {
		if len(bad) > 0 {
			return "", fmt.Errorf("git tag %q on HEAD cannot be an image tag (allowed: letters, digits, _ . -, at most 128 characters)", bad[0])
		}
		return "", nil
	}
	sort.Slice(ok, func(i, j int) bool { return versionLess(ok[i], ok[j]) })
	return ok[len(ok)-1], nil
}

// versionLess compares dotted versions numerically where both parts are
// numbers and as strings elsewhere; a pre-release (v1.0.0-rc1) sorts below
// its release.
func versionLess(a, b string) bool {
	ac, apre, _ := strings.Cut(strings.TrimPrefix(a, "v"), "-")
	bc, bpre, _ := strings.Cut(strings.TrimPrefix(b, "v"), "-")
	ap, bp := strings.Split(ac, "."), strings.Split(bc, ".")
	for i := 0; i < len(ap) && i < len(bp); i++ {
		an, aerr := strconv.Atoi(ap[i])
		bn, berr := strconv.Atoi(bp[i])
		switch {
		case aerr == nil && berr == nil && an != bn:
			return an < bn
		case (aerr != nil || berr != nil) && ap[i] != bp[i]:
			return ap[i] < bp[i]
		}
	}
	if len(ap) != len(bp) {
		return len(ap) < len(bp)
	}
	if (apre == "") != (bpre == "") {
		return apre != "" // the pre-release is lower
	}
	return apre < bpre
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s in %s: %s", strings.Join(args, " "), dir, strings.TrimSpace(stderr.String()))
		}
		return "", fmt.Errorf("git %s in %s: %w (is git installed?)", strings.Join(args, " "), dir, err)
	}
	return string(out), nil
}
