// Package ocilayout reads OCI image layouts, as Dagger's Container.Export
// writes them (a tarball of oci-layout, index.json and blobs/), for the
// pipeline: Walk is its one tar walker (the export, a layer, a flattened
// image filesystem), Open its one layout reader (go-containerregistry's
// layout package over the unpacked tarball), and Images its one walk of
// an index down to each platform's image.
//
//	idx, err := ocilayout.Open("image.tar", dir)
//	err = ocilayout.Images(idx, func(platform string, img v1.Image) error { … })
package ocilayout

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// maxDepth bounds how deep indexes may nest.
const maxDepth = 4

// Walk calls fn for each entry of the tar stream r, with the reader at
// that entry's content, until the end of the archive, a read error, or an
// error from fn (returned as it is).
func Walk(r io.Reader, fn func(h *tar.Header, content io.Reader) error) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if err := fn(h, tr); err != nil {
			return err
		}
	}
}

// Untar unpacks the tarball file into dir: regular files and directories
// only, and nothing outside dir.
func Untar(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("open image tarball: %w", err)
	}
	defer f.Close()
	return Walk(f, func(h *tar.Header, content io.Reader) error {
		target := filepath.Join(dir, filepath.FromSlash(path.Clean("/"+h.Name)))
		switch h.Typeflag {
		case tar.TypeDir:
			return os.MkdirAll(target, 0o755)
		case tar.TypeReg:
			return writeFile(target, content)
		}
		return nil
	})
}

func writeFile(target string, content io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	out, err := os.Create(target)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, content); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Open unpacks the OCI layout tarball file into dir (which the caller
// removes) and returns its image index (index.json), read from there.
func Open(file, dir string) (v1.ImageIndex, error) {
	if err := Untar(file, dir); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		return nil, fmt.Errorf("%s: no index.json: not an OCI image layout tarball", file)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: not an OCI image layout: %w", file, err)
	}
	return idx, nil
}

// Images calls fn with every platform image of idx, following nested
// indexes, in index order. The platform ("linux/arm64") is the one the
// index names (arm64's v8 variant left out, as PLATFORMS writes it), else
// the image config's; BuildKit's attestation manifests (unknown/unknown)
// are skipped: they are not images anyone runs.
func Images(idx v1.ImageIndex, fn func(platform string, img v1.Image) error) error {
	return images(idx, nil, 0, fn)
}

func images(idx v1.ImageIndex, plat *v1.Platform, depth int, fn func(string, v1.Image) error) error {
	if depth > maxDepth {
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
		if p != nil && p.OS == "unknown" {
			continue
		}
		switch d.MediaType {
		case types.OCIImageIndex, types.DockerManifestList:
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return fmt.Errorf("index %s: %w", d.Digest, err)
			}
			if err := images(child, p, depth+1, fn); err != nil {
				return err
			}
		case types.OCIManifestSchema1, types.DockerManifestSchema2:
			img, err := idx.Image(d.Digest)
			if err != nil {
				return fmt.Errorf("manifest %s: %w", d.Digest, err)
			}
			if err := fn(platformName(p, img), img); err != nil {
				return err
			}
		}
	}
	return nil
}

// platformName is p as PLATFORMS names it, or img's config's platform.
func platformName(p *v1.Platform, img v1.Image) string {
	if p != nil {
		name := p.OS + "/" + p.Architecture
		if p.Variant != "" && p.Architecture != "arm64" {
			name += "/" + p.Variant
		}
		return name
	}
	if cf, err := img.ConfigFile(); err == nil {
		return cf.OS + "/" + cf.Architecture
	}
	return ""
}
