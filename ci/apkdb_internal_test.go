package ci

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/example/sidecar/ci/imagefiles"
)

// A usr-merged apk base (Wolfi, Chainguard) keeps its database under
// /usr/lib, with /lib a symbolic link to usr/lib: the SBOM still lists its
// packages.
func TestUsrMergedAPKDatabaseIsRead(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	db := []byte("P:busybox\nV:1.37.0-r30\n\n")
	for _, h := range []*tar.Header{
		{Name: "usr/lib/apk/db/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "usr/lib/apk/db/installed", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(db))},
		{Name: "lib", Typeflag: tar.TypeSymlink, Linkname: "usr/lib"},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			_, _ = tw.Write(db)
		}
	}
	_ = tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: "amd64"}); err != nil {
		t.Fatal(err)
	}
	files, err := imagefiles.FromIndex(mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img}), imagePaths()...)
	if err != nil {
		t.Fatal(err)
	}
	if got := apkDB(files["linux/amd64"]); !bytes.Equal(got, db) {
		t.Errorf("apk database read as %q, want %q", got, db)
	}
}
