// Package imagetag decides the tags `push` puts on the image: the commit
// tag, the version tag and latest, and why any of them is not pushed. It is
// the one place that decision is made: the pushed tags, `mage -h push`, the
// docs and the image's version label all come from Decide (tests tie the
// help and the docs to it).
package imagetag

import (
	"strings"
)

// Kind names a tag by its role.
type Kind string

// The three tags a push can put on an image, in the order they are pushed.
const (
	Commit  Kind = "commit"
	Version Kind = "version"
	Latest  Kind = "latest"
)

// Input is what the decision depends on.
type Input struct {
	Short  string // the commit's short hash (gitref.ShortLen characters)
	GitTag string // the v* git tag on HEAD, "" when none
	// Ignored are the v* tags on HEAD that name no version, with why
	// (gitref.Ref.Ignored): "v1.4 (a release-line tag)".
	Ignored    []string
	PushLatest bool // PUSH_LATEST
}

// Tag is the decision for one Kind: Name is pushed, or Skipped says why
// nothing is (and Name is "").
type Tag struct {
	Kind    Kind
	Name    string
	Skipped string
}

// Tags is the decision for every Kind, in push order (Commit first).
type Tags []Tag

// Decide decides every tag:
//
//   - commit: always, the 12-character commit hash (the candidate);
//   - version: the v* git tag on HEAD with one leading v stripped
//     (v1.2.3 → 1.2.3, as docker/metadata-action's semver pattern does);
//     skipped when HEAD has no v* tag, or only ones that name no version
//     (the skip names them);
//   - latest: only with PUSH_LATEST=true.
func Decide(in Input) Tags {
	t := Tags{{Kind: Commit, Name: in.Short}}
	switch v := VersionOf(in.GitTag); {
	case v != "":
		t = append(t, Tag{Kind: Version, Name: v})
	case len(in.Ignored) > 0:
		t = append(t, Tag{Kind: Version, Skipped: "no version git tag on HEAD, only " + strings.Join(in.Ignored, ", ") +
			"; a version tag is v and a semantic version, such as v1.4.0"})
	default:
		t = append(t, Tag{Kind: Version, Skipped: "no v* git tag on HEAD"})
	}
	if in.PushLatest {
		t = append(t, Tag{Kind: Latest, Name: "latest"})
	} else {
		t = append(t, Tag{Kind: Latest, Skipped: "PUSH_LATEST=false"})
	}
	return t
}

// VersionOf is the image version of a git tag: one leading v stripped
// ("" for ""). It is the version tag and the OCI version label.
func VersionOf(gitTag string) string {
	return strings.TrimPrefix(gitTag, "v")
}

// Get is the decision for kind.
func (t Tags) Get(kind Kind) Tag {
	for _, tag := range t {
		if tag.Kind == kind {
			return tag
		}
	}
	return Tag{Kind: kind, Skipped: "not decided"}
}

// Commit is the commit tag, which names the candidate.
func (t Tags) Commit() string { return t.Get(Commit).Name }

// Release is the pushed tags other than the commit tag (version, latest),
// which go onto the candidate once the scan gate passed.
func (t Tags) Release() []string {
	var names []string
	for _, tag := range t {
		if tag.Kind != Commit && tag.Name != "" {
			names = append(names, tag.Name)
		}
	}
	return names
}

// Names is every pushed tag, commit first.
func (t Tags) Names() []string {
	return append([]string{t.Commit()}, t.Release()...)
}

// Skips lists why each skipped tag is not pushed, e.g.
// "latest skipped: PUSH_LATEST=false".
func (t Tags) Skips() []string {
	var s []string
	for _, tag := range t {
		if tag.Name == "" {
			s = append(s, string(tag.Kind)+" skipped: "+tag.Skipped)
		}
	}
	return s
}

// Example is a decision to show in help and docs: commit 3f9c2a7b1d04,
// git tag v1.0.0, latest pushed.
func Example() Tags {
	return Decide(Input{Short: "3f9c2a7b1d04", GitTag: "v1.0.0", PushLatest: true})
}

// Rules describes the decision in one line per tag, as `mage -h push` and
// docs/pipeline.md show it; the examples are computed by Decide.
func Rules() []string {
	ex := Example()
	none := Decide(Input{Short: ex.Commit()})
	return []string{
		"commit tag: the 12-character commit hash (" + ex.Commit() + "), always pushed, first, as the candidate;",
		"version tag: the highest version git tag on HEAD (v and a semantic version) without its leading v (v1.0.0 is pushed as " + ex.Get(Version).Name +
			", also the image's version label when this run builds the image); skipped when there is none (" + none.Get(Version).Skipped + ");",
		"latest: only when PUSH_LATEST is true; skipped otherwise (" + none.Get(Latest).Skipped + ").",
	}
}
