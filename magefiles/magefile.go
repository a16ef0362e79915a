//go:build mage

// Targets for building, testing and pushing the sidecar image. Run them as
// `go tool mage <target>`; `go tool mage -h <target>` explains one.
// Configuration is read from environment variables, validated before any
// work (bad values exit with code 2 and list every problem).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/magefile/mage/mg"

	"github.com/example/sidecar/ci"
)

// Exit codes: 1 the pipeline failed, 2 bad configuration, 3 no engine.
const (
	exitFailed   = 1
	exitConfig   = 2
	exitNoEngine = 3
)

// Build builds the image for linux/amd64 and linux/arm64 and checks the size budget.
//
// Prints compressed and uncompressed sizes per platform and fails naming the
// platform over budget; then loads the host-platform image into the local
// Docker as sidecar:latest. Environment: PLATFORMS (default:
// linux/amd64,linux/arm64), the platforms to build; SIZE_BUDGET (default:
// 50MB), the largest uncompressed image per platform as docker images shows
// it; LOCAL_IMAGE (default: sidecar:latest), or none to skip the load;
// OCI_TARBALL (default: unset), a path to also write the OCI image to;
// GO_IMAGE (default: public.ecr.aws/docker/library/golang:1.26-alpine, the
// Dockerfile's default) and RUNTIME_IMAGE (default:
// public.ecr.aws/docker/library/alpine:3.22, the Dockerfile's default), base
// image mirrors; _EXPERIMENTAL_DAGGER_RUNNER_HOST (default: engine in local
// Docker), a remote engine; _EXPERIMENTAL_DAGGER_CLI_BIN (default:
// downloaded), an installed dagger CLI; DOCKER_HOST or DOCKER_CONTEXT
// (default: the docker CLI's current context), the Docker daemon that runs
// the engine. docs/pipeline.md lists them all.
func Build(ctx context.Context) error {
	r, err := runner()
	if err != nil {
		return err
	}
	return exit(r.Build(ctx))
}

// Test runs the unit tests, then smoke-tests the image against a throwaway MySQL.
//
// Runs go test ./..., builds as Build does, then starts MySQL from
// MYSQL_IMAGE (default: public.ecr.aws/docker/library/mysql:8.4) with a
// random root password passed as a Dagger secret, the image as a service in
// proxy mode in front of it, and a SQL round trip with the mysql client
// through the sidecar. Also checks UID 1000, sidecar healthcheck inside a
// running sidecar, and that sleep mode stays up. UNIT_TESTS (default: true)
// set to false skips go test. Other environment as for Build.
func Test(ctx context.Context) error {
	r, err := runner()
	if err != nil {
		return err
	}
	return exit(r.Test(ctx))
}

// Push checks AWS and ECR, builds, tests and vulnerability-checks, pushes a candidate, gates on ECR's scan, then releases.
//
// After a check that a Dagger engine is reachable (none: exit 3 at once),
// the AWS preflight runs before any build: region and credentials,
// AWS_REGION (default: AWS SDK chain) with AWS_PROFILE or AWS_ACCESS_KEY_ID
// and AWS_SECRET_ACCESS_KEY or a role, ECR login, and the repository
// ECR_REPOSITORY (default: sidecar), created when missing if
// ECR_CREATE_REPOSITORY (default: true), with scan on push if
// ECR_SCAN_ON_PUSH (default: true) and immutable tags if ECR_IMMUTABLE_TAGS
// (default: true). AWS_ENDPOINT_URL_ECR (default: AWS default) overrides
// the ECR API endpoint. GOVULNDB (default: https://vuln.go.dev) is probed
// first too. Then Build and Test run, and if VULN_CHECK (default: true)
// govulncheck checks each platform's sidecar binary from the built image;
// nothing is pushed if any of them fails. Tags (imagetag.Decide):
// commit tag: the 12-character commit hash (3f9c2a7b1d04), always pushed,
// first, as the candidate; version tag: the v* git tag on HEAD without its
// leading v (v1.0.0 is pushed as 1.0.0, also the image's version label);
// skipped when there is none (no v* git tag on HEAD); latest: only when
// PUSH_LATEST is true; skipped otherwise (PUSH_LATEST=false). PUSH_LATEST
// (default: false) needs mutable tags. Release flow: the image is pushed
// under the commit tag only (the candidate); an SPDX SBOM per platform and
// SLSA provenance are written to dist/ and attached to the image index as
// OCI referrers; when the repository scans, push waits up to SCAN_TIMEOUT
// (default: 10m) for the scan of every platform manifest, prints counts by
// severity, and stops on findings at or above SCAN_FAIL_ON (default:
// CRITICAL), which also takes HIGH, MEDIUM, LOW or none, leaving the
// candidate unreleased; only then do the version tag and latest go onto
// the candidate with ECR PutImage. A tag already pointing at this image is
// skipped. A commit already in ECR keeps its pushed image and documents:
// the rebuild (never byte-identical) is not pushed. A version tag pointing
// at another image in an immutable repository is an error and nothing is
// pushed. Prints every reference with its digest on stdout.
// Other environment as for Build and Test.
func Push(ctx context.Context) error {
	r, err := runner()
	if err != nil {
		return err
	}
	return exit(r.Push(ctx))
}

// Lint runs go vet and gofmt over the module.
func Lint(ctx context.Context) error {
	if err := run(ctx, nil, "go", "vet", "./..."); err != nil {
		return mg.Fatalf(exitFailed, "go vet: %v", err)
	}
	out, err := exec.CommandContext(ctx, "gofmt", "-l", ".").Output()
	if err != nil {
		return mg.Fatalf(exitFailed, "gofmt: %v", err)
	}
	if files := strings.TrimSpace(string(out)); files != "" {
		return mg.Fatalf(exitFailed, "gofmt needed on:\n%s", files)
	}
	return nil
}

// Bench runs the benchmark program (go run ./bench), passing BENCH_ARGS and the environment through.
//
// Example: BENCH_ARGS="-quick -workloads mysql" go tool mage bench (arguments are split on spaces).
func Bench(ctx context.Context) error {
	if _, err := os.Stat("bench"); err != nil {
		return mg.Fatalf(exitFailed, "no ./bench program in this checkout: %v", err)
	}
	args := append([]string{"run", "./bench"}, strings.Fields(os.Getenv("BENCH_ARGS"))...)
	if err := run(ctx, nil, "go", args...); err != nil {
		return mg.Fatalf(exitFailed, "bench: %v", err)
	}
	return nil
}

// runner loads and validates the configuration once, before any work,
// after warning about variables that look like misspelt pipeline ones.
func runner() (*ci.Runner, error) {
	for _, w := range ci.TypoWarnings(os.Environ()) {
		fmt.Fprintln(os.Stderr, w)
	}
	cfg, err := ci.LoadConfig(".", os.LookupEnv)
	if err != nil {
		return nil, mg.Fatal(exitConfig, err)
	}
	return &ci.Runner{Config: cfg, Log: os.Stderr}, nil
}

// exit maps pipeline errors to exit codes; mage prints the message once.
func exit(err error) error {
	if err == nil {
		return nil
	}
	var ee *ci.EngineError
	if errors.As(err, &ee) {
		return mg.Fatal(exitNoEngine, err)
	}
	return mg.Fatal(exitFailed, err)
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
