package ci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"dagger.io/dagger"

	"github.com/example/sidecar/ci/imagefiles"
	"github.com/example/sidecar/ci/imagesize"
)

// Image is the built, size-checked image: one container per platform.
type Image struct {
	Variants  []*dagger.Container // in Config.Platforms order
	Platforms []dagger.Platform   // of Variants
	Host      *dagger.Container   // the Config.HostPlatform variant
	Sizes     []imagesize.Image
	Digest    string // image index digest of the exported OCI image
	// Files holds, per platform, the image files the release reads (the
	// sidecar binary for govulncheck and the SBOM, the apk database).
	Files imagefiles.Files
}

// sourceExcludes keep the build context small and cache-friendly; the
// Dockerfile only needs the Go module.
func sourceExcludes() []string {
	return []string{".git", ".github", "dist", "bin", "*.test", "*.out", "*.tar", ".ci"}
}

// build runs the Dockerfile per platform, exports the multi-platform image
// once as an OCI tarball, measures it, and fails on the size budget before
// anything leaves this function. Then it loads the host variant into the
// local Docker and keeps the tarball if asked.
func (r *Runner) build(ctx context.Context, client *dagger.Client, src source) (*Image, error) {
	cfg := r.Config
	dir := client.Host().Directory(cfg.Dir, dagger.HostDirectoryOpts{Exclude: sourceExcludes(), Gitignore: true})
	args := buildArgs(cfg, src)
	img := &Image{}
	for _, p := range cfg.Platforms {
		r.step("build: Dockerfile for %s", p)
		c := dir.DockerBuild(dagger.DirectoryDockerBuildOpts{Dockerfile: "Dockerfile", Platform: p, BuildArgs: args})
		img.Variants = append(img.Variants, c)
		img.Platforms = append(img.Platforms, p)
		if p == cfg.HostPlatform {
			img.Host = c
		}
	}

	tmp, err := os.MkdirTemp("", "sidecar-image-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory for the image export: %w", err)
	}
	defer os.RemoveAll(tmp)
	tarball := filepath.Join(tmp, "image.tar")
	r.step("build: exporting the %d-platform image to measure it", len(img.Variants))
	// Gzip, as publish uses: the exported digest is the one pushed.
	if _, err := client.Container().Export(ctx, tarball, dagger.ContainerExportOpts{
		PlatformVariants: img.Variants, ForcedCompression: dagger.ImageLayerCompressionGzip,
	}); err != nil {
		return nil, fmt.Errorf("build failed: %w%s", err, execOutput(err))
	}
	if img.Sizes, err = imagesize.Measure(tarball); err != nil {
		return nil, fmt.Errorf("measure the built image: %w", err)
	}
	if img.Digest, err = imagesize.Digest(tarball); err != nil {
		// Not fatal: only the idempotent-push check needs it, and without
		// it push treats existing tags as different images.
		r.step("build: note: no single image digest in the export (%v)", err)
	}
	if err := checkSizes(r.log(), cfg, img.Sizes); err != nil {
		return nil, err
	}
	if img.Files, err = imagefiles.Read(tarball, imagePaths()...); err != nil {
		return nil, fmt.Errorf("read the built image: %w", err)
	}
	r.step("build: image %s within the %s budget", orUnknown(img.Digest), imagesize.Human(cfg.SizeBudget))

	if cfg.OCITarball != "" {
		if err := moveFile(tarball, cfg.OCITarball); err != nil {
			return nil, fmt.Errorf("OCI_TARBALL: %w", err)
		}
		r.step("build: wrote OCI tarball %s", cfg.OCITarball)
	}
	if cfg.LocalImage != "" {
		r.step("build: loading %s image into local Docker as %s", cfg.HostPlatform, cfg.LocalImage)
		if err := img.Host.ExportImage(ctx, cfg.LocalImage); err != nil {
			return nil, fmt.Errorf("load %s into local Docker (set LOCAL_IMAGE=none to skip): %w", cfg.LocalImage, err)
		}
	}
	return img, nil
}

func buildArgs(cfg Config, src source) []dagger.BuildArg {
	var args []dagger.BuildArg
	add := func(name, value string) {
		if value != "" { // empty: the Dockerfile's default applies
			args = append(args, dagger.BuildArg{Name: name, Value: value})
		}
	}
	add("GO_IMAGE", cfg.GoImage)
	add("RUNTIME_IMAGE", cfg.RuntimeImage)
	add("VERSION", src.version)
	add("REVISION", src.revision)
	add("CREATED", src.created)
	add("SOURCE_DATE_EPOCH", src.epoch) // BuildKit: reproducible timestamps
	return args
}

// checkSizes prints the size table and fails naming each platform over
// the budget. Every configured platform must have been measured.
func checkSizes(w io.Writer, cfg Config, sizes []imagesize.Image) error {
	fmt.Fprintln(w)
	if err := imagesize.Table(w, sizes, cfg.SizeBudget); err != nil {
		return err
	}
	fmt.Fprintln(w)
	var measured []string
	for _, s := range sizes {
		measured = append(measured, s.Platform)
	}
	for _, p := range cfg.Platforms {
		if !slices.Contains(measured, string(p)) {
			return fmt.Errorf("the exported image has no %s variant (found %s)", p, strings.Join(measured, ", "))
		}
	}
	if err := imagesize.Check(sizes, cfg.SizeBudget); err != nil {
		return fmt.Errorf("size budget exceeded (nothing loaded or pushed): %w", err)
	}
	return nil
}

func moveFile(from, to string) error {
	if err := os.Rename(from, to); err == nil {
		return nil
	}
	in, err := os.Open(from) // across filesystems: copy
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func orUnknown(s string) string {
	if s == "" {
		return "(digest unknown)"
	}
	return s
}

// execOutput is the tail of a failed command's output, for errors whose
// message alone (an exit code) would not say what went wrong.
func execOutput(err error) string {
	var ee *dagger.ExecError
	if !errors.As(err, &ee) {
		return ""
	}
	const max = 4000
	tail := func(s string) string {
		if len(s) > max {
			return "…" + s[len(s)-max:]
		}
		return s
	}
	return fmt.Sprintf("\n--- stdout ---\n%s--- stderr ---\n%s", indent(tail(ee.Stdout)), indent(tail(ee.Stderr)))
}

// variant returns the container built for platform p ("linux/arm64/v8"
// matches linux/arm64).
func (img *Image) variant(p dagger.Platform) (*dagger.Container, bool) {
	parts := strings.Split(string(p), "/")
	if len(parts) > 2 {
		p = dagger.Platform(parts[0] + "/" + parts[1])
	}
	for i, q := range img.Platforms {
		if q == p {
			return img.Variants[i], true
		}
	}
	return nil, false
}
