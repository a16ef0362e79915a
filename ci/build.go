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

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/imagefiles"
	"github.com/example/sidecar/ci/imagesize"
	"github.com/example/sidecar/ci/ocilayout"
	"github.com/example/sidecar/ci/tmpdir"
)

// Image is the built, size-checked image: one container per platform.
type Image struct {
	Variants  []*dagger.Container // in Config.Platforms order
	Platforms []dagger.Platform   // of Variants
	// Engine is the engine's own platform: the Go build runs there, and
	// the smoke test runs that variant.
	Engine dagger.Platform
	Sizes  []imagesize.Image
	Digest string // image index digest of the exported OCI image
	// Files holds, per platform, the image files the release reads (the
	// sidecar binary for govulncheck and the SBOM, the apk database).
	Files imagefiles.Files
	// Bases are the base images as configured and as pinned for the
	// build (name:tag@digest); the provenance records the pins.
	Bases []PinnedImage
	// Index is the exported image, read from its OCI layout (the local
	// load reads it).
	Index v1.ImageIndex
}

// PinnedImage is a base image build argument resolved to a digest.
type PinnedImage struct {
	Arg, Ref, Pinned string // e.g. RUNTIME_IMAGE, alpine:3.22, docker.io/library/alpine:3.22@sha256:…
}

// pinBaseImages resolves each base image to the digest its tag points at
// now, so the build uses exactly the images the provenance records even
// if a tag moves mid-run. Each image is resolved for every platform it is
// used on: RUNTIME_IMAGE for every target platform, GO_IMAGE for the
// engine's (FROM --platform=$BUILDPLATFORM). The engine fails from() for
// a platform the image's index lacks (engine/server/resolver/resolver.go
// Resolver.ResolveImageConfig, metadata.go imageConfigMetadataChildrenHandler),
// so such an image fails here, before any build, naming the variable,
// the reference and the platform. The engine answers the root
// descriptor's digest (the index), the same for every platform.
func pinBaseImages(ctx context.Context, client *dagger.Client, cfg config.Config, engine dagger.Platform) ([]PinnedImage, error) {
	var out []PinnedImage
	for _, b := range baseImages(cfg) {
		plats := []dagger.Platform{engine}
		hint := "use an image that has it (the Go build runs on the engine's platform)"
		if b.Arg == "RUNTIME_IMAGE" {
			plats = cfg.Platforms
			hint = "use an image that has it, or leave it out of PLATFORMS"
		}
		ref := config.Shown(b.Arg, b.Ref) // as printed
		for _, plat := range plats {
			pinned, err := client.Container(dagger.ContainerOpts{Platform: plat}).From(b.Ref).ImageRef(ctx)
			// The engine's reason is read before masking, which could cut it.
			noPlatform := err != nil && strings.Contains(err.Error(), "no manifest matches requested platform")
			err = config.ShownErr(b.Arg, b.Ref, err) // the engine's error may quote the reference
			switch {
			case noPlatform:
				return nil, fmt.Errorf("%s=%s has no image for %s (nothing was built): %w; %s", b.Arg, ref, plat, err, hint)
			case err != nil:
				return nil, fmt.Errorf("resolve %s=%s to a digest for %s (nothing was built): %w", b.Arg, ref, plat, err)
			}
			if !strings.Contains(pinned, "@sha256:") {
				return nil, fmt.Errorf("resolve %s=%s for %s: the engine answered %q, not a reference with a digest", b.Arg, ref, plat, config.Shown(b.Arg, pinned))
			}
			if len(out) > 0 && out[len(out)-1].Arg == b.Arg {
				if prev := out[len(out)-1].Pinned; prev != pinned {
					return nil, fmt.Errorf("resolve %s=%s: %s for %s but %s for %s; the tag moved during the run, run again",
						b.Arg, ref, config.Shown(b.Arg, prev), plats[0], config.Shown(b.Arg, pinned), plat)
				}
				continue
			}
			out = append(out, PinnedImage{Arg: b.Arg, Ref: b.Ref, Pinned: pinned})
		}
	}
	return out, nil
}

// sourceExcludes keep the build context small and cache-friendly; the
// Dockerfile only needs the Go module.
func sourceExcludes() []string {
	return []string{".git", ".github", "dist", "bin", "*.test", "*.out", "*.tar", ".ci"}
}

// patternEscape makes a path match itself as an exclude pattern (the
// engine's filter reads *, ?, [ and \ as pattern syntax).
func patternEscape(p string) string {
	var b strings.Builder
	for _, r := range p {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func stepBuild() Step {
	return Step{Name: "build", Doc: "pins the base images to digests for every platform they are used on, " +
		"runs the Dockerfile per platform of PLATFORMS and exports the multi-platform image once as an OCI tarball.",
		do: func(ctx context.Context, s *run) error {
			img, err := s.build(ctx)
			s.img = img
			return err
		}}
}

// build runs the Dockerfile per platform, exports the multi-platform image
// once as an OCI tarball and reads back the files the release needs.
func (s *run) build(ctx context.Context) (*Image, error) {
	cfg := s.Config
	engine := s.enginePlatform
	img := &Image{Engine: engine}
	var err error
	if img.Bases, err = pinBaseImages(ctx, s.client, cfg, engine); err != nil {
		return nil, err
	}
	args := buildArgs(cfg, s.src, engine)
	for _, b := range img.Bases {
		s.step("%s: %s %s is %s", s.target, b.Arg, config.Shown(b.Arg, b.Ref), config.Shown(b.Arg, b.Pinned))
		args = setArg(args, b.Arg, b.Pinned)
	}
	s.dockerBuilds(img, args)
	if s.tmp, err = tmpdir.New(exportDirPrefix); err != nil {
		return nil, fmt.Errorf("temporary directory for the image export: %w", err)
	}
	s.step("%s: exporting the %d-platform image", s.target, len(img.Variants))
	// Gzip, as publish uses: the exported digest is the one pushed.
	if _, err := s.client.Container().Export(ctx, s.tarball(), dagger.ContainerExportOpts{
		PlatformVariants: img.Variants, ForcedCompression: dagger.ImageLayerCompressionGzip,
	}); err != nil {
		return nil, fmt.Errorf("build failed: %w%s", err, execOutput(err))
	}
	// One read of the export: its digest, the sizes, the release's files
	// and the local load.
	if img.Index, err = ocilayout.Open(s.tarball(), filepath.Join(s.tmp.Path, "layout")); err != nil {
		return nil, fmt.Errorf("read the built image: %w", err)
	}
	if img.Digest, err = imagesize.IndexDigest(img.Index); err != nil {
		// Not fatal: only the idempotent-push check needs it, and without
		// it push treats existing tags as different images.
		s.step("%s: note: no single image digest in the export (%v)", s.target, err)
	}
	if img.Files, err = imagefiles.FromIndex(img.Index, imagePaths()...); err != nil {
		return nil, fmt.Errorf("read the built image: %w", err)
	}
	return img, nil
}

// dockerBuilds adds one Dockerfile build per platform of PLATFORMS to img.
func (s *run) dockerBuilds(img *Image, args []dagger.BuildArg) {
	// A push builds the commit: untracked files (Go compiles every file
	// of a package's directory) stay out; push already refused changes to
	// tracked ones. A local build takes the worktree as it is.
	excludes := sourceExcludes()
	for _, p := range s.ref.Untracked {
		excludes = append(excludes, patternEscape(strings.TrimSuffix(p, "/")))
	}
	dir := s.client.Host().Directory(s.Config.Dir, dagger.HostDirectoryOpts{Exclude: excludes, Gitignore: true})
	label := s.sourceLabel(s.src)
	if label == "" {
		s.step("%s: source repository unknown (no GitHub variables, no http(s) origin remote): no org.opencontainers.image.source label", s.target)
	}
	for _, p := range s.Config.Platforms {
		s.step("%s: Dockerfile for %s", s.target, p)
		c := dir.DockerBuild(dagger.DirectoryDockerBuildOpts{Dockerfile: "Dockerfile", Platform: p, BuildArgs: args})
		if label != "" {
			c = c.WithLabel("org.opencontainers.image.source", label)
		} else {
			// A base image's own (Chainguard's, say) must not pass for this
			// repository's. The engine deletes it if present (core/container.go,
			// ContainerWithoutLabelLazy.Evaluate, at 7902e644be).
			c = c.WithoutLabel("org.opencontainers.image.source")
		}
		img.Variants = append(img.Variants, c)
		img.Platforms = append(img.Platforms, p)
	}
}

// tarball is the build's OCI export.
func (s *run) tarball() string { return filepath.Join(s.tmp.Path, "image.tar") }

func stepSize() Step {
	return Step{Name: "size", Doc: "measures each platform's image, compressed and uncompressed, and fails naming any platform over SIZE_BUDGET; nothing has left the engine yet.",
		do: func(_ context.Context, s *run) error {
			var err error
			if s.img.Sizes, err = imagesize.MeasureIndex(s.img.Index); err != nil {
				return fmt.Errorf("measure the built image: %w", err)
			}
			if err := checkSizes(s.log(), s.Config, s.img.Sizes); err != nil {
				return err
			}
			s.step("%s: image %s within the %s budget", s.target, orUnknown(s.img.Digest), imagesize.Human(s.Config.SizeBudget))
			return nil
		}}
}

func stepExport() Step {
	return Step{Name: "export", Doc: "writes the OCI tarball to OCI_TARBALL when set, and loads the host platform's image into the local Docker as LOCAL_IMAGE (docker load from the exported tarball, on this side, so it works with every engine).",
		skip: func(s *run) string {
			if s.Config.OCITarball == "" && s.Config.LocalImage == "" {
				return "LOCAL_IMAGE=none, OCI_TARBALL unset"
			}
			return ""
		},
		do: func(ctx context.Context, s *run) error {
			cfg := s.Config
			if cfg.OCITarball != "" {
				s.sweepPartials(cfg.OCITarball)
				if err := moveFile(ctx, s.tarball(), cfg.OCITarball); err != nil {
					return fmt.Errorf("OCI_TARBALL: %w", config.ShownErr("OCI_TARBALL", cfg.OCITarball, err))
				}
				s.step("%s: wrote OCI tarball %s", s.target, config.Shown("OCI_TARBALL", cfg.OCITarball))
			}
			if cfg.LocalImage != "" {
				// From the export, on this side: Container.ExportImage needs an
				// engine driver with an image loader, which unix:// and tcp://
				// runner hosts lack (engine engine/client/drivers/dial.go).
				image := config.Shown("LOCAL_IMAGE", cfg.LocalImage)
				s.step("%s: loading the %s image into local Docker as %s (docker load)", s.target, cfg.HostPlatform, image)
				if err := s.loader()(ctx, s.img.Index, string(cfg.HostPlatform), cfg.LocalImage); err != nil {
					return fmt.Errorf("load %s into local Docker (set LOCAL_IMAGE=none to skip): %w", image, config.ShownErr("LOCAL_IMAGE", cfg.LocalImage, err))
				}
			}
			return nil
		}}
}

// buildArgs are the Dockerfile's build args. BUILDPLATFORM is the
// engine's platform: Dagger v0.21.8's Directory.dockerBuild gives the
// Dockerfile frontend only the target platform (core/container.go,
// Container.Build: ConvertOpt{TargetPlatform} and no BuildPlatforms), and
// the frontend then uses the target as the build platform
// (internal/buildkit/frontend/dockerfile/dockerfile2llb/platform.go,
// buildPlatformOpt), so `FROM --platform=$BUILDPLATFORM` would run the
// arm64 Go toolchain under QEMU. A build arg of that name overrides the
// derived value (dockerfile2llb/convert.go, setKVValue on the platform
// args); BUILDOS/BUILDARCH are not derived from it, and the Dockerfile
// does not use them. Upstream fixed this after v0.21.8 (dagger PR 13571).
//
// No SOURCE_DATE_EPOCH: it would change nothing in v0.21.8. The image
// config's dates are not the Dockerfile build's: Container.Build keeps
// only the frontend's runtime config (util/llbtodagger/metadata.go,
// applyDockerImageConfig reads img.Config, never History or Created), and
// the export makes one history entry per layer dated when that layer
// entered the engine's cache (engine/engineutil/containerimage.go,
// buildExportRequest; imageexport/writer.go, normalizeLayersAndHistory;
// engine/snapshots/manager.go, initializeMetadata's time.Now()), with
// created the last of them (patchImageConfig); no API option sets an
// epoch. So rebuilds are not byte-identical, which push handles (see
// ecr.Decide).
func buildArgs(cfg config.Config, src source, engine dagger.Platform) []dagger.BuildArg {
	var args []dagger.BuildArg
	add := func(name, value string) {
		if value != "" { // empty: the Dockerfile's default applies
			args = append(args, dagger.BuildArg{Name: name, Value: value})
		}
	}
	add("BUILDPLATFORM", string(engine))
	add("GO_IMAGE", cfg.GoImage)
	add("RUNTIME_IMAGE", cfg.RuntimeImage)
	add("GOPROXY", cfg.GoProxy)
	add("VERSION", src.version)
	add("REVISION", src.revision)
	add("CREATED", src.createdArg())
	return args
}

// setArg sets build argument name to value, replacing or adding it.
func setArg(args []dagger.BuildArg, name, value string) []dagger.BuildArg {
	for i := range args {
		if args[i].Name == name {
			args[i].Value = value
			return args
		}
	}
	return append(args, dagger.BuildArg{Name: name, Value: value})
}

// checkSizes prints the size table and fails naming each platform over
// the budget. Every configured platform must have been measured.
func checkSizes(w io.Writer, cfg config.Config, sizes []imagesize.Image) error {
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

// moveFile moves the export to the user's path: a rename, or across
// filesystems a copy that honours ctx.
func moveFile(ctx context.Context, from, to string) error {
	if err := os.Rename(from, to); err == nil {
		return nil
	}
	in, err := os.Open(from) // across filesystems: copy
	if err != nil {
		return err
	}
	defer in.Close()
	// The permissions a rename keeps, not CreateTemp's 0600.
	st, err := in.Stat()
	if err != nil {
		return err
	}
	return writeAtomic(ctx, to, st.Mode().Perm(), in)
}

// copyChunk is how much writeAtomic copies between looks at its context:
// a Ctrl-C stops the copy within one chunk, not after the whole image.
const copyChunk = 8 << 20

// partialPattern names writeAtomic's temporary file beside path
// (os.CreateTemp's pattern).
func partialPattern(path string) string { return "." + filepath.Base(path) + ".partial-*" }

// sweepPartials removes the temporary files of copies to path whose run
// ended mid-copy (a kill, mage -t), never a live run's (tmpdir.SweepFiles).
func (s *run) sweepPartials(path string) {
	removed, err := tmpdir.SweepFiles(filepath.Dir(path), partialPattern(path))
	if len(removed) > 0 {
		s.step("%s: removed %d partial cop(ies) of OCI_TARBALL=%s left by runs that ended during the copy (mage -t, a kill)",
			s.target, len(removed), config.Shown("OCI_TARBALL", path))
	}
	if err != nil {
		s.step("%s: note: %v", s.target, config.ShownErr("OCI_TARBALL", path, err))
	}
}

// writeAtomic writes r to path through a temporary file beside it,
// synced and renamed when complete, so neither a failed or interrupted
// copy nor a crash leaves a partial file under the asked-for name; the
// temporary file is removed on failure, and one a kill left is removed
// by the next run (sweepPartials), as it is held until renamed.
func writeAtomic(ctx context.Context, path string, perm os.FileMode, r io.Reader) error {
	out, err := tmpdir.CreateHeld(filepath.Dir(path), partialPattern(path))
	if err != nil {
		return err
	}
	defer out.Close()           // after the rename: a sweep must not take it first
	defer os.Remove(out.Name()) // no-op after the rename
	err = out.Chmod(perm)
	for err == nil {
		if err = ctx.Err(); err != nil {
			err = fmt.Errorf("copy to %s interrupted (nothing written there): %w", path, err)
			break
		}
		// CopyN keeps the file's copy_file_range/sendfile fast path.
		if _, err = io.CopyN(out, r, copyChunk); errors.Is(err, io.EOF) {
			err = out.Sync() // complete on disk before it takes the name
			break
		}
	}
	if err != nil {
		return err
	}
	if err := os.Rename(out.Name(), path); err != nil {
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
