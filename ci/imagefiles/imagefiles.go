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
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
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
	idx, err := Open(file, dir)
	if err != nil {
		return nil, err
	}
	out, err := FromIndex(idx, paths...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return out, nil
}

// Open unpacks the OCI layout tarball at file into dir (which the caller
// removes) and returns its image index, read from there.
func Open(file, dir string) (v1.ImageIndex, error) {
	if err := Untar(file, dir); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: not an OCI image layout: %w", file, err)
	}
	return idx, nil
}

// FromIndex returns the content of paths in every platform image of idx,
// wherever its blobs are (an OCI layout, or a registry through
// go-containerregistry's remote package, which fetches the layers as they
// are read). A lone image can be wrapped with mutate.AppendManifests on
// empty.Index; its platform then comes from its config.
func FromIndex(idx v1.ImageIndex, paths ...string) (Files, error) {
	out := Files{}
	if err := walk(idx, nil, 0, func(p string, img v1.Image) error {
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

func walk(idx v1.ImageIndex, plat *v1.Platform, depth int, fn func(string, v1.Image) error) error {
	if depth > 4 {
		return errors.New("indexes nested too deep")
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, d := range im.Manifests {
		p := d.Platform
		if p == nil {
			p = plat
		}
		if p != nil && p.OS == "unknown" { // BuildKit attestation manifests
			continue
		}
		switch d.MediaType {
		case types.OCIImageIndex, types.DockerManifestList:
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return err
			}
			if err := walk(child, p, depth+1, fn); err != nil {
				return err
			}
		case types.OCIManifestSchema1, types.DockerManifestSchema2:
			img, err := idx.Image(d.Digest)
			if err != nil {
				return err
			}
			name := ""
			if p != nil {
				name = p.OS + "/" + p.Architecture
				if p.Variant != "" && p.Architecture != "arm64" {
					name += "/" + p.Variant
				}
			} else if cf, err := img.ConfigFile(); err == nil {
				name = cf.OS + "/" + cf.Architecture
			}
			if err := fn(name, img); err != nil {
				return err
			}
		}
	}
	return nil
}

func extract(img v1.Image, paths []string) (map[string][]byte, error) {
	want := map[string]string{} // tar name -> requested path
	for _, p := range paths {
		want[strings.TrimPrefix(path.Clean("/"+p), "/")] = p
	}
	rc := mutate.Extract(img) // flattened: whiteouts applied
	defer rc.Close()
	tr := tar.NewReader(rc)
	got := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		p, ok := want[name]
		if !ok || h.Typeflag != tar.TypeReg {
			continue
		}
		if h.Size > fileLimit {
			return nil, fmt.Errorf("%s: %d bytes, over the %d limit", p, h.Size, fileLimit)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		got[p] = b
	}
}

// Untar unpacks an OCI layout tarball, as Container.Export writes it,
// into dir (regular files and directories only, no path outside dir).
func Untar(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean("/" + h.Name)
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			out, err := os.Create(target)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
		}
	}
}

// Image is the image of platform ("linux/amd64") in idx, found as
// FromIndex finds every platform's.
func Image(idx v1.ImageIndex, platform string) (v1.Image, error) {
	var found v1.Image
	var have []string
	if err := walk(idx, nil, 0, func(p string, img v1.Image) error {
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
