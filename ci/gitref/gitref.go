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
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/semver"
)

// ShortLen is the length of the commit tag. Fixed (not git's adaptive
// --short) so the same commit gets the same tag in every clone.
const ShortLen = 12

// Ref is the git state of a source tree.
type Ref struct {
	Commit string // full commit hash of HEAD
	Short  string // first ShortLen characters of Commit
	GitTag string // highest v* git tag pointing at HEAD, "" when none
	// Ignored are the v* tags on HEAD that name no version, each with
	// why: "v1.4 (a release-line tag)".
	Ignored []string
	Time    time.Time // committer time of HEAD (reproducible CREATED label)
	// Changed are the tracked files that differ from HEAD (staged or
	// not), relative to the repository root.
	Changed []string
	// Untracked files that .gitignore does not ignore, relative to the
	// directory read; a wholly untracked directory is one entry, "dir/".
	Untracked []string
}

// Dirty reports whether tracked files differ from HEAD.
func (r Ref) Dirty() bool { return len(r.Changed) > 0 }

// commitTagRE is a commit tag: ShortLen lowercase hex digits.
var commitTagRE = regexp.MustCompile(fmt.Sprintf(`^[0-9a-f]{%d}$`, ShortLen))

// IsCommitTag reports whether tag has a commit tag's form.
func IsCommitTag(tag string) bool { return commitTagRE.MatchString(tag) }

// Later reports whether the commit that the commit tag tag names is a
// strict descendant of commit in the history of the repository holding
// dir: a later commit of the same line. known is false when that history
// lacks it (a shallow clone, a branch not fetched) or tag is no commit
// tag: nothing can be said then.
func Later(ctx context.Context, dir, commit, tag string) (later, known bool, err error) {
	if !IsCommitTag(tag) {
		return false, false, nil
	}
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "--verify", "--quiet", tag+"^{commit}").Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return false, false, nil // not in this history, or ambiguous
	}
	if err != nil {
		return false, false, fmt.Errorf("git rev-parse in %s: %w (is git installed?)", dir, err)
	}
	full := strings.TrimSpace(string(out))
	if full == commit {
		return false, true, nil
	}
	cmd := exec.CommandContext(ctx, "git", "-C", dir, "merge-base", "--is-ancestor", commit, full)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	switch err := cmd.Run(); {
	case err == nil:
		return true, true, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return false, true, nil
	default:
		return false, false, fmt.Errorf("git merge-base --is-ancestor %s %s in %s: %w %s", commit, full, dir, err, strings.TrimSpace(stderr.String()))
	}
}

// tagRE is the OCI distribution spec's tag grammar.
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// ValidTag reports whether s can be used as an image tag.
func ValidTag(s string) bool { return tagRE.MatchString(s) }

// Read inspects the git repository containing dir. A version-like tag on
// HEAD that cannot be released is a *BadTagError, returned with the rest
// of the Ref read (GitTag "").
func Read(ctx context.Context, dir string) (Ref, error) {
	var badTag error
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
	ref.GitTag, ref.Ignored, badTag = pickVersion(strings.Fields(tags))

	// --untracked-files=no: a stray build artefact doesn't change what the
	// commit tag names; a modified tracked file does.
	status, err := git(ctx, dir, "status", "--porcelain=v1", "-z", "--untracked-files=no")
	if err != nil {
		return Ref{}, err
	}
	ref.Changed = changedPaths(status)

	others, err := git(ctx, dir, "ls-files", "-z", "--others", "--exclude-standard", "--directory", "--no-empty-directory")
	if err != nil {
		return Ref{}, err
	}
	for _, p := range strings.Split(others, "\x00") {
		if p != "" {
			ref.Untracked = append(ref.Untracked, p)
		}
	}
	return ref, badTag
}

// changedPaths are the paths of `git status --porcelain=v1 -z` entries
// ("XY path", unquoted with -z); a rename or copy is followed by its
// source path, which is not listed again.
func changedPaths(status string) []string {
	var paths []string
	entries := strings.Split(status, "\x00")
	for i := 0; i < len(entries); i++ {
		e := entries[i]
		if len(e) < 4 {
			continue
		}
		paths = append(paths, e[3:])
		if strings.ContainsAny(e[:2], "RC") {
			i++
		}
	}
	return paths
}

// BadTagError is a git tag on HEAD that looks like a version (v and a
// digit) but is not one a release can carry.
type BadTagError struct{ Tag string }

func (e *BadTagError) Error() string {
	return fmt.Sprintf("git tag %q on HEAD is not a version tag: want v and a semantic version without build metadata, "+
		"such as v1.4.0 or v1.4.0-rc.1 (pushed as image tag 1.4.0-rc.1)", e.Tag)
}

// pickVersion chooses the highest version tag among the v* tags on HEAD,
// by semantic version order (v1.10.0 beats v1.9.0, rc.10 beats rc.9, a
// release its pre-releases). A tag that is not v and a digit (vendor-sync)
// names no version and is ignored, as are v1 and v1.4: moving tags that
// name a release line (as GitHub Actions keep), not a release. One that
// is v and a digit, but is not a semantic version usable as an image tag
// (v1.4.0+build, v1.4.0_1), is refused.
func pickVersion(tags []string) (version string, ignored []string, err error) {
	var ok []string
	for _, t := range tags {
		if len(t) < 2 || t[0] != 'v' || t[1] < '0' || t[1] > '9' {
			ignored = append(ignored, t+" (no digit after the v)")
			continue
		}
		if semver.IsValid(t) && strings.Count(t, ".") < 2 {
			// semver's shorthand: vMAJOR or vMAJOR.MINOR, nothing after
			ignored = append(ignored, t+" (a release-line tag)")
			continue
		}
		if !semver.IsValid(t) || semver.Build(t) != "" || !ValidTag(t) {
			return "", nil, &BadTagError{Tag: t}
		}
		ok = append(ok, t)
	}
	if len(ok) == 0 {
		return "", ignored, nil
	}
	slices.SortFunc(ok, semver.Compare)
	return ok[len(ok)-1], ignored, nil
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
