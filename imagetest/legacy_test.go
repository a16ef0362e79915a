package imagetest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Debian 12's docker.io 20.10 builds with the legacy builder unless
// DOCKER_BUILDKIT=1 is set, and so does a newer docker without buildx. The Dockerfile needs BuildKit, so under the
// legacy builder it must stop at once with a message saying how to build,
// as the README's `DOCKER_BUILDKIT=1 docker build .` does.
func TestLegacyBuilderStopsWithAMessage(t *testing.T) {
	d := requireDocker(t)
	s := ensureStandins(t, d)
	before := stepContainers(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, d.bin, "build", "--force-rm", "--network=none", "--build-arg", "RUNTIME_IMAGE="+s.Runtime,
		"--build-arg", "GO_IMAGE="+s.Go, "-t", "sidecar-legacy-builder-test", "..")
	c.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	out, err := c.CombinedOutput()
	if err == nil {
		d.removeOnCleanup(t, "sidecar-legacy-builder-test")
		t.Fatalf("the legacy builder built the image; want it to stop:\n%s", out)
	}
	// Docker 23 and later fall back to the legacy builder too, when the
	// buildx plugin is missing; DOCKER_BUILDKIT=1 alone then fails.
	for _, want := range []string{"This Dockerfile needs BuildKit: run DOCKER_BUILDKIT=1 docker build .",
		"without the buildx plugin (docker-buildx-plugin in Docker's packages) they use the legacy builder: install it"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("legacy build failed without saying %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "go build") {
		t.Errorf("the legacy builder got as far as compiling:\n%s", out)
	}
	// The legacy builder keeps a failed step's container unless --force-rm.
	for id := range stepContainers(t, d) {
		if !before[id] {
			d.must(t, "rm", id)
			t.Errorf("the failed build left its step's container %s behind", id)
		}
	}
}

// stepContainers are the containers of the Dockerfile's needs-buildkit
// step, stopped ones too.
func stepContainers(t *testing.T, d docker) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for _, line := range strings.Split(d.must(t, "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}"), "\n") {
		if id, cmd, ok := strings.Cut(line, " "); ok && strings.Contains(cmd, "This Dockerfile needs BuildKit") {
			ids[id] = true
		}
	}
	return ids
}
