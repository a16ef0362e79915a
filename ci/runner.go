package ci

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"dagger.io/dagger"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/example/sidecar/ci/dockerload"
	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/gitref"
	"github.com/example/sidecar/ci/imagetag"
)

// Runner runs the pipelines. Each entry point (Build, Test, Push) opens
// one Dagger session for the whole run.
type Runner struct {
	Config Config
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
	// lookupEnv reads the CI's variables for the provenance (GitHub
	// Actions); os.LookupEnv when nil.
	lookupEnv func(string) (string, bool)
	// loadImage and pingDocker reach the local Docker for LOCAL_IMAGE
	// (dockerload.Load and dockerload.Ping when nil); pipeline tests, whose
	// images are not runnable, record the load instead.
	loadImage  func(ctx context.Context, idx v1.ImageIndex, platform, name string) error
	pingDocker func(ctx context.Context) error
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
	r.step("%s: checking the local Docker for LOCAL_IMAGE=%s", target, r.Config.LocalImage)
	ping := r.pingDocker
	if ping == nil {
		ping = dockerload.Ping
	}
	if err := ping(ctx); err != nil {
		return fmt.Errorf("LOCAL_IMAGE=%s needs the local Docker, which is not reachable through %s (nothing was built): %w; "+
			"start Docker, or set LOCAL_IMAGE=none to skip the load", r.Config.LocalImage, dockerTarget(os.LookupEnv), err)
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

// step prints one progress line, with the time since the run started.
func (r *Runner) step(format string, args ...any) {
	if r.start.IsZero() {
		r.start = time.Now()
	}
	fmt.Fprintf(r.log(), "==> %s (%.1fs)\n", fmt.Sprintf(format, args...), time.Since(r.start).Seconds())
}

// Build builds every platform, checks the size budget and loads the
// host-platform image into the local Docker.
func (r *Runner) Build(ctx context.Context) error {
	return r.withEngine(ctx, "build", func(client *dagger.Client) error {
		_, err := r.build(ctx, client, r.source(ctx))
		return err
	})
}

// Test runs the unit tests, then builds the image and smoke-tests it
// against a throwaway MySQL.
func (r *Runner) Test(ctx context.Context) error {
	// Engine first: a missing engine must fail in seconds, not after the
	// unit tests.
	return r.withEngine(ctx, "test", func(client *dagger.Client) error {
		if err := r.goTest(ctx); err != nil {
			return err
		}
		img, err := r.build(ctx, client, r.source(ctx))
		if err != nil {
			return err
		}
		return r.smoke(ctx, client, img)
	})
}

// Push checks AWS and ECR first (before any build), then builds, tests,
// and publishes the multi-platform image under the commit tag (plus the
// version tag on a v* tagged HEAD, plus latest when asked for).
func (r *Runner) Push(ctx context.Context) error {
	// Engine first, as for Test: with no engine the run must end in
	// seconds naming Dagger, not after AWS calls and a credential wait.
	// The probe builds nothing, so the preflight still precedes any build.
	r.step("push: checking for a Dagger engine")
	if err := probeEngine(ctx); err != nil {
		return err
	}
	r.step("push: reading git state")
	ref, err := gitref.Read(ctx, r.Config.Dir)
	if err != nil {
		return fmt.Errorf("push needs the source in a git repository (tags come from the commit): %w", err)
	}
	if ref.Dirty {
		return fmt.Errorf("push: the worktree has uncommitted changes to tracked files; the image would not match commit %s — commit or stash them first", ref.Short)
	}
	tags := imagetag.Decide(imagetag.Input{Short: ref.Short, GitTag: ref.GitTag, PushLatest: r.Config.PushLatest})
	for _, skip := range tags.Skips() {
		r.step("push: %s", skip)
	}
	if err := r.probeVulnDB(ctx); err != nil {
		return err
	}

	r.step("push: AWS preflight (region, credentials, ECR login, repository %q)", r.Config.Repository)
	reg, err := ecr.Preflight(ctx, ecr.Options{
		Repository:    r.Config.Repository,
		Create:        r.Config.CreateRepository,
		ScanOnPush:    r.Config.ScanOnPush,
		ImmutableTags: r.Config.ImmutableTags,
		Log:           r.log(),
	})
	if err != nil {
		return err
	}
	if reg.Created {
		r.step("push: created ECR repository %s", reg)
	} else {
		r.step("push: using ECR repository %s", reg)
	}
	if r.Config.PushLatest && reg.Immutable {
		return fmt.Errorf("PUSH_LATEST=true but ECR repository %q has immutable tags, so latest could be pushed only once: use a mutable repository or drop PUSH_LATEST", reg.Repository)
	}

	return r.withEngine(ctx, "push", func(client *dagger.Client) error {
		if err := r.goTest(ctx); err != nil {
			return err
		}
		img, err := r.build(ctx, client, sourceOf(ref))
		if err != nil {
			return err
		}
		if err := r.smoke(ctx, client, img); err != nil {
			return err
		}
		// The vulnerability check is publish's: it checks the image that
		// is released, which is not this build when the commit is in ECR.
		return r.publish(ctx, client, img, reg, tags, sourceOf(ref))
	})
}

// withEngine opens the run's one Dagger session, runs the pipeline in it
// and closes it, whatever the pipeline returned.
func (r *Runner) withEngine(ctx context.Context, target string, pipeline func(client *dagger.Client) error) error {
	if err := r.checkLocalDocker(ctx, target); err != nil {
		return err
	}
	r.step("%s: connecting to the Dagger engine", target)
	client, err := Connect(ctx, r.log())
	if err != nil {
		return err
	}
	defer client.Close()
	return pipeline(client)
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

func (r *Runner) source(ctx context.Context) source {
	ref, err := gitref.Read(ctx, r.Config.Dir)
	if err != nil {
		r.step("note: no git metadata (%v); image labels use the Dockerfile defaults", err)
		return source{}
	}
	return sourceOf(ref)
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
	if ref.Dirty {
		s.revision += "-dirty"
	}
	return s
}

func (r *Runner) goTest(ctx context.Context) error {
	if !r.Config.UnitTests {
		r.step("test: go test ./... skipped (UNIT_TESTS=false)")
		return nil
	}
	r.step("test: go test ./...")
	run := r.GoTest
	if run == nil {
		run = goTestHost
	}
	if err := run(ctx, r.Config.Dir, r.log()); err != nil {
		return fmt.Errorf("unit tests failed (go test ./...): %w", err)
	}
	return nil
}

func goTestHost(ctx context.Context, dir string, log io.Writer) error {
	cmd := exec.CommandContext(ctx, "go", "test", "./...")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	return cmd.Run()
}
