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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, d.bin, "build", "--network=none", "--build-arg", "RUNTIME_IMAGE="+s.Runtime,
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
}
