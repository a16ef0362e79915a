// Package imagesizetest writes real OCI image-layout tarballs for tests:
// gzip layers with correct digests, manifests, configs and an index, the
// same structure an engine's image export produces.
package imagesizetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// Image describes one platform's image: each layer is a tar of one file
// with the given number of (incompressible) bytes.
type Image struct {
	Platform   string // "linux/amd64"
	LayerBytes []int
	Plain      bool // layers as plain tar, not gzip (ForcedCompression uncompressed)
	// Files, when set, adds a last gzip layer holding these files
	// (absolute path -> content), e.g. a binary the pipeline reads back.
	Files map[string][]byte
	// FilesGz, when set, is Files already made into a layer by FilesLayer
	// (with its content size FilesContent): tests that write the same
	// large files often compress them once.
	FilesGz      []byte
	FilesContent int64
}

// FilesLayer returns a gzip tar layer holding files (parent directories
// included, sorted, zero times: deterministic) and its content size.
func FilesLayer(files map[string][]byte) (gz []byte, content int64) {
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestSpeed) // binaries: keep tests quick
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	dirs := map[string]bool{}
	for _, n := range names {
		rel := strings.TrimPrefix(n, "/")
		for d := path.Dir(rel); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	dirList := make([]string, 0, len(dirs))
	for d := range dirs {
		dirList = append(dirList, d)
	}
	sort.Strings(dirList)
	for _, d := range dirList {
		_ = tw.WriteHeader(&tar.Header{Name: d + "/", Mode: 0o755, Typeflag: tar.TypeDir})
	}
	for _, n := range names {
		_ = tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(n, "/"), Mode: 0o755, Size: int64(len(files[n])), Typeflag: tar.TypeReg})
		_, _ = tw.Write(files[n])
		content += int64(len(files[n]))
	}
	_ = tw.Close()
	_ = zw.Close()
	return z.Bytes(), content
}

type blob struct {
	digest string
	data   []byte
}

func newBlob(data []byte) blob {
	s := sha256.Sum256(data)
	return blob{"sha256:" + hex.EncodeToString(s[:]), data}
}

// Layer returns a gzip-compressed tar layer holding one file of n
// pseudo-random bytes (in a directory, with a symlink and a hard link to
// it, and an empty whiteout, as real layers have), and the layer's content
// size: n, the only file content in it.
func Layer(n int, seed byte) (gz []byte, content int64) {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_ = TarLayer(zw, n, seed)
	_ = zw.Close()
	return z.Bytes(), int64(n)
}

// TarLayer writes the uncompressed tar of Layer to w.
func TarLayer(w io.Writer, n int, seed byte) error {
	tw := tar.NewWriter(w)
	data := make([]byte, n)
	x := uint32(seed) + 1
	for i := range data { // xorshift: incompressible, deterministic
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		data[i] = byte(x)
	}
	dir := fmt.Sprintf("dir-%d/", seed)
	file := dir + "file"
	for _, h := range []*tar.Header{
		{Name: dir, Mode: 0o755, Typeflag: tar.TypeDir},
		{Name: file, Mode: 0o644, Size: int64(n), Typeflag: tar.TypeReg},
		{Name: dir + "symlink", Mode: 0o777, Linkname: "file", Typeflag: tar.TypeSymlink},
		{Name: dir + "hardlink", Mode: 0o644, Linkname: file, Typeflag: tar.TypeLink},
		{Name: dir + ".wh.removed", Mode: 0o644, Typeflag: tar.TypeReg},
	} {
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Size > 0 {
			if _, err := tw.Write(data); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// Want is what a measurement of an Image written by Write must report.
type Want struct {
	Platform                 string
	Compressed, Uncompressed int64
}

// Write writes an OCI layout tarball to path holding the images (one
// manifest each, under one index when there are several) and returns the
// sizes a correct measurement reports.
func Write(path string, images ...Image) ([]Want, error) {
	var blobs []blob
	var manifests []map[string]any
	var wants []Want
	seed := byte(0)
	for _, img := range images {
		bs, m, want, err := writeImage(img, &seed)
		if err != nil {
			return nil, err
		}
		blobs = append(blobs, bs...)
		manifests = append(manifests, m)
		wants = append(wants, want)
	}
	top := manifests
	if len(manifests) > 1 { // multi-platform: index.json points at an image index
		idx := newBlob(mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}))
		blobs = append(blobs, idx)
		top = []map[string]any{{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": idx.digest, "size": len(idx.data)}}
	}
	indexJSON := mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": top})
	return wants, writeLayout(path, indexJSON, blobs)
}

// writeImage makes one platform's blobs (config, layers, manifest) and
// returns them with the manifest's index entry and the sizes a correct
// measurement reports. seed numbers the generated layers across images.
func writeImage(img Image, seed *byte) ([]blob, map[string]any, Want, error) {
	os_, arch, _ := strings.Cut(img.Platform, "/")
	cfg := newBlob(mustJSON(map[string]any{"os": os_, "architecture": arch, "config": map[string]any{"User": "sidecar"}}))
	blobs := []blob{cfg}
	want := Want{Platform: img.Platform}
	var layers []map[string]any
	addLayer := func(data []byte, mediaType string, content int64) {
		l := newBlob(data)
		blobs = append(blobs, l)
		layers = append(layers, map[string]any{"mediaType": mediaType, "digest": l.digest, "size": len(data)})
		want.Compressed += int64(len(data))
		want.Uncompressed += content
	}
	for _, n := range img.LayerBytes {
		data, content := Layer(n, *seed)
		mediaType := "application/vnd.oci.image.layer.v1.tar+gzip"
		if img.Plain {
			var raw bytes.Buffer
			if err := TarLayer(&raw, n, *seed); err != nil {
				return nil, nil, Want{}, err
			}
			data, mediaType = raw.Bytes(), "application/vnd.oci.image.layer.v1.tar"
		}
		*seed++
		addLayer(data, mediaType, content)
	}
	if len(img.Files) > 0 || img.FilesGz != nil {
		data, content := img.FilesGz, img.FilesContent
		if data == nil {
			data, content = FilesLayer(img.Files)
		}
		addLayer(data, "application/vnd.oci.image.layer.v1.tar+gzip", content)
	}
	m := newBlob(mustJSON(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg.digest, "size": len(cfg.data)},
		"layers": layers,
	}))
	entry := map[string]any{
		"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m.digest, "size": len(m.data),
		"platform": map[string]any{"os": os_, "architecture": arch},
	}
	return append(blobs, m), entry, want, nil
}

// writeLayout writes the OCI layout tarball: oci-layout, index.json and
// the blobs.
func writeLayout(path string, indexJSON []byte, blobs []blob) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	add := func(name string, data []byte) {
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		_, _ = tw.Write(data)
	}
	add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	add("index.json", indexJSON)
	for _, b := range blobs {
		add("blobs/sha256/"+strings.TrimPrefix(b.digest, "sha256:"), b.data)
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
