package imagesize_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/example/sidecar/ci/imagesize"
	"github.com/example/sidecar/ci/imagesize/imagesizetest"
)

func TestMeasure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		images []imagesizetest.Image
	}{
		{"single platform", []imagesizetest.Image{{Platform: "linux/amd64", LayerBytes: []int{300_000, 40_000}}}},
		{"two platforms under an index", []imagesizetest.Image{
			{Platform: "linux/amd64", LayerBytes: []int{500_000}},
			{Platform: "linux/arm64", LayerBytes: []int{200_000, 100_000, 1_000}},
		}},
		{"plain tar layers", []imagesizetest.Image{{Platform: "linux/amd64", LayerBytes: []int{300_000, 700, 0}, Plain: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "image.tar")
			wants, err := imagesizetest.Write(path, tc.images...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := imagesize.Measure(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(wants) {
				t.Fatalf("measured %d images, want %d: %+v", len(got), len(wants), got)
			}
			for i, w := range wants {
				g := got[i]
				if g.Platform != w.Platform || g.Compressed != w.Compressed || g.Uncompressed != w.Uncompressed {
					t.Errorf("image %d = %s compressed %d uncompressed %d; want %s %d %d",
						i, g.Platform, g.Compressed, g.Uncompressed, w.Platform, w.Compressed, w.Uncompressed)
				}
				// The content is incompressible, so only tar headers and
				// gzip framing make the blobs larger: not counted as content.
				if g.Uncompressed >= g.Compressed {
					t.Errorf("content %d not below the blobs' %d bytes: tar headers counted? %+v", g.Uncompressed, g.Compressed, g)
				}
			}
		})
	}
}

func TestMeasureRejectsBrokenTarballs(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar")
	if _, err := imagesizetest.Write(good, imagesizetest.Image{Platform: "linux/amd64", LayerBytes: []int{10_000}}); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain.tar")
	if _, err := imagesizetest.Write(plain, imagesizetest.Image{Platform: "linux/amd64", LayerBytes: []int{10_000}, Plain: true}); err != nil {
		t.Fatal(err)
	}
	// Rewrite a tarball (good unless from is given) dropping or corrupting entries.
	rewrite := func(name string, edit func(h *tar.Header, data []byte) ([]byte, bool), from ...string) string {
		orig := good
		if len(from) > 0 {
			orig = from[0]
		}
		src, err := os.ReadFile(orig)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		tr, tw := tar.NewReader(bytes.NewReader(src)), tar.NewWriter(&out)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			var data bytes.Buffer
			_, _ = data.ReadFrom(tr)
			b, keep := edit(h, data.Bytes())
			if !keep {
				continue
			}
			h.Size = int64(len(b))
			_ = tw.WriteHeader(h)
			_, _ = tw.Write(b)
		}
		_ = tw.Close()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	isLayer := func(h *tar.Header, data []byte) bool {
		return strings.HasPrefix(h.Name, "blobs/") && len(data) > 2 && data[0] == 0x1f && data[1] == 0x8b
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"no index", rewrite("noindex.tar", func(h *tar.Header, b []byte) ([]byte, bool) { return b, h.Name != "index.json" }), "no index.json"},
		{"missing layer", rewrite("nolayer.tar", func(h *tar.Header, b []byte) ([]byte, bool) { return b, !isLayer(h, b) }), "missing"},
		{"corrupt layer", rewrite("corrupt.tar", func(h *tar.Header, b []byte) ([]byte, bool) {
			if isLayer(h, b) {
				c := bytes.Clone(b)
				c[len(c)-12] ^= 0xff // inside the deflate stream / trailer
				return c, true
			}
			return b, true
		}), "layer"},
		// No gzip CRC here: only the digest check can catch this.
		{"corrupt plain layer", rewrite("corruptplain.tar", func(h *tar.Header, b []byte) ([]byte, bool) {
			if strings.HasPrefix(h.Name, "blobs/") && len(b) > 2048 && string(b[257:262]) == "ustar" {
				c := bytes.Clone(b)
				c[1024+5000] ^= 0xff // the file's content: after the dir's and file's headers
				return c, true
			}
			return b, true
		}, plain), "does not match"},
		{"not a file", filepath.Join(dir, "absent.tar"), "open image tarball"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := imagesize.Measure(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Measure(%s) err = %v, want it to mention %q", tc.name, err, tc.want)
			}
		})
	}
}

func TestCheckAndTable(t *testing.T) {
	images := []imagesize.Image{
		{Platform: "linux/amd64", Compressed: 8_000_000, Uncompressed: 20_000_000},
		{Platform: "linux/arm64", Compressed: 21_000_000, Uncompressed: 61_234_567},
	}
	err := imagesize.Check(images, 50_000_000)
	var over *imagesize.OverBudgetError
	if !errors.As(err, &over) || over.Image.Platform != "linux/arm64" {
		t.Fatalf("Check err = %v, want an OverBudgetError for linux/arm64", err)
	}
	for _, want := range []string{"linux/arm64", "61.2 MB", "61234567", "21.0 MB", "50.0 MB"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "amd64") {
		t.Errorf("error names the platform within budget: %q", err)
	}
	if err := imagesize.Check(images[:1], 50_000_000); err != nil {
		t.Errorf("within budget: %v", err)
	}

	// Every image over budget is reported, not only the first; exactly
	// the budget is within it.
	for _, tc := range []struct {
		name   string
		images []imagesize.Image
		over   []string
	}{
		{"exactly at budget", []imagesize.Image{{Platform: "linux/amd64", Uncompressed: 50_000_000}}, nil},
		{"two over, one at budget", []imagesize.Image{
			{Platform: "linux/amd64", Uncompressed: 50_000_001},
			{Platform: "linux/arm/v7", Uncompressed: 50_000_000},
			{Platform: "linux/arm64", Uncompressed: 70_000_000},
		}, []string{"linux/amd64", "linux/arm64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The table agrees with Check, line by line.
			var b strings.Builder
			if err := imagesize.Table(&b, tc.images, 50_000_000); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(b.String()), "\n")[1:]
			for i, img := range tc.images {
				want := "ok"
				if slices.Contains(tc.over, img.Platform) {
					want = "OVER BUDGET"
				}
				if i >= len(lines) || !strings.HasSuffix(lines[i], want) {
					t.Errorf("table line for %s does not end with %q:\n%s", img.Platform, want, b.String())
				}
			}
			err := imagesize.Check(tc.images, 50_000_000)
			if len(tc.over) == 0 {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check = nil, want %v over budget", tc.over)
			}
			errs := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			}
			var got []string
			for _, e := range errs {
				var o *imagesize.OverBudgetError
				if !errors.As(e, &o) {
					t.Fatalf("error %v is not an OverBudgetError", e)
				}
				got = append(got, o.Image.Platform)
			}
			if !slices.Equal(got, tc.over) {
				t.Errorf("over budget: %v, want %v (error %q)", got, tc.over, err)
			}
			for _, p := range tc.over {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not name %s", err, p)
				}
			}
			if strings.Contains(err.Error(), "linux/arm/v7") {
				t.Errorf("error names the image exactly at budget: %q", err)
			}
			// A byte over reads 50.0 MB against 50.0 MB: the bytes of
			// both show which is larger.
			for _, want := range []string{"50000001 bytes", "50000000 bytes"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}

	var b strings.Builder
	if err := imagesize.Table(&b, images, 50_000_000); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "linux/amd64") || !strings.HasSuffix(lines[1], "ok") ||
		!strings.Contains(lines[2], "61.2 MB") || !strings.HasSuffix(lines[2], "OVER BUDGET") {
		t.Errorf("table:\n%s", b.String())
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
		says string // part of the error's reason
	}{
		{"50MB", 50_000_000, true, ""},
		{"50 MB", 50_000_000, true, ""},
		{"48MiB", 48 << 20, true, ""},
		{"52428800", 52428800, true, ""},
		{"0.5GB", 500_000_000, true, ""},
		{"1kB", 1000, true, ""},
		// Decimal fractions are exact: 1.001 is no float64, and the
		// nearest one times 1e9 came to 1000999999.9…, a byte short.
		{"1.001GB", 1_001_000_000, true, ""},
		{"1.005MB", 1_005_000, true, ""},
		{"2.01kB", 2010, true, ""},
		{"1.1MiB", 1153433, true, ""}, // 1153433.6: no fraction of a byte is allowed
		{"1.5B", 1, true, ""},
		{"9999.999999999999GB", 9_999_999_999_999, true, ""},
		{"10000.000000001GB", 0, false, ""}, // a byte over
		{"", 0, false, ""},
		{"fifty", 0, false, ""},
		{"-5MB", 0, false, ""},
		{"0", 0, false, "a budget of nothing"},
		{"0.0", 0, false, "a budget of nothing"},
		{"00", 0, false, "a budget of nothing"},
		{"50TB", 0, false, ""},
		{"NaN", 0, false, ""},
		{"nanMB", 0, false, ""},
		{"Inf", 0, false, ""},
		{"0.5B", 0, false, ""},   // under a byte: no budget, as 0 is not
		{"1e-9MB", 0, false, ""}, // the same
		{"1B", 1, true, ""},
		{"100B", 100, true, ""},
		{"1000000", 1_000_000, true, ""},
		{"10000GB", 10_000_000_000_000, true, ""},
		{"10001GB", 0, false, ""},
		{"20000000000000", 0, false, ""},
		// A plain number is whole bytes from 1000000: a smaller one
		// surely meant another unit.
		{"999999", 0, false, "write 999999B for bytes)"},
		{"50", 0, false, "write 50MB for 50 megabytes, or 50B for bytes"},
		{"1000000.5", 0, false, "whole bytes"},
		// Only the documented forms: no exponent, sign, base or other case.
		{"1e5", 0, false, ""},
		{"1e8", 0, false, ""},
		{"+50MB", 0, false, ""},
		{"0x10MB", 0, false, ""},
		{"50KB", 0, false, "write kB or KiB"},
		{"KB", 0, false, ""},
		{"50mb", 0, false, "case-sensitive: write MB"},
		{"50kib", 0, false, "case-sensitive: write KiB"},
	} {
		got, err := imagesize.ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.says != "" && !strings.Contains(fmt.Sprint(err), tc.says) {
			t.Errorf("ParseSize(%q): %v; want it to say %q", tc.in, err, tc.says)
		}
		if strings.Contains(fmt.Sprint(err), "999999MB") {
			t.Errorf("ParseSize(%q): %v; 999999MB is no likely meaning", tc.in, err)
		}
		if err != nil && !strings.Contains(err.Error(), "MB") {
			t.Errorf("error %q does not say what is accepted", err)
		}
	}
}

func TestDigest(t *testing.T) {
	dir := t.TempDir()
	one := filepath.Join(dir, "one.tar")
	two := filepath.Join(dir, "two.tar")
	if _, err := imagesizetest.Write(one, imagesizetest.Image{Platform: "linux/amd64", LayerBytes: []int{100}}); err != nil {
		t.Fatal(err)
	}
	if _, err := imagesizetest.Write(two, imagesizetest.Image{Platform: "linux/amd64", LayerBytes: []int{100}},
		imagesizetest.Image{Platform: "linux/arm64", LayerBytes: []int{100}}); err != nil {
		t.Fatal(err)
	}
	d1, err := imagesize.Digest(one)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := imagesize.Digest(two)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d1, "sha256:") || len(d1) != 71 || d1 == d2 {
		t.Errorf("digests %q %q", d1, d2)
	}
	// Same content, same digest: the property the idempotent push relies on.
	again := filepath.Join(dir, "again.tar")
	if _, err := imagesizetest.Write(again, imagesizetest.Image{Platform: "linux/amd64", LayerBytes: []int{100}}); err != nil {
		t.Fatal(err)
	}
	if d, _ := imagesize.Digest(again); d != d1 {
		t.Errorf("rewritten identical image digest %s != %s", d, d1)
	}
}
