package imagetest

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"testing"
	"time"

	"github.com/example/sidecar/ci/imagesize"
	"github.com/example/sidecar/ci/ocilayout"
)

// sizeTolerance is how far the pipeline's measure may be from Docker's own
// figure. They count the same thing (file content per layer); Docker's
// overlay2 count also includes symlink target lengths, a few kB. 1%, not
// more: counting the layer tar streams (headers and padding) was 1.8% over
// on the sidecar image and 5-7.5% over on the stand-ins.
const sizeTolerance = 0.01

// TestMeasureAgreesWithDocker shows that the pipeline's "uncompressed" size
// (imagesize.Measure on an image export) is the number `docker images`
// shows, so the budget means the same in both places. It measures the real
// image and the stand-in bases (the Go one has thousands of small files,
// where tar headers would be counted if the measure were wrong).
func TestMeasureAgreesWithDocker(t *testing.T) {
	d := requireDocker(t)
	s := ensureStandins(t, d)
	img := buildImage(t, d, s)
	for _, ref := range []string{img.ref, s.Runtime, s.Go} {
		t.Run(ref, func(t *testing.T) {
			dir := t.TempDir()
			save := filepath.Join(dir, "save.tar")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // safety net
			defer cancel()
			if _, err := d.output(ctx, "save", "-o", save, ref); err != nil {
				t.Fatal(err)
			}
			layout := filepath.Join(dir, "oci.tar")
			if err := ociFromSave(save, layout); err != nil {
				t.Fatalf("convert docker save of %s to an OCI layout: %v", ref, err)
			}
			sizes, err := imagesize.Measure(layout)
			if err != nil {
				t.Fatal(err)
			}
			if len(sizes) != 1 {
				t.Fatalf("measured %d images, want 1: %+v", len(sizes), sizes)
			}
			got := sizes[0]
			want := inspectImage(t, d, ref).Size
			// The layers are plain tar here, so Compressed is the tar
			// stream: what the measure counted before it counted content.
			t.Logf("%s: docker %d bytes, measured %d (%+.2f%%), layer tar streams %d (%+.2f%%), %d layers",
				ref, want, got.Uncompressed, diff(got.Uncompressed, want)*100, got.Compressed, diff(got.Compressed, want)*100, got.Layers)
			if math.Abs(diff(got.Uncompressed, want)) > sizeTolerance {
				t.Errorf("measured %d bytes (%s), docker image inspect says %d (%s): more than %.0f%% apart",
					got.Uncompressed, imagesize.Human(got.Uncompressed), want, imagesize.Human(want), sizeTolerance*100)
			}
		})
	}
}

func diff(got, want int64) float64 { return float64(got-want) / float64(want) }

// saveManifest is one entry of `docker save`'s manifest.json (the legacy
// format, the only one Docker 20.10 writes; later versions add an OCI index
// beside it).
type saveManifest struct {
	Config string
	Layers []string
}

// ociFromSave rewrites a `docker save` tarball as an OCI image
// layout with plain-tar layers, the form the pipeline's exports take and
// imagesize.Measure reads. Layer contents are copied unchanged.
func ociFromSave(save, out string) error {
	small := map[string][]byte{}  // metadata files, by path
	blobs := map[string]ociBlob{} // every file's digest and size, by path
	if err := eachFile(save, func(name string, r io.Reader) error {
		h := sha256.New()
		var head limitedBuffer
		n, err := io.Copy(io.MultiWriter(h, &head), r)
		blobs[name] = ociBlob{digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), size: n}
		if n <= int64(len(head.b)) {
			small[name] = head.b
		}
		return err
	}); err != nil {
		return err
	}
	var ms []saveManifest
	if err := json.Unmarshal(small["manifest.json"], &ms); err != nil || len(ms) != 1 {
		return fmt.Errorf("manifest.json: %v (%d images, want 1)", err, len(ms))
	}
	cfg, ok := small[path.Clean(ms[0].Config)]
	if !ok {
		return fmt.Errorf("config %s missing", ms[0].Config)
	}
	cfgBlob := blobOf(cfg)
	var descs []map[string]any
	layers := map[string]ociBlob{}
	for _, l := range ms[0].Layers {
		b, ok := blobs[path.Clean(l)]
		if !ok {
			return fmt.Errorf("layer %s missing (or a link: not handled)", l)
		}
		layers[path.Clean(l)] = b
		descs = append(descs, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": b.digest, "size": b.size})
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfgBlob.digest, "size": cfgBlob.size},
		"layers": descs,
	})
	if err != nil {
		return err
	}
	manBlob := blobOf(manifest)
	index, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []map[string]any{{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manBlob.digest, "size": manBlob.size}}})
	if err != nil {
		return err
	}

	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, e := range []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blobName(cfgBlob.digest), cfg},
		{blobName(manBlob.digest), manifest},
	} {
		if err := writeEntry(tw, e.name, int64(len(e.data)), func(w io.Writer) error { _, err := w.Write(e.data); return err }); err != nil {
			return err
		}
	}
	written := map[string]bool{}
	if err := eachFile(save, func(name string, r io.Reader) error {
		b, ok := layers[name]
		if !ok || written[b.digest] {
			return nil
		}
		written[b.digest] = true
		return writeEntry(tw, blobName(b.digest), b.size, func(w io.Writer) error { _, err := io.Copy(w, r); return err })
	}); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// limitedBuffer keeps the first 4 MiB written to it (enough for any
// manifest or config) and discards the rest.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4<<20 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

type ociBlob struct {
	digest string
	size   int64
}

func blobOf(b []byte) ociBlob {
	s := sha256.Sum256(b)
	return ociBlob{"sha256:" + hex.EncodeToString(s[:]), int64(len(b))}
}

func blobName(digest string) string { return "blobs/sha256/" + digest[len("sha256:"):] }

func writeEntry(tw *tar.Writer, name string, size int64, body func(io.Writer) error) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	return body(tw)
}

// eachFile calls fn for every regular file in the tarball.
func eachFile(file string, fn func(name string, r io.Reader) error) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := ocilayout.Walk(f, func(h *tar.Header, r io.Reader) error {
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		if err := fn(path.Clean(h.Name), r); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}
