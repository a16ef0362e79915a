package dockerload

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/example/sidecar/ci/imagefiles"
	"github.com/example/sidecar/internal/testenv"
)

// twoPlatforms is an index of two small random images, as the pipeline's
// export holds one per platform.
func twoPlatforms(t *testing.T) (v1.ImageIndex, map[string]v1.Hash) {
	t.Helper()
	idx := v1.ImageIndex(empty.Index)
	ids := map[string]v1.Hash{}
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(1024, 1)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		if ids["linux/"+arch], err = img.ConfigName(); err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	return idx, ids
}

func needDocker(t *testing.T) {
	t.Helper()
	if err := Ping(context.Background()); err != nil {
		testenv.Unavailable(t, "a Docker daemon (%v)", err)
	}
}

// Load puts exactly the asked platform's image into the daemon under the
// asked name, however spelt: its image ID is that image's config digest.
func TestLoad(t *testing.T) {
	needDocker(t)
	idx, ids := twoPlatforms(t)
	for plat, prefix := range map[string]string{"linux/arm64": "docker.io/library/", "linux/amd64": ""} {
		ref := fmt.Sprintf("%sdockerload-test-%d:%s", prefix, os.Getpid(), strings.ReplaceAll(plat, "/", "-"))
		t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", ref).Run() })
		if err := Load(context.Background(), idx, plat, ref); err != nil {
			t.Fatalf("Load %s: %v", plat, err)
		}
		out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}} {{.Os}}/{{.Architecture}}", ref).CombinedOutput()
		if err != nil {
			t.Fatalf("docker image inspect %s: %v\n%s", ref, err, out)
		}
		if got, want := strings.TrimSpace(string(out)), ids[plat].String()+" "+plat; got != want {
			t.Errorf("%s loaded as %q, want %q", ref, got, want)
		}
	}
}

// An image that cannot be read to the end fails the load saying what could
// not be read, not with what docker load made of the cut-off archive.
func TestLoadSaysWhatItCouldNotRead(t *testing.T) {
	needDocker(t)
	idx, _ := twoPlatforms(t)
	dir := t.TempDir()
	if _, err := layout.Write(dir, idx); err != nil {
		t.Fatal(err)
	}
	img, err := imagefiles.Image(idx, "linux/amd64")
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	blob := m.Layers[0].Digest
	if err := os.Remove(filepath.Join(dir, "blobs", blob.Algorithm, blob.Hex)); err != nil {
		t.Fatal(err)
	}
	onDisk, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	ref := fmt.Sprintf("dockerload-test-%d:broken", os.Getpid())
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", ref).Run() })
	err = Load(context.Background(), onDisk, "linux/amd64", ref)
	if err == nil || !strings.Contains(err.Error(), blob.Hex) || !strings.Contains(err.Error(), "read the image") {
		t.Errorf("Load of an image missing layer %s: %v; want an error naming the layer it could not read", blob, err)
	}
}

func TestLoadMissingPlatform(t *testing.T) {
	idx, _ := twoPlatforms(t)
	err := Load(context.Background(), idx, "linux/s390x", "x:latest")
	if err == nil || !strings.Contains(err.Error(), "no linux/s390x image (the index has linux/amd64, linux/arm64)") {
		t.Errorf("err = %v", err)
	}
}

// With no daemon behind DOCKER_HOST, Ping fails at once, saying why.
func TestPingUnreachable(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		testenv.Unavailable(t, "the docker CLI")
	}
	t.Setenv("DOCKER_HOST", "unix://"+t.TempDir()+"/none.sock")
	start := time.Now()
	err := Ping(context.Background())
	if err == nil || !strings.Contains(err.Error(), "`docker version`") || !strings.Contains(err.Error(), "none.sock") {
		t.Errorf("err = %v", err)
	}
	t.Logf("failed after %s", time.Since(start).Round(time.Millisecond))
}

// Docker reports a loaded tag in its familiar form (moby
// image/tarexport/load.go, tarexporter.Load: reference.FamiliarString), so
// docker.io/team/sidecar:dev is reported as team/sidecar:dev.
func TestReported(t *testing.T) {
	for _, tc := range []struct {
		out, ref string
		want     bool
	}{
		{"Loaded image: team/sidecar:dev\n", "docker.io/team/sidecar:dev", true},
		{"Loaded image: sidecar:1\n", "docker.io/library/sidecar:1", true},
		{"Loaded image: sidecar:1\n", "index.docker.io/library/sidecar:1", true},
		{"Loaded image: sidecar:latest\n", "sidecar", true},
		{"Loaded image: sidecar:latest\n", "sidecar:latest", true},
		{"Loaded image: registry.example:5000/team/sidecar:dev\n", "registry.example:5000/team/sidecar:dev", true},
		{"The image sidecar:dev already exists, renaming the old one with ID sha256:1 to empty string\nLoaded image: sidecar:dev\n", "sidecar:dev", true},
		{"Loaded image: sidecar:dev-old\n", "sidecar:dev", false},
		{"Loaded image: team/sidecar:dev\n", "sidecar:dev", false},
		{"Loaded image: localhost/sidecar:dev\n", "sidecar:dev", false},
		{"Loaded image ID: sha256:0123\n", "sidecar:dev", false},
		{"", "sidecar:dev", false},
	} {
		tag, err := name.NewTag(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := reported(tc.out, tag); got != tc.want {
			t.Errorf("reported(%q, %s) = %v, want %v", tc.out, tc.ref, got, tc.want)
		}
	}
}
