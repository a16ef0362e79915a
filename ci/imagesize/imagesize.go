// Package imagesize measures container images in OCI image-layout tarballs
// (what `docker save`-like exports and Dagger's Container.Export write) and
// checks them against a size budget.
//
// Two figures per platform: Compressed is the sum of the layer blobs as a
// registry stores them (ECR's imageSizeInBytes); Uncompressed is the
// content of the layers, which is what `docker images` shows (see
// contentSize for the exact definition).
package imagesize

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Image is the size of one platform's image.
type Image struct {
	Platform     string // os/arch[/variant]
	Compressed   int64  // layer blobs as stored in a registry
	Uncompressed int64  // layer content, as `docker images` reports
	Layers       int
}

type descriptor struct {
	MediaType string    `json:"mediaType"`
	Digest    string    `json:"digest"`
	Size      int64     `json:"size"`
	Platform  *platform `json:"platform,omitempty"`
}

type platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

func (p *platform) String() string {
	if p == nil {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// index covers both an OCI index and a Docker manifest list; manifest
// covers both image manifest formats. They share field names.
type index struct {
	MediaType string       `json:"mediaType"`
	Manifests []descriptor `json:"manifests"`
	Layers    []descriptor `json:"layers"`
	Config    *descriptor  `json:"config"`
}

// metadataLimit bounds what is held in memory: indexes, manifests and
// configs are small; layers are streamed.
const metadataLimit = 4 << 20

// Measure reads the OCI layout tarball at file and returns the size of
// every image manifest in it, in index order.
func Measure(file string) ([]Image, error) {
	small, err := readSmall(file)
	if err != nil {
		return nil, err
	}
	top, ok := small["index.json"]
	if !ok {
		return nil, fmt.Errorf("%s: no index.json: not an OCI image layout tarball", file)
	}
	var images []Image
	layerOf := map[string][]int{} // layer digest -> indexes into images
	var walk func(raw []byte, plat *platform, depth int) error
	walk = func(raw []byte, plat *platform, depth int) error {
		if depth > 4 {
			return fmt.Errorf("%s: indexes nested too deep", file)
		}
		var doc index
		if err := json.Unmarshal(raw, &doc); err != nil {
			return fmt.Errorf("%s: bad JSON document: %w", file, err)
		}
		if doc.Config != nil { // an image manifest
			img := Image{Platform: plat.String(), Layers: len(doc.Layers)}
			if img.Platform == "" {
				img.Platform, _ = configPlatform(small, doc.Config.Digest)
			}
			for _, l := range doc.Layers {
				img.Compressed += l.Size
				layerOf[l.Digest] = append(layerOf[l.Digest], len(images))
			}
			images = append(images, img)
			return nil
		}
		for _, d := range doc.Manifests {
			if isAttestation(d) {
				continue
			}
			blob, ok := small[blobPath(d.Digest)]
			if !ok {
				return fmt.Errorf("%s: manifest %s listed but missing", file, d.Digest)
			}
			p := d.Platform
			if p == nil {
				p = plat
			}
			if err := walk(blob, p, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(top, nil, 0); err != nil {
		return nil, err
	}
	if len(images) == 0 {
		return nil, fmt.Errorf("%s: no image manifest found", file)
	}
	if err := addUncompressed(file, small, images, layerOf); err != nil {
		return nil, err
	}
	return images, nil
}

// isAttestation skips BuildKit's provenance/SBOM entries, which are not
// images anyone runs.
func isAttestation(d descriptor) bool {
	return d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown"
}

func blobPath(digest string) string {
	alg, hexsum, _ := strings.Cut(digest, ":")
	return path.Join("blobs", alg, hexsum)
}

func configPlatform(small map[string][]byte, digest string) (string, bool) {
	var p platform
	if err := json.Unmarshal(small[blobPath(digest)], &p); err != nil || p.OS == "" {
		return "unknown", false
	}
	return p.String(), true
}

func readSmall(file string) (map[string][]byte, error) {
	small := map[string][]byte{}
	err := eachImageEntry(file, func(h *tar.Header, tr *tar.Reader) error {
		if h.Typeflag != tar.TypeReg || h.Size > metadataLimit {
			return nil
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return fmt.Errorf("%s: read %s: %w", file, h.Name, err)
		}
		small[path.Clean(h.Name)] = b
		return nil
	})
	if err != nil {
		return nil, err
	}
	return small, nil
}

// eachImageEntry calls fn for each entry of the image tarball file.
func eachImageEntry(file string, fn func(*tar.Header, *tar.Reader) error) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("open image tarball: %w", err)
	}
	defer f.Close()
	return eachEntry(f, file+": read tar", fn)
}

// eachEntry calls fn for each entry of the tar stream r, with the reader
// at that entry's content, until the end, a read error (wrapped after
// what) or an error from fn (returned as it is).
func eachEntry(r io.Reader, what string, fn func(*tar.Header, *tar.Reader) error) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if err := fn(h, tr); err != nil {
			return err
		}
	}
}

// addUncompressed streams every layer once, checking its digest and
// counting its content bytes.
func addUncompressed(file string, small map[string][]byte, images []Image, layerOf map[string][]int) error {
	byPath := map[string]string{}
	for d := range layerOf {
		byPath[blobPath(d)] = d
	}
	seen := map[string]bool{}
	err := eachImageEntry(file, func(h *tar.Header, tr *tar.Reader) error {
		digest, ok := byPath[path.Clean(h.Name)]
		if !ok || seen[digest] {
			return nil
		}
		n, err := contentSize(tr, digest)
		if err != nil {
			return fmt.Errorf("%s: layer %s: %w", file, digest, err)
		}
		seen[digest] = true
		for _, i := range layerOf[digest] {
			images[i].Uncompressed += n
		}
		return nil
	})
	if err != nil {
		return err
	}
	for d := range layerOf {
		if !seen[d] {
			return fmt.Errorf("%s: layer %s listed but missing", file, d)
		}
	}
	return nil
}

// contentSize reads one layer blob (gzip or plain tar) and returns the
// sum of the sizes of the regular files in it: the bytes the layer adds on
// disk, which is what Docker reports as an image's size (the sum of its
// layers' file sizes). Not counted: tar headers and block padding (512
// bytes and up per entry, which made the tar stream over-count), and
// directories, symlinks, hard links and whiteouts, which have no content of
// their own. A file rewritten by a later layer counts in both layers, as
// Docker counts it.
//
// The whole blob is read so that its digest can be checked.
func contentSize(r io.Reader, digest string) (int64, error) {
	sum := sha256.New()
	br := newPeekReader(io.TeeReader(r, sum))
	if br.zstd() {
		return 0, errors.New("zstd-compressed layer: export with gzip or no compression to measure it")
	}
	var layer io.Reader = br
	if br.gzipped() {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return 0, err
		}
		layer = zr
	}
	var n int64
	err := eachEntry(layer, "read layer tar", func(h *tar.Header, _ *tar.Reader) error {
		if h.Typeflag == tar.TypeReg {
			n += h.Size
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	// Drain what follows the tar's end marker (padding, the gzip trailer)
	// so the digest covers the whole blob and gzip checks its CRC.
	if _, err := io.Copy(io.Discard, layer); err != nil {
		return 0, fmt.Errorf("read layer: %w", err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return 0, err
	}
	if got := "sha256:" + hex.EncodeToString(sum.Sum(nil)); strings.HasPrefix(digest, "sha256:") && got != digest {
		return 0, fmt.Errorf("content digest %s does not match", got)
	}
	return n, nil
}

// peekReader sniffs the compression from magic bytes rather than trusting
// the media type, which varies between OCI and Docker formats.
type peekReader struct {
	r    io.Reader
	head []byte
}

func newPeekReader(r io.Reader) *peekReader {
	head := make([]byte, 4)
	n, _ := io.ReadFull(r, head)
	return &peekReader{r: r, head: head[:n]}
}

func (p *peekReader) gzipped() bool {
	return len(p.head) >= 2 && p.head[0] == 0x1f && p.head[1] == 0x8b
}

func (p *peekReader) zstd() bool {
	return len(p.head) == 4 && p.head[0] == 0x28 && p.head[1] == 0xb5 && p.head[2] == 0x2f && p.head[3] == 0xfd
}

func (p *peekReader) Read(b []byte) (int, error) {
	if len(p.head) > 0 {
		n := copy(b, p.head)
		p.head = p.head[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// OverBudgetError says which platform's image is too large.
type OverBudgetError struct {
	Image  Image
	Budget int64
}

func (e *OverBudgetError) Error() string {
	return fmt.Sprintf("image for %s is over the size budget: %s uncompressed (%d bytes; compressed %s) > budget %s (SIZE_BUDGET)",
		e.Image.Platform, Human(e.Image.Uncompressed), e.Image.Uncompressed, Human(e.Image.Compressed), Human(e.Budget))
}

// Check returns an error for every image whose uncompressed size exceeds
// budget, joined.
func Check(images []Image, budget int64) error {
	var errs []error
	for _, img := range images {
		if img.Uncompressed > budget {
			errs = append(errs, &OverBudgetError{Image: img, Budget: budget})
		}
	}
	return errors.Join(errs...)
}

// Table renders the per-platform sizes against the budget.
func Table(w io.Writer, images []Image, budget int64) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintf(tw, "platform\tcompressed\tuncompressed\tbudget\tresult\n")
	for _, img := range images {
		result := "ok"
		if img.Uncompressed > budget {
			result = "OVER BUDGET"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", img.Platform, Human(img.Compressed), Human(img.Uncompressed), Human(budget), result)
	}
	return tw.Flush()
}

// Human formats bytes in decimal units, as `docker images` does.
func Human(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// ParseSize parses a byte count: a plain integer, or a number with one of
// the units kB, MB, GB (decimal, as docker reports) or KiB, MiB, GiB.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   float64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1},
	}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 || v*mult > 1e13 {
		return 0, fmt.Errorf("%q is not a size: use bytes or a number with kB, MB, GB, KiB, MiB or GiB (e.g. 50MB)", s)
	}
	return int64(v * mult), nil
}

// Digest returns the digest of the one image (or image index) that the
// tarball's index.json names: the digest a registry reports when the same
// image is pushed. It fails when index.json does not name exactly one.
func Digest(file string) (string, error) {
	small, err := readSmall(file)
	if err != nil {
		return "", err
	}
	var top index
	raw, ok := small["index.json"]
	if !ok {
		return "", fmt.Errorf("%s: no index.json: not an OCI image layout tarball", file)
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		return "", fmt.Errorf("%s: index.json: %w", file, err)
	}
	if len(top.Manifests) != 1 {
		return "", fmt.Errorf("%s: index.json names %d images, want 1", file, len(top.Manifests))
	}
	return top.Manifests[0].Digest, nil
}
