package ci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"dagger.io/dagger"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/dockerload"
	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/engine"
	"github.com/example/sidecar/ci/gitref"
	"github.com/example/sidecar/ci/imagetag"
)

// Runner runs the pipelines. Each entry point (Build, Test, Push) opens
// one Dagger session for the whole run.
type Runner struct {
	Config config.Config
	// Log receives engine progress and the pipeline's own step lines;
	// os.Stderr when nil.
	Log io.Writer
	// Out receives the results (pushed references with digests), one per
	// line, for scripts; os.Stdout when nil.
	Out io.Writer
	// GoTest runs the unit tests on the host; `go test ./...` in
	// Config.Dir when nil. (Tests replace it: they are already inside it.)
	GoTest func(ctx context.Context, dir string, log io.Writer) error

	start time.Time
	// scanPoll and scanProgress pace the ECR scan wait (ecr.WaitOptions
	// defaults when zero); tests shorten them.
	scanPoll, scanProgress time.Duration
	// awsProgress is how often a wait on an AWS call says what it waits
	// for (ecr.ProgressEvery when zero); tests shorten it.
	awsProgress time.Duration
	// engineAnswer and engineProgress pace the wait for the session's
	// first answer (engine.AnswerBound and AnswerProgress when zero);
	// tests shorten them.
	engineAnswer, engineProgress time.Duration
	// registryBound bounds each wait on the registry's HTTP API
	// (ecr.RegistryBound when zero); tests shorten it.
	registryBound time.Duration
	// smokeBound and smokeProgress pace the smoke test's SQL round trip
	// (SmokeSQLBound and SmokeProgress when zero); tests shorten them.
	smokeBound, smokeProgress time.Duration
	// tempRoot is where the run sweeps the temporary directories of
	// ended runs (os.TempDir() when ""); a test gives it its own.
	tempRoot string
	// lookupEnv reads the variables the run reads besides Config's: the
	// engine's (DAGGER_SESSION_PORT, _EXPERIMENTAL_DAGGER_RUNNER_HOST,
	// DOCKER_HOST), AWS's (ecr.Options.Env) and the CI's for the
	// provenance (GitHub Actions); os.LookupEnv when nil.
	lookupEnv func(string) (string, bool)
	// loadImage and pingDocker reach the local Docker for LOCAL_IMAGE
	// (dockerload.Load and dockerload.Ping when nil); pipeline tests, whose
	// images are not runnable, record the load instead.
	loadImage  func(ctx context.Context, idx v1.ImageIndex, platform, name string) error
	pingDocker func(ctx context.Context) error
	// sessionOpts are extra Dagger SDK options for the session: tests
	// pass their recording session's connection (dagger.WithConn), which
	// lookupEnv's DAGGER_SESSION_PORT names, so they need not set the
	// process environment and can run in parallel.
	sessionOpts []dagger.ClientOpt
}

func (r *Runner) loader() func(ctx context.Context, idx v1.ImageIndex, platform, name string) error {
	if r.loadImage == nil {
		return dockerload.Load
	}
	return r.loadImage
}

// checkLocalDocker fails in seconds, before any build, when LOCAL_IMAGE
// asks for a load into a Docker that does not answer.
func (r *Runner) checkLocalDocker(ctx context.Context, target string) error {
	if r.Config.LocalImage == "" {
		return nil
	}
	image := config.Shown("LOCAL_IMAGE", r.Config.LocalImage)
	r.step("%s: checking the local Docker for LOCAL_IMAGE=%s", target, image)
	ping := r.pingDocker
	if ping == nil {
		ping = dockerload.Ping
	}
	if err := ping(ctx); err != nil {
		return fmt.Errorf("LOCAL_IMAGE=%s needs the local Docker, which is not reachable through %s (nothing was built): %w; "+
			"start Docker, or set LOCAL_IMAGE=none to skip the load", image, engine.DockerTarget(r.env()), err)
	}
	return nil
}

func (r *Runner) log() io.Writer {
	if r.Log == nil {
		return os.Stderr
	}
	return r.Log
}

func (r *Runner) out() io.Writer {
	if r.Out == nil {
		return os.Stdout
	}
	return r.Out
}

// onRegistry runs fn, a wait on the registry (what says which), bounded
// and with progress lines as the ECR API calls are (ecr.Watch).
func (r *Runner) onRegistry(ctx context.Context, what string, fn func(context.Context) error) error {
	return ecr.Watch(ctx, ecr.Wait{Report: func(line string) { r.step("push: %s", line) }, What: what, Bound: r.registryBound, Every: r.awsProgress}, fn)
}

// step prints one progress line, with the time since the run started.
func (r *Runner) step(format string, args ...any) {
	if r.start.IsZero() {
		r.start = time.Now()
	}
	fmt.Fprintf(r.log(), "==> %s (%.1fs)\n", fmt.Sprintf(format, args...), time.Since(r.start).Seconds())
}

// Build builds every platform, checks the size budget and loads the
// host-platform image into the local Docker: Steps("build").
func (r *Runner) Build(ctx context.Context) error { return r.runSteps(ctx, "build") }

// Test runs the unit tests, then builds the image and smoke-tests it
// against a throwaway MySQL: Steps("test").
func (r *Runner) Test(ctx context.Context) error { return r.runSteps(ctx, "test") }

// Push checks AWS and ECR first (before any build), then builds, tests,
// and publishes the multi-platform image under the commit tag (plus the
// version tag on a v* tagged HEAD, plus latest when asked for):
// Steps("push").
func (r *Runner) Push(ctx context.Context) error { return r.runSteps(ctx, "push") }

func stepPreflight(target string) Step {
	doc := "checks that a Dagger engine answers (none: exit 3 at once), then the local Docker when LOCAL_IMAGE is not none (in seconds, before any build), then opens the run's one Dagger session"
	if target == "push" {
		doc = "before any build, checks that an AWS region is set (exit 2), that a Dagger engine answers (none: exit 3 at once), that the worktree is clean, " +
			"decides the tags, probes GOVULNDB, checks the local Docker when LOCAL_IMAGE is not none, " +
			"opens the run's one Dagger session and checks that PLATFORMS holds the engine's platform, which the smoke test runs (exit 2 if not), " +
			"then runs the AWS preflight (region, credentials, ECR login, the repository, created when missing): last, so a run refused earlier has changed nothing in AWS."
	} else if target == "build" {
		doc += "."
	} else {
		doc += " and checks that PLATFORMS holds the engine's platform, which the smoke test runs (exit 2 if not)."
	}
	return Step{Name: "preflight", Doc: doc, do: func(ctx context.Context, s *run) error {
		if target == "push" {
			// Configuration, read offline (as mage config reads it): exit 2
			// whatever the engine's state. The rest of the AWS preflight
			// comes last (below).
			s.step("push: checking the AWS region")
			if err := ecr.CheckRegion(ctx, s.lookupEnv, true); err != nil {
				return err
			}
		}
		// The engine next: with none, the run ends in seconds naming
		// Dagger, not after AWS calls and a credential wait (the probe
		// builds nothing); with Docker down that is what is missing
		// (exit 3), not only the local load.
		s.step("%s: checking for a Dagger engine", target)
		if err := engine.Probe(ctx, s.env()); err != nil {
			return err
		}
		if target == "push" {
			if err := s.pushPreflight(ctx); err != nil {
				return err
			}
		} else {
			s.src = s.source(ctx)
		}
		if err := s.checkLocalDocker(ctx, target); err != nil {
			return err
		}
		if err := s.connect(ctx, target); err != nil {
			return err
		}
		if target == "push" {
			// Last: it may create the repository.
			return s.awsPreflight(ctx)
		}
		return nil
	}}
}

// connect opens the run's one Dagger session and, unless only building,
// checks that the smoke test can run on the engine's platform.
func (s *run) connect(ctx context.Context, target string) error {
	s.step("%s: connecting to the Dagger engine", target)
	client, err := engine.ConnectEnv(ctx, s.log(), s.env(), s.sessionOpts...)
	if err != nil {
		return err
	}
	s.client = client
	wait := engine.Wait{Report: func(line string) { s.step("%s: %s", target, line) }, Bound: s.engineAnswer, Every: s.engineProgress}
	if s.enginePlatform, err = engine.Platform(ctx, client, s.env(), wait); err != nil {
		var ee *engine.Error
		if errors.As(err, &ee) {
			return err
		}
		return fmt.Errorf("ask the engine for its platform: %w", err)
	}
	if target != "build" && !slices.Contains(s.Config.Platforms, s.enginePlatform) {
		// Found here, not at the smoke step after the unit tests and
		// the build: a shared remote engine of another architecture.
		return &config.Error{Problems: []string{fmt.Sprintf("PLATFORMS=%q: the engine runs %s, which the smoke test runs natively; "+
			"want a list that includes %s (or use an engine of this list's platforms)", s.Config.PlatformList(), s.enginePlatform, s.enginePlatform)}}
	}
	return nil
}

// pushPreflight is what push checks after the engine probe and before
// the engine session: git, the tags and GOVULNDB.
func (s *run) pushPreflight(ctx context.Context) error {
	s.step("push: reading git state")
	ref, err := gitref.Read(ctx, s.Config.Dir)
	var badTag *gitref.BadTagError
	if errors.As(err, &badTag) {
		return &config.Error{Problems: []string{badTag.Error()}}
	}
	if err != nil {
		return fmt.Errorf("push needs the source in a git repository (tags come from the commit): %w", err)
	}
	if ref.Dirty() {
		return fmt.Errorf("the worktree has uncommitted changes to tracked files (%s); the image would not match commit %s — commit or stash them first",
			listSome(ref.Changed, 5), ref.Short)
	}
	s.ref, s.src = ref, sourceOf(ref)
	if n := len(ref.Untracked); n > 0 {
		s.step("push: leaving %d untracked path(s) out of the build, so the image is commit %s's: %s", n, ref.Short, listSome(ref.Untracked, 5))
	}
	s.tags = imagetag.Decide(imagetag.Input{Short: ref.Short, GitTag: ref.GitTag, Ignored: ref.Ignored, PushLatest: s.Config.PushLatest})
	for _, skip := range s.tags.Skips() {
		s.step("push: %s", skip)
	}
	return s.probeVulnDB(ctx)
}

func (s *run) awsPreflight(ctx context.Context) error {
	s.step("push: AWS preflight (region, credentials, ECR login, repository %q)", s.Config.Repository)
	reg, err := ecr.Preflight(ctx, ecr.Options{
		Repository:    s.Config.Repository,
		Create:        s.Config.CreateRepository,
		ScanOnPush:    s.Config.ScanOnPush,
		ImmutableTags: s.Config.ImmutableTags,
		PushLatest:    s.Config.PushLatest,
		Log:           s.log(),
		Report:        func(line string) { s.step("push: %s", line) },
		ProgressEvery: s.awsProgress,
		Env:           s.lookupEnv, // nil: the SDK reads the process environment
	})
	if err != nil {
		return err
	}
	s.scrub.Add(reg.Password()) // the push hands it to the engine (pushCandidate)
	if reg.Created {
		s.step("push: created ECR repository %s", reg)
	} else {
		s.step("push: using ECR repository %s", reg)
	}
	if s.Config.PushLatest && reg.ImmutableTag("latest") {
		// A setting at odds with the repository: configuration (exit 2).
		return &ecr.PreflightError{Problems: []string{fmt.Sprintf("PUSH_LATEST=true but ECR repository %q has immutable tags, so latest could be pushed only once: exclude latest from immutability (IMMUTABLE_WITH_EXCLUSION with the filter latest), use a mutable repository, or drop PUSH_LATEST", reg.Repository)}}
	}
	s.reg = reg
	return s.earlyConflicts(ctx)
}

// earlyConflicts refuses, before any build, a release tag that names
// another image in an immutable repository. Every push tags its image
// with the commit first, so a version tag on an image that does not carry
// this commit's tag is another commit's: no build of this one can match it.
func (s *run) earlyConflicts(ctx context.Context) error {
	reg := s.reg
	if !slices.ContainsFunc(s.tags.Release(), reg.ImmutableTag) {
		return nil
	}
	existing, err := reg.Lookup(ctx, s.tags.Names())
	if err != nil {
		return err
	}
	if _, err := ecr.Decide(ecr.Tags{Repository: reg.Repository, Immutable: reg.ImmutableTag, Existing: existing}, "", s.tags.Commit(), s.tags.Release()); err != nil {
		return fmt.Errorf("push refused (nothing built or pushed): %w", err)
	}
	return nil
}

// source is what the image is stamped with (VERSION, REVISION, CREATED
// build args). Outside a git checkout the Dockerfile defaults stand.
type source struct {
	gitTag   string    // the v* git tag on HEAD, "" when none
	version  string    // imagetag.VersionOf(gitTag), or "dev"
	revision string    // commit hash, "-dirty" when the worktree is
	created  time.Time // commit time; zero = unknown
}

// createdArg is the CREATED build arg: RFC 3339, "" when unknown (the
// Dockerfile's default then).
func (s source) createdArg() string {
	if s.created.IsZero() {
		return ""
	}
	return s.created.UTC().Format(time.RFC3339)
}

func (s *run) source(ctx context.Context) source {
	ref, err := gitref.Read(ctx, s.Config.Dir)
	var badTag *gitref.BadTagError
	if errors.As(err, &badTag) {
		s.step("%s: note: %v; this build's version is dev", s.target, badTag)
	} else if err != nil {
		s.step("%s: note: no git metadata (%v); image labels use the Dockerfile defaults", s.target, err)
		return source{}
	}
	src := sourceOf(ref)
	if len(ref.Untracked) > 0 && !ref.Dirty() {
		// A local build takes the worktree as it is, untracked files
		// too (push leaves them out): not the commit alone.
		src.revision += "-dirty"
	}
	return src
}

func sourceOf(ref gitref.Ref) source {
	s := source{
		gitTag:   ref.GitTag,
		version:  imagetag.VersionOf(ref.GitTag),
		revision: ref.Commit,
		created:  ref.Time,
	}
	if s.version == "" {
		s.version = "dev"
	}
	if ref.Dirty() {
		s.revision += "-dirty"
	}
	return s
}

func stepUnitTests() Step {
	return Step{Name: "unit tests", Doc: "go test ./... on the host.",
		skip: skipUnless(func(c config.Config) bool { return c.UnitTests }, "UNIT_TESTS=false"),
		do: func(ctx context.Context, s *run) error {
			run := s.GoTest
			if run == nil {
				run = goTestHost
			}
			if err := run(ctx, s.Config.Dir, s.log()); err != nil {
				return fmt.Errorf("unit tests failed (go test ./...): %w", err)
			}
			return nil
		}}
}

func goTestHost(ctx context.Context, dir string, log io.Writer) error {
	cmd := exec.CommandContext(ctx, "go", "test", "./...")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	return cmd.Run()
}

// listSome joins the first n of items, saying how many more there are.
func listSome(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}
