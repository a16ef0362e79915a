package imagetest

import (
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/imagesize"
)

// defaultSizeBudget is the pipeline's default SIZE_BUDGET (its one owner is
// config.Vars): the largest allowed image, uncompressed as `docker images`
// reports it.
func defaultSizeBudget(t *testing.T) string {
	t.Helper()
	for _, v := range config.Vars() {
		if v.Name == "SIZE_BUDGET" {
			return v.Default
		}
	}
	t.Fatal("config.Vars has no SIZE_BUDGET")
	return ""
}

// sizeBudget reads SIZE_BUDGET as the pipeline does, so both check the same
// limit.
func sizeBudget(t *testing.T) int64 {
	t.Helper()
	v := os.Getenv("SIZE_BUDGET")
	if v == "" {
		v = defaultSizeBudget(t)
	}
	n, err := imagesize.ParseSize(v)
	if err != nil {
		t.Fatalf("SIZE_BUDGET: %v", err)
	}
	return n
}

// Build args the tests stamp into the image; fixed so repeated runs reuse
// the build cache.
const (
	testVersion  = "v0.0.0-imagetest"
	testRevision = "0123456789abcdef0123456789abcdef01234567"
	testCreated  = "2026-01-02T03:04:05Z"
)

// builtImage is the image built from the repository's Dockerfile.
type builtImage struct {
	ref  string
	base string // the RUNTIME_IMAGE it was built on
}

// TestImage builds the real Dockerfile once on the stand-in bases and runs
// the image the way ECS does.
func TestImage(t *testing.T) {
	d := requireDocker(t)
	s := ensureStandins(t, d)
	img := buildImage(t, d, s)

	t.Run("metadata", func(t *testing.T) { t.Parallel(); testMetadata(t, d, img) })
	t.Run("size", func(t *testing.T) { t.Parallel(); testSize(t, d, img) })
	t.Run("user", func(t *testing.T) { t.Parallel(); testUser(t, d, img) })
	t.Run("binary", func(t *testing.T) { t.Parallel(); testBinary(t, d, img) })
	t.Run("cross-compile", func(t *testing.T) { t.Parallel(); testCrossCompile(t, d, s) })
	t.Run("build-context", func(t *testing.T) { t.Parallel(); testBuildContext(t, d, s) })
	t.Run("reproducible-layers", func(t *testing.T) { t.Parallel(); testReproducibleLayers(t, d, s, img) })
	t.Run("proxy", func(t *testing.T) { t.Parallel(); testProxy(t, d, img) })
	t.Run("drain", func(t *testing.T) { t.Parallel(); testDrain(t, d, img) })
	t.Run("sleep", func(t *testing.T) { t.Parallel(); testSleep(t, d, img) })
	t.Run("bad-env", func(t *testing.T) { t.Parallel(); testBadEnv(t, d, img) })
}

// repoRoot is the directory holding go.mod and the Dockerfile.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

// dockerBuild runs `docker build` of the repository's unchanged Dockerfile
// with the stand-ins as GO_IMAGE and RUNTIME_IMAGE. RUN steps reach only a
// Go module proxy on loopback (moduleProxy): the build needs nothing else.
func dockerBuild(t testing.TB, d docker, s standins, tag string, extra ...string) {
	t.Helper()
	args := dockerBuildArgs(t, s, tag, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := d.combined(ctx, args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, tail(out, 60))
	}
	t.Cleanup(func() { _, _ = d.output(context.Background(), "rmi", tag) })
	t.Logf("docker build %s: %v", tag, time.Since(start).Round(10*time.Millisecond))
}

// dockerBuildArgs are dockerBuild's arguments to docker.
func dockerBuildArgs(t testing.TB, s standins, tag string, extra ...string) []string {
	t.Helper()
	args := []string{"build", "--progress=plain", "--network=host", "--build-arg", "GOPROXY=" + moduleProxy(t),
		"--build-arg", "GO_IMAGE=" + s.Go, "--build-arg", "RUNTIME_IMAGE=" + s.Runtime,
		"--build-arg", "VERSION=" + testVersion, "--build-arg", "REVISION=" + testRevision,
		"--build-arg", "CREATED=" + testCreated, "-t", tag}
	return append(append(args, extra...), repoRoot(t))
}

func buildImage(t *testing.T, d docker, s standins) builtImage {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	img := builtImage{ref: "sidecar-imagetest:" + hex.EncodeToString(b), base: s.Runtime}
	dockerBuild(t, d, s, img.ref)
	return img
}

// imageConfig is the part of `docker image inspect` the tests check.
type imageConfig struct {
	Size   int64
	Config struct {
		User         string
		Entrypoint   []string
		Cmd          []string
		Labels       map[string]string
		StopSignal   string
		ExposedPorts map[string]struct{}
		Healthcheck  *struct{ Test []string }
	}
}

func inspectImage(t testing.TB, d docker, ref string) imageConfig {
	t.Helper()
	var got []imageConfig
	if err := json.Unmarshal([]byte(d.must(t, "image", "inspect", ref)), &got); err != nil || len(got) != 1 {
		t.Fatalf("docker image inspect %s: %v (%d results)", ref, err, len(got))
	}
	return got[0]
}

func testMetadata(t *testing.T, d docker, img builtImage) {
	c := inspectImage(t, d, img.ref).Config
	for _, tc := range []struct {
		what      string
		got, want any
	}{
		{"entrypoint", c.Entrypoint, []string{"/usr/local/bin/sidecar"}},
		{"cmd", c.Cmd, []string(nil)},
		{"user", c.User, "1000:1000"},
		{"stop signal", c.StopSignal, "SIGTERM"},
		{"exposed ports", c.ExposedPorts, map[string]struct{}{"8080/tcp": {}}},
		{"healthcheck", c.Healthcheck, &struct{ Test []string }{[]string{"CMD", "/usr/local/bin/sidecar", "healthcheck"}}},
		{"label source (only the pipeline sets it, from the real repository)", c.Labels["org.opencontainers.image.source"], ""},
		{"label version", c.Labels["org.opencontainers.image.version"], testVersion},
		{"label revision", c.Labels["org.opencontainers.image.revision"], testRevision},
		{"label created", c.Labels["org.opencontainers.image.created"], testCreated},
		{"label title", c.Labels["org.opencontainers.image.title"], "sidecar"},
	} {
		if fmt.Sprint(tc.got) != fmt.Sprint(tc.want) {
			t.Errorf("%s = %v, want %v", tc.what, tc.got, tc.want)
		}
	}
	if c.Labels["org.opencontainers.image.description"] == "" {
		t.Error("label org.opencontainers.image.description is empty")
	}
}

func testSize(t *testing.T, d docker, img builtImage) {
	budget := sizeBudget(t)
	size := inspectImage(t, d, img.ref).Size
	base := inspectImage(t, d, img.base).Size
	t.Logf("image %s: %.2f MB uncompressed (budget %s); adds %.2f MB over its base %s (%.2f MB)",
		img.ref, mb(size), imagesize.Human(budget), mb(size-base), img.base, mb(base))
	if size > budget {
		t.Errorf("image is %d bytes (%.2f MB), over the budget of %s (SIZE_BUDGET)", size, mb(size), imagesize.Human(budget))
	}
}

func mb(n int64) float64 { return float64(n) / 1e6 }

// testUser checks who the container runs as and that ECS Exec finds a shell
// and nc.
func testUser(t *testing.T, d docker, img builtImage) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"id", []string{"--entrypoint", "id", img.ref}, "uid=1000(sidecar) gid=1000(sidecar) groups=1000(sidecar)"},
		{"passwd", []string{"--entrypoint", "grep", img.ref, "^sidecar:", "/etc/passwd"}, "sidecar:x:1000:1000:Linux User,,,:/nonexistent:/sbin/nologin"},
		{"shell and nc", []string{"--entrypoint", "sh", img.ref, "-c", "which sh nc && echo shell ok"}, "/bin/sh\n/usr/bin/nc\nshell ok"},
		{"binary owned by root, not writable by the user", []string{"--entrypoint", "stat", img.ref, "-c", "%U %a", "/usr/local/bin/sidecar"}, "root 755"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := d.must(t, append([]string{"run", "--rm", "--network", "host", "--name", containerName(t)}, tc.args...)...)
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// testBinary checks the stamped version and that the binary is static,
// without DWARF but with its symbol table, copied out of the image.
func testBinary(t *testing.T, d docker, img builtImage) {
	out := d.must(t, "run", "--rm", "--network", "host", "--name", containerName(t), img.ref, "version")
	for _, want := range []string{testVersion, testRevision} {
		if !strings.Contains(out, want) {
			t.Errorf("sidecar version = %q, want it to contain %q", out, want)
		}
	}
	f := copyBinary(t, d, img.ref, "/usr/local/bin/sidecar")
	if want := elfMachine(runtime.GOARCH); f.Machine != want {
		t.Errorf("binary for the host's platform is %v, want %v", f.Machine, want)
	}
	checkStaticSymbols(t, f)
}

// elfMachine maps the architectures Fargate runs to their ELF machines.
func elfMachine(goarch string) elf.Machine {
	switch goarch {
	case "amd64":
		return elf.EM_X86_64
	case "arm64":
		return elf.EM_AARCH64
	}
	return elf.EM_NONE
}

// testCrossCompile builds only the Dockerfile's build stage for the other
// Fargate platform and checks the binary: cross-compiled on the build
// platform (the stand-in has only the host's toolchain), no emulation.
func testCrossCompile(t *testing.T, d docker, s standins) {
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tag := "sidecar-imagetest-build:" + hex.EncodeToString(b)
	dockerBuild(t, d, s, tag, "--target", "build", "--platform", "linux/"+other)
	f := copyBinary(t, d, tag, "/out/sidecar")
	if f.Machine != elfMachine(other) {
		t.Errorf("build stage for linux/%s produced a %v binary, want %v", other, f.Machine, elfMachine(other))
	}
	checkStaticSymbols(t, f)
}

func copyBinary(t *testing.T, d docker, ref, path string) *elf.File {
	t.Helper()
	name := containerName(t)
	d.must(t, "create", "--network", "host", "--name", name, "--entrypoint", "/bin/true", ref)
	d.removeOnCleanup(t, name)
	dst := filepath.Join(t.TempDir(), "sidecar")
	d.must(t, "cp", name+":"+path, dst)
	f, err := elf.Open(dst)
	if err != nil {
		t.Fatalf("%s from %s: %v", path, ref, err)
	}
	t.Cleanup(func() { f.Close() })
	if fi, err := os.Stat(dst); err == nil {
		t.Logf("%s in %s: %.2f MB, %v", path, ref, mb(fi.Size()), f.Machine)
	}
	return f
}

// checkStaticSymbols: static (CGO_ENABLED=0), no DWARF (-ldflags -w), and
// a symbol table (no -s), which govulncheck needs to match vulnerabilities
// to the functions linked in.
func checkStaticSymbols(t *testing.T, f *elf.File) {
	t.Helper()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary is dynamically linked (has an ELF interpreter); want CGO_ENABLED=0")
		}
	}
	for _, s := range f.Sections {
		if strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			t.Errorf("binary has DWARF section %s; want -ldflags -w", s.Name)
			break
		}
	}
	if f.Section(".symtab") == nil {
		t.Error("binary has no symbol table; want it kept (no -ldflags -s) so govulncheck matches symbols, not whole modules")
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// run starts a detached container on the host network with the Dockerfile's
// HEALTHCHECK probed every second (its command unchanged), removed when the
// test ends.
func run(t *testing.T, d docker, img builtImage, opts []string, env ...string) string {
	t.Helper()
	name := containerName(t)
	args := []string{"run", "-d", "--name", name, "--network", "host",
		"--health-interval=1s", "--health-timeout=5s", "--health-start-period=30s"}
	args = append(args, opts...)
	for _, e := range env {
		args = append(args, "-e", e)
	}
	d.removeOnCleanup(t, name)
	d.must(t, append(args, img.ref)...)
	return name
}

// waitHealthy waits for the Dockerfile's HEALTHCHECK to report healthy.
func waitHealthy(t *testing.T, d docker, name string) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	for {
		state := strings.Fields(d.inspect(t, "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", name))
		if len(state) == 2 && state[1] == "healthy" {
			t.Logf("%s healthy after %v", name, time.Since(start).Round(10*time.Millisecond))
			return
		}
		if len(state) > 0 && state[0] != "running" && state[0] != "created" {
			t.Fatalf("container %s is %v before becoming healthy", name, state)
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s not healthy after 60s: %v", name, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop runs `docker stop -t timeout` and returns how long it took and the
// container's exit code.
func stop(t *testing.T, d docker, name string, timeout int) (time.Duration, int) {
	t.Helper()
	start := time.Now()
	d.must(t, "stop", "-t", itoa(timeout), name)
	took := time.Since(start)
	var code int
	if _, err := fmt.Sscan(d.inspect(t, "{{.State.ExitCode}}", name), &code); err != nil {
		t.Fatal(err)
	}
	return took, code
}

// testBuildContext checks what .dockerignore lets into the build context:
// the module files and the forwarder's non-test sources, nothing else (no
// .git, no pipeline code, no build output). It copies the context into a
// throwaway image with an ad-hoc Dockerfile and lists it.
func testBuildContext(t *testing.T, d docker, s standins) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tag := "sidecar-imagetest-context:" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := d.command(ctx, "build", "--network=none", "-t", tag, "-f", "-", repoRoot(t))
	c.Stdin = strings.NewReader("FROM " + s.Runtime + "\nCOPY . /context/\n")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("docker build of the context listing: %v\n%s", err, tail(string(out), 30))
	}
	t.Cleanup(func() { _, _ = d.output(context.Background(), "rmi", tag) })
	out := d.must(t, "run", "--rm", "--network", "host", "--name", containerName(t), "--entrypoint", "find", tag, "/context", "-type", "f")
	var files []string
	for _, f := range strings.Fields(out) {
		rel := strings.TrimPrefix(f, "/context/")
		files = append(files, rel)
		inSidecar := (strings.HasPrefix(rel, "sidecar/") || strings.HasPrefix(rel, "internal/envtypo/") || strings.HasPrefix(rel, "internal/redact/")) &&
			!strings.HasSuffix(rel, "_test.go") && !strings.Contains(rel, "/testdata/")
		if rel != "go.mod" && rel != "go.sum" && !inSidecar {
			t.Errorf("build context holds %s; .dockerignore should keep it out", rel)
		}
	}
	for _, want := range []string{"go.mod", "go.sum", "sidecar/main.go"} {
		if !slices.Contains(files, want) {
			t.Errorf("build context lacks %s (has %d files: %v)", want, len(files), files)
		}
	}
	t.Logf("build context: %d files", len(files))
}

// testReproducibleLayers rebuilds the image without the layer cache: its
// layers are the same bytes (docs/pipeline.md says so), so a security team
// can rebuild a commit and compare. Only the image config's dates differ.
func testReproducibleLayers(t *testing.T, d docker, s standins, img builtImage) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tag := "sidecar-imagetest-rebuild:" + hex.EncodeToString(b)
	dockerBuild(t, d, s, tag, "--no-cache")
	first, again := d.inspect(t, "{{json .RootFS.Layers}}", img.ref), d.inspect(t, "{{json .RootFS.Layers}}", tag)
	if first != again {
		t.Errorf("a rebuild of the same commit has other layers:\n first: %s\n again: %s", first, again)
	}
}
