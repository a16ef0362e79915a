package ecr

import (
	"errors"
	"fmt"
	"strings"
)

// Plan is what to do with each tag, decided before anything is pushed.
type Plan struct {
	Publish []string          // tags to push (absent, or mutable and moving)
	Skip    map[string]string // tag -> digest: already there with our digest
	Moves   map[string]string // tag -> old digest, for mutable tags that move
}

// ConflictError is a tag that already names a different image in a
// repository whose tags cannot be moved.
type ConflictError struct {
	Tag, Existing, Local, Repository string
}

func (e *ConflictError) Error() string {
	if e.Local == "" {
		return fmt.Sprintf("tag %q in ECR repository %q already points at %s and this build's digest is unknown; "+
			"the repository has immutable tags, so it cannot be moved", e.Tag, e.Repository, e.Existing)
	}
	return fmt.Sprintf("tag %q in ECR repository %q already points at %s, but this build is %s; "+
		"the repository has immutable tags, so it cannot be moved (tag a new version, or rebuild with the engine cache that produced the pushed image)",
		e.Tag, e.Repository, e.Existing, e.Local)
}

// Decide compares the local image digest with what the tags point at now.
// Same digest: skip. Absent: publish. Different: publish when tags are
// mutable, otherwise a ConflictError for every such tag (nothing pushed).
func Decide(repository, local string, tags []string, existing map[string]string, immutable bool) (Plan, error) {
	p := Plan{Skip: map[string]string{}, Moves: map[string]string{}}
	var errs []error
	for _, tag := range tags {
		have, ok := existing[tag]
		switch {
		case !ok:
			p.Publish = append(p.Publish, tag)
		case sameDigest(have, local):
			p.Skip[tag] = have
		case immutable:
			errs = append(errs, &ConflictError{Tag: tag, Existing: have, Local: local, Repository: repository})
		default:
			p.Publish = append(p.Publish, tag)
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
