package daggertest_test

import (
	"strings"
	"testing"

	"dagger.io/dagger"

	"github.com/example/sidecar/ci/daggertest"
)

// from + imageRef pins a tag to a digest the same for every platform
// (the root descriptor's), and keeps a digest already in the address.
func TestImageRef(t *testing.T) {
	t.Parallel()
	_, c, ctx := connect(t)
	digest := "sha256:" + strings.Repeat("d", 64)
	for in, want := range map[string]string{
		"alpine:3.22": "docker.io/library/alpine:3.22@" + daggertest.ImageDigest("alpine:3.22"),
		"public.ecr.aws/docker/library/golang:1.26-alpine": "public.ecr.aws/docker/library/golang:1.26-alpine@" +
			daggertest.ImageDigest("public.ecr.aws/docker/library/golang:1.26-alpine"),
		"mirror.example:5000/alpine":           "mirror.example:5000/alpine:latest@" + daggertest.ImageDigest("mirror.example:5000/alpine:latest"),
		"mirror.example/alpine:3.22@" + digest: "mirror.example/alpine:3.22@" + digest,
	} {
		for _, p := range []dagger.Platform{"linux/amd64", "linux/arm64"} {
			got, err := c.Container(dagger.ContainerOpts{Platform: p}).From(in).ImageRef(ctx)
			if err != nil || got != want {
				t.Errorf("%s from(%s).imageRef = %q, %v; want %q", p, in, got, err, want)
			}
		}
	}
	if _, err := c.Container().From("alpine:3.22").WithExec([]string{"true"}).ImageRef(ctx); err == nil || !strings.Contains(err.Error(), "immediately after the 'Container.From' call") {
		t.Errorf("imageRef after withExec: %v", err)
	}
}

// An image whose index lacks a platform fails from for that platform,
// naming the index; a container without a platform is the engine's.
func TestImagePlatforms(t *testing.T) {
	t.Parallel()
	s, c, ctx := connect(t)
	s.ImagePlatforms("mirror.example/alpine:3.22", "linux/amd64")
	s.Platform("linux/amd64")
	if _, err := c.Container(dagger.ContainerOpts{Platform: "linux/amd64"}).From("mirror.example/alpine:3.22").ImageRef(ctx); err != nil {
		t.Errorf("amd64: %v", err)
	}
	if _, err := c.Container().From("mirror.example/alpine:3.22").ImageRef(ctx); err != nil {
		t.Errorf("engine platform: %v", err)
	}
	_, err := c.Container(dagger.ContainerOpts{Platform: "linux/arm64"}).From("mirror.example/alpine:3.22").ImageRef(ctx)
	if want := "no manifest matches requested platform for " + daggertest.ImageDigest("mirror.example/alpine:3.22"); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("arm64: %v, want %q", err, want)
	}
	if _, err := c.Container(dagger.ContainerOpts{Platform: "linux/arm64"}).From("alpine:3.22").ImageRef(ctx); err != nil {
		t.Errorf("an undeclared image has every platform: %v", err)
	}
}

// exportImage works on the default driver and is refused on the unix://
// and tcp:// drivers, which have no image loader.
func TestExportImageRunnerHost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		scheme string
		fails  bool
	}{{"", false}, {"image", false}, {"unix", true}, {"tcp", true}} {
		s, c, ctx := connect(t)
		s.RunnerHost(tc.scheme)
		err := c.Container().From("alpine:3.22").ExportImage(ctx, "x:latest")
		if got := err != nil && strings.Contains(err.Error(), "client has no supported api for loading image"); got != tc.fails {
			t.Errorf("runner %q: exportImage error %v, want refused: %v", tc.scheme, err, tc.fails)
		}
	}
}
