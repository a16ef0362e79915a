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
	"os"
	"strings"
)

// Image describes one platform's image: each layer is a tar of one file
// with the given number of (incompressible) bytes.
type Image struct {
	Platform   string // "linux/amd64"
	LayerBytes []int
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
// pseudo-random bytes, and the layer's uncompressed (tar) size.
func Layer(n int, seed byte) (gz []byte, tarSize int64) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	content := make([]byte, n)
	x := uint32(seed) + 1
	for i := range content { // xorshift: incompressible, deterministic
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		content[i] = byte(x)
	}
	_ = tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("file-%d", seed), Mode: 0o644, Size: int64(n), Typeflag: tar.TypeReg})
	_, _ = tw.Write(content)
	_ = tw.Close()
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, _ = zw.Write(raw.Bytes())
	_ = zw.Close()
	return z.Bytes(), int64(raw.Len())
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
		os_, arch, _ := strings.Cut(img.Platform, "/")
		cfg := newBlob(mustJSON(map[string]any{"os": os_, "architecture": arch, "config": map[string]any{"User": "sidecar"}}))
		blobs = append(blobs, cfg)
		want := Want{Platform: img.Platform}
		var layers []map[string]any
		for _, n := range img.LayerBytes {
			gz, tarSize := Layer(n, seed)
			seed++
			l := newBlob(gz)
			blobs = append(blobs, l)
			layers = append(layers, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l.digest, "size": len(gz)})
			want.Compressed += int64(len(gz))
			want.Uncompressed += tarSize
		}
		m := newBlob(mustJSON(map[string]any{
			"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
			"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg.digest, "size": len(cfg.data)},
			"layers": layers,
		}))
		blobs = append(blobs, m)
		manifests = append(manifests, map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m.digest, "size": len(m.data),
			"platform": map[string]any{"os": os_, "architecture": arch},
		})
		wants = append(wants, want)
	}
	top := manifests
	if len(manifests) > 1 { // multi-platform: index.json points at an image index
		idx := newBlob(mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}))
		blobs = append(blobs, idx)
		top = []map[string]any{{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": idx.digest, "size": len(idx.data)}}
	}
	indexJSON := mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": top})

	f, err := os.Create(path)
	if err != nil {
		return nil, err
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
		return nil, err
	}
	return wants, f.Close()
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
