package ci

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/gitref"
	"github.com/example/sidecar/ci/provenance"
	"github.com/example/sidecar/ci/referrers"
	"github.com/example/sidecar/ci/sbom"
)

// distDir is where the release documents are written for the workflow,
// relative to the source directory.
const distDir = "dist"

// platformAnnotation names the platform an SBOM referrer describes.
const platformAnnotation = "com.example.sidecar.platform"

// attest writes an SBOM per platform and the build provenance to dist/ and
// attaches them to the pushed image index in ECR as OCI referrers. built
// says this run pushed the index; when an earlier run did (a commit
// already in ECR), its attached documents stand and are copied to dist/
// instead, so nothing describes an image it was not built from (and
// re-runs do not pile up referrers).
func (r *Runner) attest(ctx context.Context, img *Image, reg *ecr.Registry, pushed ecr.Pushed, src source, built bool) error {
	dist := filepath.Join(r.Config.Dir, distDir)
	if err := os.MkdirAll(dist, 0o755); err != nil {
		return fmt.Errorf("SBOM and provenance: %w", err)
	}
	auth := &authn.Basic{Username: reg.Username, Password: reg.Password()}
	if !built {
		found, err := referrers.List(ctx, reg.URI, pushed.Digest, "", auth)
		if err != nil {
			return fmt.Errorf("read the SBOM and provenance attached to %s: %w", pushed.Digest, err)
		}
		n := 0
		for _, f := range found {
			if (f.ArtifactType != sbom.MediaType && f.ArtifactType != provenance.MediaType) || f.Title == "" || filepath.Base(f.Title) != f.Title {
				continue
			}
			if err := os.WriteFile(filepath.Join(dist, f.Title), f.Payload, 0o644); err != nil {
				return err
			}
			r.step("push: %s is attached to %s (%s); copied to %s", f.Title, pushed.Digest, f.Digest, filepath.Join(distDir, f.Title))
			n++
		}
		switch {
		case n > 0:
			return nil
		case pushed.Digest != img.Digest:
			r.step("push: WARNING: no SBOM or provenance is attached to %s (pushed before this pipeline attached them); "+
				"none made from this rebuild, which is not that image", pushed.Digest)
			return nil
		}
		// Nothing attached yet, and this build is byte for byte the pushed image.
	}

	docs, err := r.documents(img, reg, pushed, src)
	if err != nil {
		return err
	}
	subject := v1.Descriptor{MediaType: types.MediaType(pushed.MediaType), Size: pushed.Size}
	if subject.Digest, err = v1.NewHash(pushed.Digest); err != nil {
		return fmt.Errorf("pushed digest %q: %w", pushed.Digest, err)
	}
	for _, d := range docs {
		if err := os.WriteFile(filepath.Join(dist, d.Title), d.Payload, 0o644); err != nil {
			return err
		}
		r.step("push: wrote %s", filepath.Join(distDir, d.Title))
	}
	for _, d := range docs {
		h, err := referrers.Attach(ctx, reg.URI, subject, d, auth)
		if err != nil {
			return fmt.Errorf("attach %s to %s (the documents are in %s/): %w", d.Title, pushed.Digest, distDir, err)
		}
		r.step("push: attached %s (%s) to %s@%s as %s", d.Title, d.ArtifactType, reg.URI, pushed.Digest, h)
	}
	return nil
}

// documents builds the SBOM of every platform and the provenance.
func (r *Runner) documents(img *Image, reg *ecr.Registry, pushed ecr.Pushed, src source) ([]referrers.Artifact, error) {
	bases := baseImages(r.Config)
	created, err := time.Parse(time.RFC3339, src.created)
	if err != nil {
		created = time.Now()
	}
	var docs []referrers.Artifact
	for _, m := range pushed.Platforms {
		files, ok := img.Files[m.Platform]
		if !ok || files[binaryPath] == nil {
			return nil, fmt.Errorf("SBOM: the built image has no %s for %s", binaryPath, m.Platform)
		}
		if files[apkDBPath] == nil {
			r.step("push: note: the %s image has no %s: the SBOM lists no OS packages", m.Platform, apkDBPath)
		}
		doc, err := sbom.Build(sbom.Input{
			Name: reg.Repository, Version: src.version, Revision: src.revision, Platform: m.Platform,
			Image: reg.URI + "@" + m.Digest, Binary: files[binaryPath], BinaryPath: binaryPath, APKInstalled: files[apkDBPath],
			BaseImages: bases, Created: created,
		})
		if err != nil {
			return nil, fmt.Errorf("SBOM for %s: %w", m.Platform, err)
		}
		b, err := sbom.JSON(doc)
		if err != nil {
			return nil, err
		}
		docs = append(docs, referrers.Artifact{
			ArtifactType: sbom.MediaType, Payload: b, Title: "sbom-" + strings.ReplaceAll(m.Platform, "/", "-") + ".spdx.json",
			Annotations: map[string]string{platformAnnotation: m.Platform, "org.opencontainers.image.created": created.UTC().Format(time.RFC3339)},
		})
	}

	// Named by the commit tag the index was pushed under (gitref.Ref.Tags).
	tag := src.revision
	if len(tag) > gitref.ShortLen {
		tag = tag[:gitref.ShortLen]
	}
	subjects := []provenance.Subject{{Name: provenance.SubjectName(reg.URI, tag, ""), Digest: pushed.Digest}}
	var plats []string
	for _, m := range pushed.Platforms {
		subjects = append(subjects, provenance.Subject{Name: provenance.SubjectName(reg.URI, tag, m.Platform), Digest: m.Digest})
		plats = append(plats, m.Platform)
	}
	args := map[string]string{}
	for _, a := range buildArgs(r.Config, src, img.Engine) {
		args[a.Name] = a.Value
	}
	// The digests the build was pinned to (build, pinBaseImages); a base
	// not pinned is recorded as an unresolved tag, never as a guess.
	var deps []provenance.BaseImage
	for _, b := range bases {
		d := provenance.BaseImage{Arg: b.Arg, Ref: b.Ref}
		for _, p := range img.Bases {
			if p.Arg == b.Arg && p.Ref == b.Ref {
				d.Pinned = p.Pinned
			}
		}
		deps = append(deps, d)
	}
	lookup := r.lookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	st, err := provenance.Build(provenance.Input{
		Subjects: subjects, Source: sourceRepo(r.Config.Dir, src, lookup), BuildArgs: args, Platforms: plats,
		BaseImages: deps, Builder: provenance.DetectBuilder(lookup), Started: r.start, Finished: time.Now(),
	})
	if err != nil {
		return nil, err
	}
	b, err := provenance.JSON(st)
	if err != nil {
		return nil, err
	}
	docs = append(docs, referrers.Artifact{ArtifactType: provenance.MediaType, Payload: b, Title: "provenance.intoto.json",
		Annotations: map[string]string{"org.opencontainers.image.created": time.Now().UTC().Format(time.RFC3339)}})
	return docs, nil
}

// baseImages are the Dockerfile's base images: the configured mirrors, or
// the Dockerfile's defaults (images.go, tied to the Dockerfile by tests).
func baseImages(cfg Config) []sbom.BaseImage {
	orDefault := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	return []sbom.BaseImage{
		{Ref: orDefault(cfg.GoImage, DefaultGoImage), Arg: "GO_IMAGE", Stage: "build"},
		{Ref: orDefault(cfg.RuntimeImage, DefaultRuntimeImage), Arg: "RUNTIME_IMAGE", Stage: "runtime"},
	}
}

// sourceRepo is the provenance's source: GitHub's variables in Actions,
// else the git remote origin (credentials stripped), else no repository
// (Repository ""); and the ref.
func sourceRepo(dir string, src source, lookup func(string) (string, bool)) provenance.Source {
	get := func(k string) string { v, _ := lookup(k); return v }
	s := provenance.Source{Commit: src.revision, Ref: get("GITHUB_REF")}
	if get("GITHUB_ACTIONS") == "true" && get("GITHUB_REPOSITORY") != "" {
		server := get("GITHUB_SERVER_URL")
		if server == "" {
			server = "https://github.com"
		}
		s.Repository = server + "/" + get("GITHUB_REPOSITORY")
	}
	if s.Repository == "" {
		if out, err := exec.Command("git", "-C", dir, "config", "--get", "remote.origin.url").Output(); err == nil {
			s.Repository = stripUserinfo(strings.TrimSpace(string(out)))
		}
	}
	// Neither: the repository is unknown and left out, not guessed.
	if s.Ref == "" {
		switch {
		case src.version != "" && src.version != "dev":
			s.Ref = "refs/tags/" + src.version
		default:
			if out, err := exec.Command("git", "-C", dir, "symbolic-ref", "-q", "HEAD").Output(); err == nil {
				s.Ref = strings.TrimSpace(string(out))
			} else {
				s.Ref = "HEAD"
			}
		}
	}
	return s
}

// stripUserinfo drops user:token@ from a remote URL, which must never
// reach a published document.
func stripUserinfo(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		rest := u[i+3:]
		if at := strings.Index(rest, "@"); at >= 0 && at < strings.IndexAny(rest+"/", "/") {
			return u[:i+3] + rest[at+1:]
		}
	}
	return u
}
