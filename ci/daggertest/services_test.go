package daggertest_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"dagger.io/dagger"

	"github.com/example/sidecar/ci/daggertest"
)

// dockerfileDir holds a Dockerfile whose final stage has body.
func dockerfileDir(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestServiceReadiness(t *testing.T) {
	t.Parallel()
	const hc = "FROM busybox AS build\nHEALTHCHECK CMD [\"/bin/false\"]\nFROM busybox\n" +
		"HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \\\n    CMD [\"/bin/app\", \"healthcheck\"]\n"
	for _, tc := range []struct {
		name       string
		dockerfile string
		svc        func(c *dagger.Container) *dagger.Container
		up         time.Duration
		never      bool
		wantTest   []string // nil: port check
		wantPorts  []int
		wantReady  time.Duration
		wantErr    string
	}{
		{"Dockerfile HEALTHCHECK, its interval", hc, func(c *dagger.Container) *dagger.Container { return c.WithExposedPort(8080) },
			300 * time.Millisecond, false, []string{"CMD", "/bin/app", "healthcheck"}, []int{8080}, 10 * time.Second, ""},
		{"withDockerHealthcheck overrides the interval", hc, func(c *dagger.Container) *dagger.Container {
			return c.WithDockerHealthcheck([]string{"/bin/app", "healthcheck"}, dagger.ContainerWithDockerHealthcheckOpts{Interval: "1s"})
		}, 300 * time.Millisecond, false, []string{"CMD", "/bin/app", "healthcheck"}, nil, time.Second, ""},
		{"StartInterval wins", hc, func(c *dagger.Container) *dagger.Container {
			return c.WithDockerHealthcheck([]string{"x"}, dagger.ContainerWithDockerHealthcheckOpts{Interval: "10s", StartInterval: "2s"})
		}, 3 * time.Second, false, []string{"CMD", "x"}, nil, 4 * time.Second, ""},
		{"no healthcheck: exposed ports", "FROM busybox\n", func(c *dagger.Container) *dagger.Container {
			return c.WithExposedPort(3306).WithExposedPort(9, dagger.ContainerWithExposedPortOpts{ExperimentalSkipHealthcheck: true})
		}, 200 * time.Millisecond, false, nil, []int{3306}, 250 * time.Millisecond, ""},
		{"withoutDockerHealthcheck: ports", hc, func(c *dagger.Container) *dagger.Container {
			return c.WithoutDockerHealthcheck().WithExposedPort(8080)
		}, 0, false, nil, []int{8080}, 0, ""},
		{"HEALTHCHECK NONE fails the service", "FROM busybox\nHEALTHCHECK NONE\n", nil, 0, false, []string{"NONE"}, nil, 0, "failed to setup docker healthcheck"},
		// Checks at 0s (in the 5s start period, not counted), 10s, 20s, 30s: the third counted failure.
		{"never healthy: fails after the start period and retries", hc, nil, 0, true,
			[]string{"CMD", "/bin/app", "healthcheck"}, nil, 30 * time.Second, "health check errored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, c, ctx := connect(t)
			srv.Startup(func(daggertest.Service) (time.Duration, bool) { return tc.up, !tc.never })
			img := c.Host().Directory(dockerfileDir(t, tc.dockerfile)).DockerBuild()
			if tc.svc != nil {
				img = tc.svc(img)
			}
			_, err := c.Container().From("busybox").
				WithServiceBinding("app", img.AsService()).
				WithExec([]string{"true"}).Stdout(ctx)
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "start app")) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			svcs := srv.Services()
			if len(svcs) != 1 {
				t.Fatalf("started %d services", len(svcs))
			}
			s := svcs[0]
			var test []string
			if s.Healthcheck != nil {
				test = s.Healthcheck.Test
			}
			if !slices.Equal(test, tc.wantTest) || !slices.Equal(s.Ports, tc.wantPorts) || s.Ready != tc.wantReady {
				t.Errorf("service: healthcheck %v ports %v ready %v; want %v %v %v", test, s.Ports, s.Ready, tc.wantTest, tc.wantPorts, tc.wantReady)
			}
		})
	}
}

func TestSecretsAreReadWhenNeeded(t *testing.T) {
	t.Parallel()
	srv, c, ctx := connect(t)
	path := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(path, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctr := c.Container().From("busybox").WithSecretVariable("PW", c.Secret("file://"+path)).WithExec([]string{"true"})
	if _, ok := srv.Secret("file://" + path); ok {
		t.Fatal("secret read before anything needed it")
	}
	if _, err := ctr.Stdout(ctx); err != nil {
		t.Fatal(err)
	}
	if v, ok := srv.Secret("file://" + path); !ok || v != "s3cret" {
		t.Errorf("secret = %q, %v", v, ok)
	}
	os.Remove(path)
	if _, err := ctr.Stdout(ctx); err == nil || !strings.Contains(err.Error(), "failed to read secret file") {
		t.Errorf("secret file gone, err = %v", err)
	}
}

func TestDefaultPlatformIsTheEngines(t *testing.T) {
	t.Parallel()
	srv, c, ctx := connect(t)
	srv.Platform("linux/arm64")
	if p, err := c.DefaultPlatform(ctx); err != nil || p != "linux/arm64" {
		t.Errorf("defaultPlatform = %q, %v", p, err)
	}
}
