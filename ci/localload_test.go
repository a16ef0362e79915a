package ci

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// With a unix:// runner host the engine refuses exportImage (see
// daggertest.RunnerHost); build loads the host variant from its own
// export instead, after the size check.
func TestBuildLoadsFromExportWithRemoteEngine(t *testing.T) {
	t.Parallel()
	for _, scheme := range []string{"unix", "tcp", ""} {
		t.Run("runner "+scheme, func(t *testing.T) {
			fe := newEngine(t, nil, nil)
			fe.srv.RunnerHost(scheme)
			if err := fe.runner.Build(testCtx(t)); err != nil {
				t.Fatalf("Build: %v\nlog:\n%s", err, fe.log)
			}
			if n := len(fe.leaves("exportImage")); n != 0 {
				t.Errorf("%d exportImage calls", n)
			}
			if len(*fe.dockerLoads) != 1 || !strings.HasPrefix((*fe.dockerLoads)[0], "sidecar:latest linux/"+runtime.GOARCH+" ") {
				t.Errorf("loads %v, want one of sidecar:latest for linux/%s", *fe.dockerLoads, runtime.GOARCH)
			}
			if !strings.Contains(fe.log.String(), "loading the linux/"+runtime.GOARCH+" image into local Docker as sidecar:latest") {
				t.Errorf("no progress line for the load:\n%s", fe.log)
			}
		})
	}
}

// An unreachable Docker fails the run in seconds, before the engine is
// asked anything, naming LOCAL_IMAGE=none; with LOCAL_IMAGE=none Docker
// is not needed.
func TestBuildChecksLocalDockerFirst(t *testing.T) {
	// The docker CLI the check runs reads the process environment; the
	// run names what its own environment says.
	host := "unix://" + t.TempDir() + "/none.sock"
	t.Setenv("DOCKER_HOST", host)
	fe := newEngine(t, nil, nil)
	fe.setEnv(map[string]string{"DOCKER_HOST": host})
	fe.runner.pingDocker = nil // the real check, against DOCKER_HOST
	start := time.Now()
	err := fe.runner.Build(testCtx(t))
	if err == nil {
		t.Fatalf("Build passed without Docker; log:\n%s", fe.log)
	}
	for _, w := range []string{"LOCAL_IMAGE=sidecar:latest needs the local Docker", "DOCKER_HOST=unix://", "nothing was built", "LOCAL_IMAGE=none"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	if n := len(fe.srv.Queries()); n != 0 {
		t.Errorf("the engine was asked %d queries before the Docker check failed", n)
	}
	t.Logf("failed after %s", time.Since(start).Round(time.Millisecond))

	none := newEngine(t, map[string]string{"LOCAL_IMAGE": "none"}, nil)
	none.runner.pingDocker = nil
	if err := none.runner.Build(testCtx(t)); err != nil {
		t.Errorf("LOCAL_IMAGE=none still needs Docker: %v", err)
	}
}
