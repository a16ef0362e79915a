package ecr

import (
	"errors"
	"fmt"
	"strings"
)

// Plan is what to do with each tag, decided before anything is pushed.
// A tag in neither Skip nor a ConflictError goes onto the released image:
// the commit tag by this build's push, the release tags by PutImage.
type Plan struct {
	Skip  map[string]string // tag -> digest: already where it should be
	Moves map[string]string // tag -> old digest, for mutable tags that move
	// Released is set when the commit was already pushed from another
	// build: the run keeps that image (and releases it under the other
	// tags) instead of pushing a rebuild (which would differ byte for byte).
	Released bool
}

// ConflictError is a tag that already names a different image in a
// repository whose tags cannot be moved.
type ConflictError struct {
	Tag, Existing, Local, Repository string
}

func (e *ConflictError) Error() string {
	if e.Local == "" {
		// Every push tags its image with the commit first: an image
		// without this commit's tag is another commit's.
		return fmt.Sprintf("tag %q in ECR repository %q already points at %s, an image without this commit's tag (another commit's); "+
			"the repository has immutable tags, so it cannot be moved (tag a new version)", e.Tag, e.Repository, e.Existing)
	}
	return fmt.Sprintf("tag %q in ECR repository %q already points at %s, but this commit's image is %s; "+
		"the repository has immutable tags, so it cannot be moved (tag a new version)",
		e.Tag, e.Repository, e.Existing, e.Local)
}

// Tags is what Decide knows of a repository: its name, whether its tags
// are immutable, and what the tags looked up point at now (Lookup).
type Tags struct {
	Repository string
	Immutable  func(tag string) bool // Registry.ImmutableTag
	Existing   map[string]string     // tag -> digest
}

// Decide compares the local image digest with what the commit tag and the
// release tags (version, latest: imagetag.Tags.Release) point at now.
//
//   - same digest: skip the tag;
//   - tag absent: publish this build under it;
//   - different digest: move the tag when tags are mutable; with immutable
//     tags, a ConflictError for every such tag, and nothing is pushed.
//
// One exception makes re-runs and releases work with builds that are not
// byte-identical (a fresh runner, "Re-run jobs"): when the commit tag
// already exists with another digest, that commit was pushed before and its
// image stands. The rebuild is not pushed (Released); the commit tag is
// skipped and the release tags, if any, go onto the pushed image.
// A version tag on yet another image is still a conflict. In a mutable
// repository a lone commit tag moves to the rebuild, as any mutable tag.
func Decide(repo Tags, local, commit string, release []string) (Plan, error) {
	repository, existing, immutable := repo.Repository, repo.Existing, repo.Immutable
	p := Plan{Skip: map[string]string{}, Moves: map[string]string{}}
	target := local
	if pushed, ok := existing[commit]; ok && !sameDigest(pushed, local) && (immutable(commit) || len(release) > 0) {
		p.Released = true
		target = pushed
	}
	var errs []error
	for _, tag := range append([]string{commit}, release...) {
		have, ok := existing[tag]
		switch {
		case ok && sameDigest(have, target):
			p.Skip[tag] = have
		case ok && immutable(tag):
			errs = append(errs, &ConflictError{Tag: tag, Existing: have, Local: target, Repository: repository})
		case ok:
			p.Moves[tag] = have
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Plan{}, err
	}
	return p, nil
}

func sameDigest(a, b string) bool {
	return a != "" && strings.EqualFold(a, b)
}
