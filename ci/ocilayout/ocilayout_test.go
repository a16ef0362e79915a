package ocilayout_test

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1"

	"github.com/example/sidecar/ci/imagesize/imagesizetest"
	"github.com/example/sidecar/ci/ocilayout"
)

func tarOf(t *testing.T, entries ...tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range entries {
		body := []byte("content of " + h.Name)
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			_, _ = tw.Write(body)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestWalk(t *testing.T) {
	t.Parallel()
	data := tarOf(t, tar.Header{Name: "a", Typeflag: tar.TypeReg, Mode: 0o644}, tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
		tar.Header{Name: "d/b", Typeflag: tar.TypeReg, Mode: 0o644})
	var seen []string
	err := ocilayout.Walk(bytes.NewReader(data), func(h *tar.Header, r io.Reader) error {
		b, err := io.ReadAll(r)
		seen = append(seen, h.Name+"="+string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a=content of a", "d/=", "d/b=content of d/b"}; !slices.Equal(seen, want) {
		t.Errorf("walked %q, want %q", seen, want)
	}
	// A truncated archive is a read error, not a short walk.
	if err := ocilayout.Walk(bytes.NewReader(data[:300]), func(*tar.Header, io.Reader) error { return nil }); err == nil || !strings.Contains(err.Error(), "read tar") {
		t.Errorf("truncated tar: err = %v", err)
	}
}

func TestUntarStaysInside(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "x.tar")
	if err := os.WriteFile(file, tarOf(t, tar.Header{Name: "../../escape", Typeflag: tar.TypeReg, Mode: 0o644},
		tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := ocilayout.Untar(file, out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "escape")); err != nil {
		t.Errorf("../../escape not unpacked inside the directory: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(out, "link")); err == nil {
		t.Error("a symbolic link was unpacked")
	}
}

func TestOpenAndImages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		images []imagesizetest.Image
		want   []string
	}{
		{"one platform: a manifest", []imagesizetest.Image{{Platform: "linux/arm64", LayerBytes: []int{10}}}, []string{"linux/arm64"}},
		{"two platforms: an index", []imagesizetest.Image{{Platform: "linux/amd64", LayerBytes: []int{10}}, {Platform: "linux/arm64", LayerBytes: []int{10}}},
			[]string{"linux/amd64", "linux/arm64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "image.tar")
			if _, err := imagesizetest.Write(file, tc.images...); err != nil {
				t.Fatal(err)
			}
			idx, err := ocilayout.Open(file, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			if err := ocilayout.Images(idx, func(p string, img v1.Image) error {
				if _, err := img.Manifest(); err != nil {
					return err
				}
				got = append(got, p)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("images %q, want %q", got, tc.want)
			}
		})
	}
}

func TestOpenRefusesWhatIsNotALayout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "x.tar")
	if err := os.WriteFile(file, tarOf(t, tar.Header{Name: "oci-layout", Typeflag: tar.TypeReg, Mode: 0o644}), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ocilayout.Open(file, t.TempDir()); err == nil || !strings.Contains(err.Error(), "no index.json") {
		t.Errorf("no index.json: err = %v", err)
	}
	if _, err := ocilayout.Open(filepath.Join(dir, "absent.tar"), t.TempDir()); err == nil || !strings.Contains(err.Error(), "open image tarball") {
		t.Errorf("absent file: err = %v", err)
	}
}
