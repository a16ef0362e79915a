// Package ci is the build pipeline: build, test and push of the sidecar
// image as Dagger pipelines, each an ordered list of named steps (Steps)
// over one run state, driven by the Mage targets in magefiles/. The
// configuration is ci/config's, read and validated before any step.
package ci

import (
	"context"
	"fmt"
	"strings"
	"time"

	"dagger.io/dagger"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/gitref"
	"github.com/example/sidecar/ci/imagetag"
	"github.com/example/sidecar/ci/secrets"
	"github.com/example/sidecar/ci/tmpdir"
)

// Step is one named stage of a pipeline. A pipeline is an ordered list of
// steps over one shared run state, after goreleaser's
// internal/pipeline/pipeline.go (an ordered []Piper, each a named Run; the
// release pipeline is the build pipeline plus its own pipes) and its
// skip-with-a-reason pipes. The same list runs the pipeline and prints
// `mage -h` (StepsHelp), so the help cannot describe another order.
type Step struct {
	Name string // as the run logs it: "scan gate"
	Doc  string // what it does, one or two sentences, for mage -h and docs
	// skip says why the step does not run this time ("VULN_CHECK=false");
	// "" or nil: it runs.
	skip func(*run) string
	do   func(context.Context, *run) error
}

// run is the state a pipeline's steps share, filled in as they go.
type run struct {
	*Runner
	target string
	client *dagger.Client // the run's one Dagger session (preflight)
	// enginePlatform is the engine's own platform (preflight).
	enginePlatform dagger.Platform
	src            source        // what the image is stamped with
	ref            gitref.Ref    // push: the commit being pushed
	tags           imagetag.Tags // push: the tags decided for it
	reg            *ecr.Registry // push: the repository, after the AWS preflight
	img            *Image        // the built image (build)
	tmp            *tmpdir.Dir   // the export's directory, removed at the end
	rel            *release      // push: what is released (release plan)
	// scrub masks the secrets the run handed the engine (the smoke
	// test's MySQL password, the ECR login's) in every step's error.
	scrub secrets.Scrubber
}

func (s *run) close() {
	if s.client != nil {
		s.client.Close()
	}
	if s.tmp != nil {
		s.tmp.Remove()
	}
}

// skipUnless skips a step, saying why, unless the setting enabled reads
// is on.
func skipUnless(enabled func(config.Config) bool, why string) func(*run) string {
	return func(s *run) string {
		if enabled(s.Config) {
			return ""
		}
		return why
	}
}

// Steps is the ordered step list of target (build, test or push): test
// is build plus the unit tests and the smoke test, push is test plus the
// release, as a push builds and tests what it releases.
func Steps(target string) []Step {
	switch target {
	case "build", "test", "push":
	default:
		return nil
	}
	steps := []Step{stepPreflight(target)}
	if target != "build" {
		steps = append(steps, stepUnitTests())
	}
	steps = append(steps, stepBuild(), stepSize(), stepExport())
	if target == "build" {
		return steps
	}
	steps = append(steps, stepSmoke())
	if target == "test" {
		return steps
	}
	return append(steps, stepReleasePlan(), stepVulncheck(), stepCandidate(),
		stepDocuments(), stepScanGate(), stepReleaseTags())
}

// StepsHelp is the steps of target as its `mage -h` text states them
// (magefiles/magefile.go; a test ties the two): the order on one line,
// then one numbered item per step.
func StepsHelp(target string) string {
	var names, items []string
	for i, s := range Steps(target) {
		names = append(names, s.Name)
		items = append(items, fmt.Sprintf("%d. %s: %s", i+1, s.Name, s.Doc))
	}
	return "Steps, in order (each logs its start and duration, or why it is skipped): " +
		strings.Join(names, " → ") + ".\n\n" + strings.Join(items, "\n")
}

// runSteps runs target's steps in order over one run state, logging each
// step's start and duration, or why it is skipped; the first error ends
// the run, named by its step.
func (r *Runner) runSteps(ctx context.Context, target string) error {
	return r.runStepList(ctx, target, Steps(target))
}

func (r *Runner) runStepList(ctx context.Context, target string, steps []Step) error {
	r.sweep(target)
	st := &run{Runner: r, target: target}
	defer st.close()
	for i, s := range steps {
		if s.skip != nil {
			if why := s.skip(st); why != "" {
				r.step("%s: [%d/%d] %s skipped (%s)", target, i+1, len(steps), s.Name, why)
				continue
			}
		}
		r.step("%s: [%d/%d] %s", target, i+1, len(steps), s.Name)
		began := time.Now()
		if err := st.scrub.Err(s.do(ctx, st)); err != nil {
			r.step("%s: %s failed after %s", target, s.Name, since(began))
			// mage prints this last, the line a CI log is read from: it
			// names the step too (the exit code still follows err's type).
			return fmt.Errorf("%s: step %q failed: %w", target, s.Name, err)
		}
		r.step("%s: %s done in %s", target, s.Name, since(began))
	}
	return nil
}

// The prefixes of a run's temporary directories (tmpdir.New): the
// secrets', the image export's and the vulnerability check's.
const (
	exportDirPrefix = "sidecar-image-"
	vulnDirPrefix   = "sidecar-vulncheck-"
)

// sweep removes the temporary directories, secrets among them, that runs
// left when they ended without their cleanup: mage's -t timeout exits
// without waiting for the target, and a kill runs no cleanup. Only those
// of runs that have ended: concurrent runs keep theirs.
func (r *Runner) sweep(target string) {
	for _, prefix := range []string{secrets.DirPrefix, exportDirPrefix, vulnDirPrefix} {
		removed, err := tmpdir.Sweep(r.tempRoot, prefix)
		if len(removed) > 0 {
			r.step("%s: removed %d temporary director(ies) left by runs that ended without their cleanup (mage -t, a kill): %s",
				target, len(removed), listSome(removed, 5))
		}
		if err != nil {
			r.step("%s: note: %v", target, err)
		}
	}
}

func since(t time.Time) string {
	return fmt.Sprintf("%.1fs", time.Since(t).Seconds())
}
