//go:build mage

// Targets for building, testing and pushing the sidecar image. Run them as
// "go tool mage <target>"; "go tool mage -h <target>" explains one.
// Configuration is read from environment variables, validated before any
// work (bad values exit with code 2 and list every problem).
package main

// mage:multiline keeps the targets' help as written: the numbered steps stay
// one per line. Mage then puts the doc comments in raw strings, so they
// hold no backquotes.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/magefile/mage/mg"

	"github.com/example/sidecar/ci"
	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/imagesize"
)

// Build builds the image for linux/amd64 and linux/arm64 and checks the size budget.
//
// Steps, in order (each logs its start and duration, or why it is skipped):
// preflight → build → size → export.
//
//  1. preflight: checks that a Dagger engine answers (none: exit 3 at once),
//     then the local Docker when LOCAL_IMAGE is not none (in seconds, before
//     any build), then opens the run's one Dagger session.
//  2. build: pins the base images to digests for every platform they are used
//     on, runs the Dockerfile per platform of PLATFORMS and exports the
//     multi-platform image once as an OCI tarball.
//  3. size: measures each platform's image, compressed and uncompressed, and
//     fails naming any platform over SIZE_BUDGET; nothing has left the engine
//     yet.
//  4. export: writes the OCI tarball to OCI_TARBALL when set, and loads the
//     host platform's image into the local Docker as LOCAL_IMAGE (docker load
//     from the exported tarball, on this side, so it works with every
//     engine).
//
// Prints compressed and uncompressed sizes per platform; the host-platform
// image is loaded as sidecar:latest. Environment: PLATFORMS (default:
// linux/amd64,linux/arm64), the platforms to build; SIZE_BUDGET (default:
// 50MB), the largest uncompressed image per platform as docker images shows
// it; LOCAL_IMAGE (default: sidecar:latest), or none to skip the load;
// OCI_TARBALL (default: unset), a path to also write the OCI image to;
// GO_IMAGE (default: public.ecr.aws/docker/library/golang:1.26-alpine, the
// Dockerfile's default) and RUNTIME_IMAGE (default:
// public.ecr.aws/docker/library/alpine:3.22, the Dockerfile's default), base
// image mirrors; GOPROXY (default: https://proxy.golang.org, the
// Dockerfile's default), the Go module proxy of the image's go build;
// _EXPERIMENTAL_DAGGER_RUNNER_HOST (default: engine in local
// Docker), a remote engine; _EXPERIMENTAL_DAGGER_CLI_BIN (default:
// downloaded), an installed dagger CLI; DAGGER_SESSION_PORT and
// DAGGER_SESSION_TOKEN (default: unset), the session of a dagger run;
// DOCKER_HOST or DOCKER_CONTEXT (default: the docker CLI's current
// context), the Docker daemon that runs the engine. docs/pipeline.md lists
// them all.
func Build(ctx context.Context) error {
	r, err := runner()
	if err != nil {
		return err
	}
	return exit(ctx, r.Build(ctx))
}

// Test runs the unit tests, then smoke-tests the image against a throwaway MySQL.
//
// Steps, in order (each logs its start and duration, or why it is skipped):
// preflight → unit tests → build → size → export → smoke.
//
//  1. preflight: checks that a Dagger engine answers (none: exit 3 at once),
//     then the local Docker when LOCAL_IMAGE is not none (in seconds, before
//     any build), then opens the run's one Dagger session and checks that
//     PLATFORMS holds the engine's platform, which the smoke test runs (exit 2
//     if not).
//  2. unit tests: go test ./... on the host.
//  3. build: pins the base images to digests for every platform they are used
//     on, runs the Dockerfile per platform of PLATFORMS and exports the
//     multi-platform image once as an OCI tarball.
//  4. size: measures each platform's image, compressed and uncompressed, and
//     fails naming any platform over SIZE_BUDGET; nothing has left the engine
//     yet.
//  5. export: writes the OCI tarball to OCI_TARBALL when set, and loads the
//     host platform's image into the local Docker as LOCAL_IMAGE (docker load
//     from the exported tarball, on this side, so it works with every
//     engine).
//  6. smoke: runs the engine platform's image in proxy mode in front of a
//     throwaway MySQL (MYSQL_IMAGE) and makes a SQL round trip through it,
//     then checks UID 1000, sidecar healthcheck inside a running sidecar, and
//     that sleep mode stays up.
//
// MYSQL_IMAGE (default: public.ecr.aws/docker/library/mysql:8.4) is the
// database and client; its random root password is passed as a Dagger
// secret. UNIT_TESTS (default: true) set to false skips go test. Other
// environment as for Build.
func Test(ctx context.Context) error {
	r, err := runner()
	if err != nil {
		return err
	}
	return exit(ctx, r.Test(ctx))
}

// Push checks AWS and ECR, builds, tests and vulnerability-checks, pushes a candidate, documents it, gates on ECR's scan, then releases.
//
// Steps, in order (each logs its start and duration, or why it is skipped):
// preflight → unit tests → build → size → export → smoke →
// release plan → vulncheck → candidate → sbom+provenance → scan gate
// → release tags.
//
//  1. preflight: before any build, checks that an AWS region is set (exit
//     2), that a Dagger engine answers (none: exit 3 at once), that the worktree
//     is clean, decides the tags, probes GOVULNDB, checks the local Docker
//     when LOCAL_IMAGE is not none, opens the run's one Dagger session and
//     checks that PLATFORMS holds the engine's platform, which the smoke test
//     runs (exit 2 if not), then runs the AWS preflight (region, credentials,
//     ECR login, the repository, created when missing): last, so a run
//     refused earlier has changed nothing in AWS.
//  2. unit tests: go test ./... on the host.
//  3. build: pins the base images to digests for every platform they are used
//     on, runs the Dockerfile per platform of PLATFORMS and exports the
//     multi-platform image once as an OCI tarball.
//  4. size: measures each platform's image, compressed and uncompressed, and
//     fails naming any platform over SIZE_BUDGET; nothing has left the engine
//     yet.
//  5. export: writes the OCI tarball to OCI_TARBALL when set, and loads the
//     host platform's image into the local Docker as LOCAL_IMAGE (docker load
//     from the exported tarball, on this side, so it works with every
//     engine).
//  6. smoke: runs the engine platform's image in proxy mode in front of a
//     throwaway MySQL (MYSQL_IMAGE) and makes a SQL round trip through it,
//     then checks UID 1000, sidecar healthcheck inside a running sidecar, and
//     that sleep mode stays up.
//  7. release plan: looks up every tag in ECR and decides, for each, push,
//     move or skip (a version tag on another image in an immutable repository
//     stops here, nothing pushed); a commit already in ECR keeps its pushed
//     image, which is read back from ECR and released instead of this
//     rebuild.
//  8. vulncheck: govulncheck (binary mode, GOVULNDB) on each platform's
//     sidecar binary of the image to be released; a finding that affects it
//     stops the push, nothing pushed.
//  9. candidate: pushes the image under the commit tag only, unless the
//     commit is in ECR already; prints every reference with its digest on
//     stdout.
//  10. sbom+provenance: writes an SPDX SBOM per platform and the SLSA
//     provenance to dist/ and attaches them to the candidate as OCI
//     referrers, before the scan gate, so a candidate the gate stops is
//     documented too; a candidate already in ECR keeps the valid ones it has
//     and gets the missing ones.
//  11. scan gate: when the repository scans, waits up to SCAN_TIMEOUT for
//     ECR's scan of every platform manifest, prints counts by severity, and
//     stops on findings at or above SCAN_FAIL_ON, leaving the candidate
//     unreleased.
//  12. release tags: puts the version tag and latest on the candidate with ECR
//     PutImage (no second push); a tag already on it is skipped.
//
// AWS: AWS_REGION (default: AWS SDK chain) with AWS_PROFILE or
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or a role.
// AWS_ENDPOINT_URL_ECR (default: AWS default) overrides the ECR API
// endpoint, and AWS_ENDPOINT_URL (default: AWS default) every AWS endpoint
// push calls (a local AWS emulator), ECR's unless AWS_ENDPOINT_URL_ECR is
// set.
//
// Repository: ECR_REPOSITORY (default: sidecar) is created when missing if
// ECR_CREATE_REPOSITORY (default: true), with scan on push if
// ECR_SCAN_ON_PUSH (default: true), and with immutable tags if
// ECR_IMMUTABLE_TAGS (default: true): every tag immutable, or every tag
// but latest when PUSH_LATEST is true.
//
// Checks: VULN_CHECK (default: true) and GOVULNDB (default:
// https://vuln.go.dev) set the vulnerability check; SCAN_TIMEOUT (default:
// 10m) and SCAN_FAIL_ON (default: CRITICAL), which also takes HIGH,
// MEDIUM, LOW or none, set the scan gate.
//
// Provenance: in GitHub Actions, BUILD_WORKFLOW (default: unset), the
// reusable workflow running push (.github/workflows/pipeline.yml), is its
// builder, at the run's ref; unset, the workflow the run started with is.
//
// Tags (imagetag.Decide): commit tag: the 12-character commit hash
// (3f9c2a7b1d04), always pushed, first, as the candidate; version tag:
// the highest version git tag on HEAD (v and a semantic version) without
// its leading v (v1.0.0 is pushed as 1.0.0, also the image's version label
// when this run builds the image); skipped when there is none (no v* git
// tag on HEAD); latest: only when PUSH_LATEST is true; skipped otherwise
// (PUSH_LATEST=false). PUSH_LATEST (default: false) needs latest to be
// mutable. A tag already pointing at this image is skipped. A commit
// already in ECR keeps its pushed image and documents: the rebuild (never
// byte-identical) is not pushed. A version tag pointing at another image
// in an immutable repository is an error and nothing is pushed.
//
// Other environment as for Build and Test.
func Push(ctx context.Context) error {
	r, err := runner()
	if err != nil {
		return err
	}
	return exit(ctx, r.Push(ctx))
}

// Config checks the pipeline configuration only: exit 0 when build, test and push would accept it (printing what it accepted), 2 listing every problem.
//
// It reads and checks every variable that Build, Test and Push read, as they
// do before any step, and the AWS region push would use when one is set
// (AWS_REGION, AWS_DEFAULT_REGION or the profile's; build and test need
// none), and warns about names that look like misspelt ones; it builds
// nothing and reaches no engine, Docker or AWS. The workflow runs it before
// anything slow, so a bad ECR_REPOSITORY (a full repository URI, say) fails
// a run in seconds. go tool mage -h push and docs/pipeline.md list the
// variables.
func Config(ctx context.Context) error {
	warnTypos()
	cfg, err := ci.CheckConfig(ctx, ".", os.LookupEnv)
	if err != nil {
		return mg.Fatal(ci.ExitConfig, err)
	}
	fmt.Fprintf(os.Stderr, "configuration accepted: ECR_REPOSITORY=%s PLATFORMS=%s SIZE_BUDGET=%s\n",
		cfg.Repository, cfg.PlatformList(), imagesize.Human(cfg.SizeBudget))
	return nil
}

// Lint runs go vet and gofmt over the module, magefiles/ included.
func Lint(ctx context.Context) error {
	// Each check names itself first: vet of a cold cache takes a minute.
	lint := func(args ...string) { fmt.Fprintf(os.Stderr, "lint: %s\n", strings.Join(args, " ")) }
	for _, vet := range [][]string{
		{"go", "vet", "./..."},
		// go vet ./... leaves out these targets: they build with the mage tag only.
		{"go", "vet", "-tags", "mage", "./magefiles"},
	} {
		lint(vet...)
		if err := run(ctx, nil, vet[0], vet[1:]...); err != nil {
			return mg.Fatalf(ci.ExitFailed, "go vet: %v", err)
		}
	}
	lint("gofmt", "-l", ".")
	out, err := exec.CommandContext(ctx, "gofmt", "-l", ".").Output()
	if err != nil {
		return mg.Fatalf(ci.ExitFailed, "gofmt: %v", err)
	}
	if files := strings.TrimSpace(string(out)); files != "" {
		return mg.Fatalf(ci.ExitFailed, "gofmt needed on:\n%s", files)
	}
	fmt.Fprintln(os.Stderr, "lint: clean")
	return nil
}

// benchRefusedArgs is bench/main.go's exit code for arguments it refuses.
const benchRefusedArgs = 2

// Bench runs the benchmark program (go run ./bench), passing BENCH_ARGS and the environment through.
//
// Example: BENCH_ARGS="-quick -workloads mysql" go tool mage bench (arguments are split on spaces).
func Bench(ctx context.Context) error {
	if _, err := os.Stat("bench"); err != nil {
		return mg.Fatalf(ci.ExitFailed, "no ./bench program in this checkout: %v", err)
	}
	// Built, then run, rather than `go run`, which turns every failure into
	// exit 1: the program's own exit 2 means it refused BENCH_ARGS.
	dir, err := os.MkdirTemp("", "sidecar-bench-")
	if err != nil {
		return mg.Fatalf(ci.ExitFailed, "bench: %v", err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "bench")
	if err := run(ctx, nil, "go", "build", "-o", bin, "./bench"); err != nil {
		return mg.Fatalf(ci.ExitFailed, "bench: %v", err)
	}
	argv := os.Getenv("BENCH_ARGS")
	err = run(ctx, nil, bin, strings.Fields(argv)...)
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == benchRefusedArgs {
		return mg.Fatalf(ci.ExitConfig, "BENCH_ARGS=%q: the bench refused these arguments (its message is above); accepted: the flags that go run ./bench -h lists", argv)
	}
	if err != nil {
		return mg.Fatalf(ci.ExitFailed, "bench: %v", err)
	}
	return nil
}

// init refuses an unknown target that follows a known one before any
// target runs: mage would run those before it, then exit 2 on it, so
// go tool mage push -v would push first (ci.UnknownTargets).
func init() {
	if unknown := ci.UnknownTargets(os.Args[1:], ci.MageTargets()); len(unknown) > 0 {
		fmt.Fprintf(os.Stderr, "Error: unknown target %q (nothing was run); accepted: the targets %s (any case), one or more; mage's flags (-v, -t …) go before the first target\n",
			unknown[0], strings.Join(ci.MageTargets(), ", "))
		os.Exit(ci.ExitConfig)
	}
}

// runner loads and validates the configuration once, before any work,
// after warning about variables that look like misspelt pipeline ones.
func runner() (*ci.Runner, error) {
	warnTypos()
	cfg, err := config.Load(".", os.LookupEnv)
	if err != nil {
		return nil, mg.Fatal(ci.ExitConfig, err)
	}
	return &ci.Runner{Config: cfg, Log: os.Stderr}, nil
}

// warnTypos warns about variables that look like misspelt pipeline ones.
func warnTypos() {
	for _, w := range config.TypoWarnings(os.Environ()) {
		fmt.Fprintln(os.Stderr, w)
	}
}

// exit maps pipeline errors to exit codes (ci.ExitCode); mage prints the
// message once. Mage cancels ctx on Ctrl-C.
func exit(ctx context.Context, err error) error {
	if err = ci.Interrupted(ctx, err); err == nil {
		return nil
	}
	return mg.Fatal(ci.ExitCode(err), err)
}

func run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr, cmd.Stdin = os.Stdout, os.Stderr, os.Stdin
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}
