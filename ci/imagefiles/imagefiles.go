// Package imagefiles reads files out of the images in an OCI image-layout
// tarball (what Dagger's Container.Export writes): the final content of a
// path in each platform's image, after all layers and whiteouts, as a
// container would see it.
//
//	files, err := imagefiles.Read("image.tar", "/usr/local/bin/sidecar", "/lib/apk/db/installed")
//	bin := files["linux/arm64"]["/usr/local/bin/sidecar"]
package imagefiles

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/example/sidecar/ci/ocilayout"
)

// fileLimit bounds one file read into memory.
const fileLimit = 256 << 20

// Files maps platform ("linux/amd64") to absolute path to content. A path
// missing from an image is missing from its map.
type Files map[string]map[string][]byte

// Read returns the content of paths in every platform image of the OCI
// layout tarball at file. Symbolic links are not followed.
func Read(file string, paths ...string) (Files, error) {
	dir, err := os.MkdirTemp("", "imagefiles-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	idx, err := ocilayout.Open(file, dir)
	if err != nil {
		return nil, err
	}
	out, err := FromIndex(idx, paths...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return out, nil
}

// FromIndex returns the content of paths in every platform image of idx,
// wherever its blobs are (an OCI layout, or a registry through
// go-containerregistry's remote package, which fetches the layers as they
// are read). A lone image can be wrapped with mutate.AppendManifests on
// empty.Index; its platform then comes from its config.
func FromIndex(idx v1.ImageIndex, paths ...string) (Files, error) {
	out := Files{}
	if err := ocilayout.Images(idx, func(p string, img v1.Image) error {
		got, err := extract(img, paths)
		if err != nil {
			return fmt.Errorf("%s image: %w", p, err)
		}
		out[p] = got
		return nil
	}); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no image manifests")
	}
	return out, nil
}

func extract(img v1.Image, paths []string) (map[string][]byte, error) {
	want := map[string]string{} // tar name -> requested path
	for _, p := range paths {
		want[strings.TrimPrefix(path.Clean("/"+p), "/")] = p
	}
	rc := mutate.Extract(img) // flattened: whiteouts applied
	defer rc.Close()
	got := map[string][]byte{}
	err := ocilayout.Walk(rc, func(h *tar.Header, content io.Reader) error {
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		p, ok := want[name]
		if !ok || h.Typeflag != tar.TypeReg {
			return nil
		}
		if h.Size > fileLimit {
			return fmt.Errorf("%s: %d bytes, over the %d limit", p, h.Size, fileLimit)
		}
		b, err := io.ReadAll(content)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		got[p] = b
		return nil
	})
	if err != nil {
		return nil, err
	}
	return got, nil
}

// Image is the image of platform ("linux/amd64") in idx, found as
// FromIndex finds every platform's.
func Image(idx v1.ImageIndex, platform string) (v1.Image, error) {
	var found v1.Image
	var have []string
	if err := ocilayout.Images(idx, func(p string, img v1.Image) error {
		have = append(have, p)
		if p == platform && found == nil {
			found = img
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if found == nil {
		return nil, fmt.Errorf("no %s image (the index has %s)", platform, strings.Join(have, ", "))
	}
	return found, nil
}
