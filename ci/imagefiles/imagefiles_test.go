package imagefiles

import (
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/example/sidecar/ci/imagesize/imagesizetest"
	"github.com/example/sidecar/ci/ocilayout"
)

func TestRead(t *testing.T) {
	tarball := filepath.Join(t.TempDir(), "image.tar")
	if _, err := imagesizetest.Write(tarball,
		imagesizetest.Image{Platform: "linux/amd64", LayerBytes: []int{100}, Files: map[string][]byte{
			"/usr/local/bin/sidecar": []byte("amd64 binary"), "/lib/apk/db/installed": []byte("P:busybox\n"),
		}},
		imagesizetest.Image{Platform: "linux/arm64", LayerBytes: []int{100}, Files: map[string][]byte{
			"/usr/local/bin/sidecar": []byte("arm64 binary"),
		}},
	); err != nil {
		t.Fatal(err)
	}
	files, err := Read(tarball, "/usr/local/bin/sidecar", "/lib/apk/db/installed", "/dir-0/file", "/missing")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("platforms %v, want 2", len(files))
	}
	for p, want := range map[string]string{"linux/amd64": "amd64 binary", "linux/arm64": "arm64 binary"} {
		if got := string(files[p]["/usr/local/bin/sidecar"]); got != want {
			t.Errorf("%s sidecar = %q, want %q", p, got, want)
		}
		if _, ok := files[p]["/missing"]; ok {
			t.Errorf("%s: a missing path was returned", p)
		}
	}
	if got := string(files["linux/amd64"]["/lib/apk/db/installed"]); got != "P:busybox\n" {
		t.Errorf("apk db = %q", got)
	}
	if _, ok := files["linux/arm64"]["/lib/apk/db/installed"]; ok {
		t.Error("arm64 has an apk db it was not given")
	}
	// The random-data layers: file from layer seed 0 (amd64) is read in full.
	if n := len(files["linux/amd64"]["/dir-0/file"]); n != 100 {
		t.Errorf("/dir-0/file is %d bytes, want 100", n)
	}
	if _, err := Read(filepath.Join(t.TempDir(), "none.tar"), "/x"); err == nil {
		t.Error("Read of a missing tarball passed")
	}
}

// A lone image (a single-platform push is a manifest, not an index),
// wrapped in an index: its platform comes from its config.
func TestFromIndexLoneImage(t *testing.T) {
	tarball := filepath.Join(t.TempDir(), "image.tar")
	if _, err := imagesizetest.Write(tarball, imagesizetest.Image{Platform: "linux/arm64", LayerBytes: []int{100},
		Files: map[string][]byte{"/usr/local/bin/sidecar": []byte("arm64 binary")}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ocilayout.Untar(tarball, dir); err != nil {
		t.Fatal(err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	files, err := FromIndex(mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img}), "/usr/local/bin/sidecar")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(files["linux/arm64"]["/usr/local/bin/sidecar"]); got != "arm64 binary" || len(files) != 1 {
		t.Errorf("files %v", files)
	}
	if _, err := FromIndex(empty.Index, "/x"); err == nil {
		t.Error("FromIndex of an empty index passed")
	}
}
