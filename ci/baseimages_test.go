package ci

import (
	"slices"
	"strings"
	"testing"

	"github.com/example/sidecar/ci/daggertest"
)

// imageRefs lists "ref for platform" for every from+imageRef the run asked.
func imageRefs(fe *fakeEngine, engine string) []string {
	var out []string
	for _, q := range fe.leaves("imageRef") {
		c, _ := q.Find("container")
		from, _ := q.Find("from")
		p := c.Arg("platform")
		if p == "" {
			p = engine
		}
		out = append(out, from.Arg("address")+" for "+p)
	}
	slices.Sort(out)
	return out
}

// RUNTIME_IMAGE is resolved once per target platform and GO_IMAGE for the
// engine's platform; an image whose index lacks a platform fails before
// any build, naming the variable, the reference and the platform.
func TestBaseImagesPerPlatform(t *testing.T) {
	t.Parallel()
	const runtimeImg, goImg = "mirror.example/alpine:3.22", "mirror.example/golang:1.26-alpine"
	env := map[string]string{"PLATFORMS": "linux/amd64,linux/arm64", "RUNTIME_IMAGE": runtimeImg, "GO_IMAGE": goImg, "LOCAL_IMAGE": "none"}
	for _, tc := range []struct {
		name    string
		engine  string
		lacks   func(s *daggertest.Server)
		wantErr []string
	}{
		{name: "both platforms", engine: "linux/amd64"},
		{name: "arm64 engine", engine: "linux/arm64"},
		{name: "single-arch runtime mirror", engine: "linux/amd64",
			lacks:   func(s *daggertest.Server) { s.ImagePlatforms(runtimeImg, "linux/amd64") },
			wantErr: []string{"RUNTIME_IMAGE=" + runtimeImg + " has no image for linux/arm64 (nothing was built)", "no manifest matches requested platform", "PLATFORMS"}},
		{name: "Go image lacks the engine's platform", engine: "linux/arm64",
			lacks:   func(s *daggertest.Server) { s.ImagePlatforms(goImg, "linux/amd64") },
			wantErr: []string{"GO_IMAGE=" + goImg + " has no image for linux/arm64 (nothing was built)", "engine's platform"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fe := newEngine(t, env, nil)
			fe.srv.Platform(tc.engine)
			if tc.lacks != nil {
				tc.lacks(fe.srv)
			}
			err := fe.runner.Build(testCtx(t))
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Build: %v\nlog:\n%s", err, fe.log)
				}
				want := []string{goImg + " for " + tc.engine, runtimeImg + " for linux/amd64", runtimeImg + " for linux/arm64"}
				slices.Sort(want)
				if got := imageRefs(fe, tc.engine); !slices.Equal(got, want) {
					t.Errorf("resolved %v, want %v", got, want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Build passed; log:\n%s", fe.log)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if n := len(fe.leaves("export")); n != 0 || slices.ContainsFunc(fe.srv.Queries(), func(q daggertest.Query) bool { return q.Has("dockerBuild") }) {
				t.Errorf("built before failing (%d exports):\n%s", n, fe.log)
			}
		})
	}
}

// An image whose name reads as a credential's key (secret:1.0) is shown
// masked, and its missing platform still says what to do: the engine's
// reason was looked for in the masked error, which had lost it.
func TestBaseImageMissingPlatformMasked(t *testing.T) {
	t.Parallel()
	const runtimeImg = "mirror.example/secret:1.0"
	fe := newEngine(t, map[string]string{"PLATFORMS": "linux/amd64,linux/arm64", "RUNTIME_IMAGE": runtimeImg, "LOCAL_IMAGE": "none"}, nil)
	fe.srv.Platform("linux/amd64")
	fe.srv.ImagePlatforms(runtimeImg, "linux/amd64")
	err := fe.runner.Build(testCtx(t))
	if err == nil {
		t.Fatalf("Build passed; log:\n%s", fe.log)
	}
	for _, w := range []string{"RUNTIME_IMAGE=mirror.example/secret:xxxxx has no image for linux/arm64", "leave it out of PLATFORMS"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error()+fe.log.String(), "secret:1.0") {
		t.Errorf("the masked reference shows:\n%v\n%s", err, fe.log)
	}
}
