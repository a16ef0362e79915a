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
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/example/sidecar/ci/ocilayout"
)

// Image is the size of one platform's image.
type Image struct {
	Platform     string // os/arch[/variant]
	Compressed   int64  // layer blobs as stored in a registry
	Uncompressed int64  // layer content, as `docker images` reports
	Layers       int
}

// Measure reads the OCI layout tarball at file and returns the size of
// every platform image in it, in index order.
func Measure(file string) ([]Image, error) {
	dir, err := os.MkdirTemp("", "imagesize-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	idx, err := ocilayout.Open(file, dir)
	if err != nil {
		return nil, err
	}
	images, err := MeasureIndex(idx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return images, nil
}

// MeasureIndex returns the size of every platform image of idx (read
// with ocilayout.Images), in index order. Each layer is read once, even
// when several images share it, and its digest is checked.
func MeasureIndex(idx v1.ImageIndex) ([]Image, error) {
	var images []Image
	layers := map[v1.Hash]v1.Layer{}
	var order []v1.Hash
	layerOf := map[v1.Hash][]int{} // layer digest -> indexes into images
	err := ocilayout.Images(idx, func(platform string, img v1.Image) error {
		m, err := img.Manifest()
		if err != nil {
			return fmt.Errorf("%s manifest: %w", platform, err)
		}
		im := Image{Platform: platform, Layers: len(m.Layers)}
		for _, l := range m.Layers {
			im.Compressed += l.Size
			if _, ok := layers[l.Digest]; !ok {
				if layers[l.Digest], err = img.LayerByDigest(l.Digest); err != nil {
					return fmt.Errorf("layer %s: %w", l.Digest, err)
				}
				order = append(order, l.Digest)
			}
			layerOf[l.Digest] = append(layerOf[l.Digest], len(images))
		}
		images = append(images, im)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(images) == 0 {
		return nil, errors.New("no image manifest found")
	}
	for _, d := range order {
		n, err := layerContent(layers[d], d)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", d, err)
		}
		for _, i := range layerOf[d] {
			images[i].Uncompressed += n
		}
	}
	return images, nil
}

// layerContent is contentSize of the layer's blob as stored.
func layerContent(l v1.Layer, d v1.Hash) (int64, error) {
	rc, err := l.Compressed()
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("listed but missing: %w", err)
	}
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	return contentSize(rc, d.String())
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
	err := ocilayout.Walk(layer, func(h *tar.Header, _ io.Reader) error {
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
	// Both in bytes too: a byte over reads "50.0 MB > budget 50.0 MB".
	return fmt.Sprintf("image for %s is over the size budget: %s uncompressed (%d bytes; compressed %s) > budget %s (%d bytes, SIZE_BUDGET)",
		e.Image.Platform, Human(e.Image.Uncompressed), e.Image.Uncompressed, Human(e.Image.Compressed), Human(e.Budget), e.Budget)
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

// A size budget's limits (ParseSize).
const (
	MaxSize = 10_000 * 1_000_000_000 // 10000GB
	// MinPlainBytes is the smallest size written without a unit: a
	// smaller one, such as 50, surely meant MB (no image is 50 bytes).
	MinPlainBytes = 1_000_000
)

// sizeUnits are ParseSize's units: decimal as docker reports, binary, and
// bytes. KB is not one: some read it as 1000 bytes, some as 1024.
var sizeUnits = []sizeUnit{{"kB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}}

type sizeUnit struct {
	name string
	mult int64
}

// Units are the units ParseSize takes, in the order messages list them.
func Units() []string {
	var us []string
	for _, u := range sizeUnits {
		us = append(us, u.name)
	}
	return us
}

// SizeForms says what ParseSize takes (for "want …" messages).
func SizeForms() string {
	us := Units()
	return fmt.Sprintf("a size from 1 byte to %dGB: a number with %s or %s (e.g. 50MB), or a whole number of bytes from %d",
		MaxSize/1_000_000_000, strings.Join(us[:len(us)-1], ", "), us[len(us)-1], MinPlainBytes)
}

// SizeError is ParseSize's refusal: Value is not of SizeForms; Reason, if
// any, says more.
type SizeError struct{ Value, Reason string }

func (e *SizeError) Error() string {
	s := fmt.Sprintf("%q is not %s", e.Value, SizeForms())
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	return s
}

// sizeRE is a decimal number (no sign, exponent, Inf or NaN) and a unit.
var sizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$`)

// ParseSize parses a size budget of SizeForms.
func ParseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, &SizeError{Value: s}
	}
	num, unit := m[1], m[2]
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, &SizeError{Value: s}
	}
	if unit == "" {
		return plainBytes(s, num, v)
	}
	i := slices.IndexFunc(sizeUnits, func(u sizeUnit) bool { return u.name == unit })
	switch {
	case unit == "KB":
		return 0, &SizeError{Value: s, Reason: "KB is 1000 bytes to some, 1024 to others: write kB or KiB"}
	case i < 0:
		for _, u := range sizeUnits {
			if strings.EqualFold(u.name, unit) {
				return 0, &SizeError{Value: s, Reason: "units are case-sensitive: write " + u.name}
			}
		}
		return 0, &SizeError{Value: s}
	}
	// Exact, in whole bytes: in float64, 1.001GB came to 1000999999.9….
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, &SizeError{Value: s}
	}
	r.Mul(r, new(big.Rat).SetInt64(sizeUnits[i].mult))
	bytes := new(big.Int).Quo(r.Num(), r.Denom()) // rounded down: the budget is the most allowed
	// Under a byte is no budget, as 0 is not.
	if bytes.Sign() > 0 && r.Cmp(new(big.Rat).SetInt64(MaxSize)) <= 0 {
		return bytes.Int64(), nil
	}
	return 0, &SizeError{Value: s}
}

// plainBytes is ParseSize of a number without a unit: whole bytes, from
// MinPlainBytes.
func plainBytes(s, num string, v float64) (int64, error) {
	whole := !strings.Contains(num, ".")
	switch {
	case whole && v >= MinPlainBytes && v <= MaxSize:
		return int64(v), nil
	case v > MaxSize:
		return 0, &SizeError{Value: s}
	case !whole && v >= MinPlainBytes:
		return 0, &SizeError{Value: s, Reason: "a number without a unit is whole bytes"}
	case v == 0:
		return 0, &SizeError{Value: s, Reason: "a budget of nothing: no image meets it"}
	}
	var say []string
	if v < 1000 { // a plausible count of megabytes
		say = append(say, fmt.Sprintf("%sMB for %s megabytes", num, num))
	}
	if whole {
		say = append(say, num+"B for bytes")
	}
	reason := fmt.Sprintf("a number without a unit is bytes, and under %d surely meant another unit", MinPlainBytes)
	if len(say) > 0 {
		reason += ": write " + strings.Join(say, ", or ")
	}
	return 0, &SizeError{Value: s, Reason: reason}
}

// Digest returns the digest of the one image (or image index) that the
// tarball's index.json names: the digest a registry reports when the same
// image is pushed. It fails when index.json does not name exactly one.
func Digest(file string) (string, error) {
	dir, err := os.MkdirTemp("", "imagesize-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	idx, err := ocilayout.Open(file, dir)
	if err != nil {
		return "", err
	}
	d, err := IndexDigest(idx)
	if err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	return d, nil
}

// IndexDigest is Digest of a layout's index (index.json).
func IndexDigest(idx v1.ImageIndex) (string, error) {
	top, err := idx.IndexManifest()
	if err != nil {
		return "", fmt.Errorf("index.json: %w", err)
	}
	if len(top.Manifests) != 1 {
		return "", fmt.Errorf("index.json names %d images, want 1", len(top.Manifests))
	}
	return top.Manifests[0].Digest.String(), nil
}
