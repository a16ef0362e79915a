package ci

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/internal/testkit"
)

// TestMage compiles magefiles/ the way users run it (go vet skips the
// mage build tag), checks the listing and help, and runs the targets for
// real where they fail without an engine or AWS.
func TestMage(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("compiles the magefile")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // safety net
	defer cancel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir() // own cache: no stale compiled magefile from another checkout
	mage := func(env []string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "go", append([]string{"tool", "mage"}, args...)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), append([]string{"MAGEFILE_CACHE=" + cache}, env...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	ok := func(args ...string) string {
		out, err := mage(nil, args...)
		if err != nil {
			t.Fatalf("go tool mage %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	t.Run("list and help", func(t *testing.T) {
		list := ok("-l")
		for _, target := range []string{"build", "test", "push", "config", "lint", "bench"} {
			found := false
			for _, line := range strings.Split(list, "\n") {
				f := strings.Fields(line)
				found = found || (len(f) > 2 && f[0] == target)
			}
			if !found {
				t.Errorf("mage -l has no described %q target:\n%s", target, list)
			}
		}
		help := ok("-h", "push")
		for _, v := range []string{"AWS_REGION", "ECR_REPOSITORY", "ECR_IMMUTABLE_TAGS", "PUSH_LATEST", "AWS_ENDPOINT_URL_ECR"} {
			if !strings.Contains(help, v) {
				t.Errorf("mage -h push does not explain %s", v)
			}
		}
		all := ok("-h", "build") + ok("-h", "test") + help
		for _, v := range config.Vars() {
			if !strings.Contains(all, v.Name) {
				t.Errorf("no mage help mentions %s", v.Name)
			}
		}
	})

	for _, tc := range []struct {
		name   string
		args   []string
		env    []string
		code   int
		want   []string
		absent []string
	}{
		{"bad BENCH_ARGS exits 2 naming it", []string{"bench"}, []string{"BENCH_ARGS=-quick -rounds many"}, 2,
			[]string{`invalid value "many" for flag -rounds`, `BENCH_ARGS="-quick -rounds many": the bench refused these arguments`}, []string{"goroutine"}},
		// The workflow's first check: in seconds, before anything is
		// built or any engine, Docker or AWS is reached.
		{"config alone refuses a repository URI, exit 2", []string{"config"}, []string{"ECR_REPOSITORY=123456789012.dkr.ecr.eu-west-1.amazonaws.com/sidecar",
			"DAGGER_SESSION_PORT=" + refusedPort(t), "DAGGER_SESSION_TOKEN=x"}, 2,
			[]string{`ECR_REPOSITORY="123456789012.dkr.ecr.eu-west-1.amazonaws.com/sidecar"`, "give the name after the host", "nothing was run"}, []string{"Dagger engine", "goroutine"}},
		// A region push's preflight would refuse, refused in seconds too;
		// none set is accepted (below): build and test need none.
		{"config alone refuses a malformed AWS_REGION, exit 2", []string{"config"}, []string{"AWS_REGION=eu_west_1", "SIZE_BUDGET=huge",
			"DAGGER_SESSION_PORT=" + refusedPort(t), "DAGGER_SESSION_TOKEN=x"}, 2,
			[]string{`AWS region "eu_west_1" is not a region name`, `SIZE_BUDGET="huge"`, "nothing was run"}, []string{"Dagger engine", "goroutine", "configuration accepted"}},
		// Mage runs the targets before an unknown one: push -v would push
		// first. The magefile refuses it before any target runs.
		{"an unknown target after a known one runs nothing, exit 2", []string{"config", "-v"}, nil, 2,
			[]string{`Error: unknown target "-v" (nothing was run)`, "mage's flags (-v, -t …) go before the first target"},
			[]string{"configuration accepted", "goroutine"}},
		{"bad configuration exits 2", []string{"push"}, []string{"SIZE_BUDGET=huge", "PUSH_LATEST=perhaps"}, 2,
			[]string{`SIZE_BUDGET="huge"`, `PUSH_LATEST="perhaps"`, "nothing was run"}, []string{"AWS", "Dagger"}},
		// The typo warning comes first, without the value, and the run goes
		// on. LOCAL_IMAGE=none here and below: these are about the engine,
		// and must not depend on whether this machine runs Docker.
		{"typo of a pipeline variable is warned about", []string{"build"}, []string{"ECR_REPO=team/app", "DAGGER_SESSION_PORT=" + refusedPort(t), "DAGGER_SESSION_TOKEN=x", "LOCAL_IMAGE=none"}, 3,
			[]string{"WARNING: ECR_REPO is set but not read; did you mean ECR_REPOSITORY? ECR_REPOSITORY is unset, so ECR_REPOSITORY=sidecar applies.",
				"Dagger engine unavailable"}, []string{"team/app"}},
		// A remote engine cannot load into Docker; the load is the
		// client's, so an unreachable Docker fails first, in seconds,
		// once the engine answers (a socket that accepts).
		{"unreachable Docker fails before building", []string{"build"}, []string{"_EXPERIMENTAL_DAGGER_RUNNER_HOST=unix://" + listeningSocket(t),
			"DOCKER_HOST=unix://" + t.TempDir() + "/docker.sock", "LOCAL_IMAGE=sidecar:latest"}, 1,
			[]string{"LOCAL_IMAGE=sidecar:latest needs the local Docker", "set LOCAL_IMAGE=none"}, []string{"connecting to the Dagger engine", "goroutine"}},
		// With the engine in the local Docker and Docker down, the
		// engine is what is missing: exit 3, not the load's exit 1.
		{"Docker down exits 3 naming the engine", []string{"build"}, []string{"DOCKER_HOST=unix://" + t.TempDir() + "/docker.sock", "LOCAL_IMAGE=sidecar:latest"}, 3,
			[]string{"Dagger engine unavailable", "Docker"}, []string{"LOCAL_IMAGE=sidecar:latest needs the local Docker", "goroutine"}},
		// The error, printed last, names the step that failed.
		{"no engine exits 3", []string{"build"}, []string{"DAGGER_SESSION_PORT=" + refusedPort(t), "DAGGER_SESSION_TOKEN=x", "LOCAL_IMAGE=none"}, 3,
			[]string{`Error: build: step "preflight" failed: Dagger engine unavailable: no session listening at DAGGER_SESSION_PORT=`}, []string{"goroutine", "panic"}},
		// The region is configuration, read offline: refused before the
		// engine is looked for, as go tool mage config refuses it.
		{"push with a malformed AWS_REGION and no engine exits 2 naming the region", []string{"push"}, []string{"DAGGER_SESSION_PORT=" + refusedPort(t), "DAGGER_SESSION_TOKEN=x",
			"AWS_REGION=eu_west_1", "AWS_PROFILE=", "AWS_CONFIG_FILE=" + filepath.Join(t.TempDir(), "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(t.TempDir(), "none")}, 2,
			[]string{`AWS region "eu_west_1" is not a region name`}, []string{"Dagger engine", "goroutine", "git"}},
		// Push checks for the engine before git and AWS (the region check
		// before it is offline): an ECR endpoint that answers nothing and
		// no credentials would fail otherwise.
		{"push with no engine exits 3 before AWS", []string{"push"}, []string{"DAGGER_SESSION_PORT=" + refusedPort(t), "DAGGER_SESSION_TOKEN=x",
			"AWS_REGION=eu-west-1", "AWS_ENDPOINT_URL_ECR=http://127.0.0.1:" + refusedPort(t), "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_PROFILE=", "AWS_EC2_METADATA_DISABLED=true"}, 3,
			[]string{`Error: push: step "preflight" failed: Dagger engine unavailable: no session listening at DAGGER_SESSION_PORT=`}, []string{"goroutine", "panic", "AWS preflight", "AWS credentials", "ECR", "git"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := mage(tc.env, tc.args...)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != tc.code {
				t.Fatalf("exit: %v, want code %d\n%s", err, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(out, a) {
					t.Errorf("output has %q:\n%s", a, out)
				}
			}
			if n := strings.Count(out, "Error:"); n != 1 {
				t.Errorf("%d error messages, want 1:\n%s", n, out)
			}
		})
	}
	t.Run("config accepts a good configuration", func(t *testing.T) {
		// An engine that is not there: config must not reach it.
		out, err := mage([]string{"LOCAL_IMAGE=none", "ECR_REPOSITORY=team/sidecar", "DAGGER_SESSION_PORT=" + refusedPort(t), "DAGGER_SESSION_TOKEN=x"}, "config")
		if err != nil {
			t.Errorf("go tool mage config: %v\n%s", err, out)
		}
		// What was accepted, so a log shows which repository a run would push to.
		platforms := ""
		for _, v := range config.Vars() {
			if v.Name == "PLATFORMS" {
				platforms = v.Default
			}
		}
		if want := "configuration accepted: ECR_REPOSITORY=team/sidecar PLATFORMS=" + platforms + " "; !strings.Contains(out, want) {
			t.Errorf("go tool mage config printed no %q:\n%s", want, out)
		}
	})
	t.Run("Ctrl-C exits 130 saying so", func(t *testing.T) { testCtrlC(ctx, t, root, cache) })
	t.Run("lint vets the magefiles too", func(t *testing.T) { testLintVetsMagefiles(ctx, t, ok) })
}

// go vet ./... skips magefiles/, whose files build only with the mage
// tag: lint, which vets the module, must vet them too. The compiled
// targets run in a module whose only vet problem is in its magefile.
func testLintVetsMagefiles(ctx context.Context, t *testing.T, mage func(args ...string) string) {
	bin := filepath.Join(t.TempDir(), "mage-targets")
	mage("-compile", bin)
	dir := t.TempDir()
	for name, body := range map[string]string{
		"go.mod":                "module example.com/lintfixture\n\ngo 1.26\n",
		"lib.go":                "package lintfixture\n",
		"magefiles/magefile.go": "//go:build mage\n\npackage main\n\nimport \"fmt\"\n\n// Hello greets.\nfunc Hello() { fmt.Printf(\"%d\\n\", \"not a number\") }\n",
	} {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(ctx, bin, "lint")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitFailed {
		t.Fatalf("lint of a module whose magefile vet refuses: %v, want exit %d\n%s", err, ExitFailed, out)
	}
	if !strings.Contains(string(out), "magefile.go") {
		t.Errorf("lint does not name the magefile vet refused:\n%s", out)
	}
	// Progress: each check is named as it starts (vet takes a while).
	for _, step := range []string{"lint: go vet ./...\n", "lint: go vet -tags mage ./magefiles\n"} {
		if !strings.Contains(string(out), step) {
			t.Errorf("lint does not say %q as it starts:\n%s", step, out)
		}
	}
	if strings.Contains(string(out), "lint: clean") {
		t.Errorf("lint says clean though vet refused:\n%s", out)
	}
}

// refusedPort is testkit.RefusedPort as the string an environment variable holds.
func refusedPort(t *testing.T) string {
	t.Helper()
	return strconv.Itoa(testkit.RefusedPort(t))
}

// listeningSocket is a Unix socket that accepts connections until the test
// ends, for an engine address that must answer a dial.
func listeningSocket(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "engine.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return path
}

// The quick start runs `go tool mage test` on a laptop, often a Mac, and
// the pipeline's targets run on any laptop with Docker: every package of
// the module, tests included, and the magefile must build on macOS,
// Windows and FreeBSD (the unit-test step runs go test ./...). vet
// type-checks all of it, as go build does. Linux-only code has a
// build-tagged fallback; the bench is Linux-only and says so there.
func TestModuleBuildsOffLinux(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("type-checks the module for darwin, windows and freebsd")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("no go command to type-check the module with: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // safety net
	defer cancel()
	for _, platform := range []string{"darwin/arm64", "darwin/amd64", "windows/amd64", "freebsd/amd64"} {
		goos, goarch, _ := strings.Cut(platform, "/")
		for _, args := range [][]string{{"vet", "./..."}, {"vet", "-tags", "mage", "./magefiles"}} {
			cmd := exec.CommandContext(ctx, "go", args...)
			cmd.Dir = ".."
			cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("GOOS=%s GOARCH=%s go %s: %v\n%s", goos, goarch, strings.Join(args, " "), err, out)
			}
		}
	}
}
