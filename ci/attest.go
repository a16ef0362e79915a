package ci

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/gitref"
	"github.com/example/sidecar/ci/imagefiles"
	"github.com/example/sidecar/ci/provenance"
	"github.com/example/sidecar/ci/referrers"
	"github.com/example/sidecar/ci/sbom"
	"github.com/example/sidecar/internal/redact"
)

// distDir is where the release documents are written for the workflow,
// relative to the source directory.
const distDir = "dist"

// platformAnnotation names the platform an SBOM referrer describes.
const platformAnnotation = "com.example.sidecar.platform"

// provenanceTitle is the provenance's file name in dist/ and on its
// referrer.
const provenanceTitle = "provenance.intoto.json"

func sbomTitle(platform string) string {
	return "sbom-" + strings.ReplaceAll(platform, "/", "-") + ".spdx.json"
}

// removeDocuments deletes the release documents an earlier run left in
// dist/, so it holds only this run's (other files there are not ours).
func removeDocuments(dist string) error {
	old, err := filepath.Glob(filepath.Join(dist, "sbom-*.spdx.json"))
	if err != nil {
		return err
	}
	for _, f := range append(old, filepath.Join(dist, provenanceTitle)) {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove the earlier run's %s: %w", f, err)
		}
	}
	return nil
}

// attest writes an SBOM per platform and the build provenance to dist/ and
// attaches them to the candidate's image index in ECR as OCI referrers,
// made from the candidate's own files (release.files). For a candidate an
// earlier run pushed, the documents already attached to it stand, each
// checked (parsed, and describing this image) and copied to dist/, and
// only the missing or unusable ones are made and attached (re-runs do not
// pile up referrers, and a partial attach is completed).
func (s *run) attest(ctx context.Context) error {
	reg, pushed := s.reg, s.rel.pushed
	dist := filepath.Join(s.Config.Dir, distDir)
	if err := os.MkdirAll(dist, 0o755); err != nil {
		return fmt.Errorf("SBOM and provenance: %w", err)
	}
	docs, err := s.documents()
	if err != nil {
		return err
	}
	have := map[string]referrers.Found{} // title -> the attached document that stands
	if s.rel.origin == inECRBefore {
		if have, err = s.attached(ctx, docs); err != nil {
			return err
		}
	}
	subject := v1.Descriptor{MediaType: types.MediaType(pushed.MediaType), Size: pushed.Size}
	if subject.Digest, err = v1.NewHash(pushed.Digest); err != nil {
		return fmt.Errorf("pushed digest %q: %w", pushed.Digest, err)
	}
	missing, err := s.writeDocuments(dist, docs, have)
	if err != nil {
		return err
	}
	if s.rel.origin == inECRBefore && len(missing) > 0 {
		s.step("push: %s lacks %d of its %d documents: made from its own files and attached", pushed.Digest, len(missing), len(docs))
	}
	auth := registryAuth(reg)
	for _, d := range missing {
		var h v1.Hash
		err := s.onRegistry(ctx, "the registry at "+reg.URI+" (attaching "+d.Title+")", func(ctx context.Context) error {
			var err error
			h, err = referrers.Attach(ctx, reg.URI, subject, d, auth)
			return err
		})
		if err != nil {
			return fmt.Errorf("attach %s to %s (the documents are in %s/): %w", d.Title, pushed.Digest, distDir, err)
		}
		s.step("push: attached %s (%s) to %s@%s as %s", d.Title, d.ArtifactType, reg.URI, pushed.Digest, h)
	}
	return nil
}

// attached is the documents already attached to a candidate an earlier
// run pushed that stand, by title.
func (s *run) attached(ctx context.Context, docs []referrers.Artifact) (map[string]referrers.Found, error) {
	pushed := s.rel.pushed
	var found []referrers.Found
	err := s.onRegistry(ctx, "the registry at "+s.reg.URI+" (the documents attached)", func(ctx context.Context) error {
		var err error
		found, err = referrers.List(ctx, s.reg.URI, pushed.Digest, "", registryAuth(s.reg))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read the SBOM and provenance attached to %s: %w", pushed.Digest, err)
	}
	have := map[string]referrers.Found{}
	for _, f := range found {
		i := slices.IndexFunc(docs, func(d referrers.Artifact) bool { return d.Title == f.Title })
		if _, dup := have[f.Title]; i < 0 || dup {
			continue // not one of the release's documents, or one already found
		}
		if err := checkAttached(f, docs[i], pushed, s.rel.files); err != nil {
			s.step("push: WARNING: %s attached to %s (%s) is not accepted: %v; a new one is attached", f.Title, pushed.Digest, f.Digest, err)
			continue
		}
		have[f.Title] = f
	}
	return have, nil
}

// writeDocuments writes every document to dist: the attached one where
// one stands, else the one made here, which it returns as missing.
func (s *run) writeDocuments(dist string, docs []referrers.Artifact, have map[string]referrers.Found) ([]referrers.Artifact, error) {
	pushed := s.rel.pushed
	var missing []referrers.Artifact
	for _, d := range docs {
		if f, ok := have[d.Title]; ok {
			if err := os.WriteFile(filepath.Join(dist, d.Title), f.Payload, 0o644); err != nil {
				return nil, err
			}
			s.step("push: %s is attached to %s (%s); copied to %s", f.Title, pushed.Digest, f.Digest, filepath.Join(distDir, f.Title))
			continue
		}
		if err := os.WriteFile(filepath.Join(dist, d.Title), d.Payload, 0o644); err != nil {
			return nil, err
		}
		s.step("push: wrote %s", filepath.Join(distDir, d.Title))
		missing = append(missing, d)
	}
	return missing, nil
}

// checkAttached accepts a document found attached to the image only if it
// is the kind want is and parses as one that describes this image: an
// SBOM of want's platform listing that platform's binary, or a provenance
// statement whose subjects are the index and every platform manifest.
func checkAttached(f referrers.Found, want referrers.Artifact, pushed ecr.Pushed, files imagefiles.Files) error {
	if f.ArtifactType != want.ArtifactType {
		return fmt.Errorf("artifact type %q, want %s", f.ArtifactType, want.ArtifactType)
	}
	if want.ArtifactType == sbom.MediaType {
		plat := want.Annotations[platformAnnotation]
		if got := f.Annotations[platformAnnotation]; got != plat {
			return fmt.Errorf("annotated for platform %q, want %s", got, plat)
		}
		i := slices.IndexFunc(pushed.Platforms, func(m ecr.Manifest) bool { return m.Platform == plat })
		if i < 0 {
			return fmt.Errorf("the image has no %s manifest", plat)
		}
		return sbom.Verify(f.Payload, pushed.Platforms[i].Digest, files[plat][binaryPath])
	}
	st, _, err := provenance.Parse(f.Payload)
	if err != nil {
		return fmt.Errorf("not an in-toto SLSA provenance statement: %w", err)
	}
	subjects := map[string]bool{}
	for _, s := range st.GetSubject() {
		for alg, hex := range s.GetDigest() {
			subjects[alg+":"+hex] = true
		}
	}
	for _, d := range append([]string{pushed.Digest}, platformDigests(pushed)...) {
		if !subjects[d] {
			return fmt.Errorf("its subjects lack %s", d)
		}
	}
	return nil
}

func platformDigests(pushed ecr.Pushed) []string {
	var ds []string
	for _, m := range pushed.Platforms {
		ds = append(ds, m.Digest)
	}
	return ds
}

// documents builds the SBOM of every platform and the provenance from the
// candidate's files.
func (s *run) documents() ([]referrers.Artifact, error) {
	created := s.rel.src.created
	if created.IsZero() {
		created = time.Now()
	}
	docs, err := s.sboms(created)
	if err != nil {
		return nil, err
	}
	prov, err := s.provenance()
	if err != nil {
		return nil, err
	}
	return append(docs, prov), nil
}

// sboms is the SBOM of every platform of the candidate.
func (s *run) sboms(created time.Time) ([]referrers.Artifact, error) {
	reg, src, files := s.reg, s.rel.src, s.rel.files
	var docs []referrers.Artifact
	for _, m := range s.rel.pushed.Platforms {
		pf, ok := files[m.Platform]
		if !ok || pf[binaryPath] == nil {
			return nil, fmt.Errorf("SBOM: the image has no %s for %s", binaryPath, m.Platform)
		}
		apk, osr := apkDB(pf), osRelease(pf)
		if apk == nil {
			s.step("push: note: the %s image has no %s (nor %s): the SBOM lists no OS packages", m.Platform, apkDBPath, apkDBUsrPath)
		} else if sbom.ParseOSRelease(osr).VersionID == "" {
			s.step("push: note: the %s image's os-release names no VERSION_ID: the SBOM's OS packages name no distribution release, so scanners may not match them", m.Platform)
		}
		doc, err := sbom.Build(sbom.Input{
			Name: reg.Repository, Version: src.version, Revision: src.revision, Platform: m.Platform,
			Image: reg.URI + "@" + m.Digest, Binary: pf[binaryPath], BinaryPath: binaryPath, APKInstalled: apk,
			OSRelease: osr, BaseImages: s.pinnedBases(), Created: created,
		})
		if err != nil {
			return nil, fmt.Errorf("SBOM for %s: %w", m.Platform, err)
		}
		b, err := sbom.JSON(doc)
		if err != nil {
			return nil, err
		}
		docs = append(docs, referrers.Artifact{
			ArtifactType: sbom.MediaType, Payload: b, Title: sbomTitle(m.Platform),
			Annotations: map[string]string{platformAnnotation: m.Platform, "org.opencontainers.image.created": created.UTC().Format(time.RFC3339)},
		})
	}
	return docs, nil
}

// provenance is the candidate's SLSA provenance statement.
func (s *run) provenance() (referrers.Artifact, error) {
	reg, src, pushed := s.reg, s.rel.src, s.rel.pushed
	// Named by the commit tag the index was pushed under (imagetag.Decide).
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
	for _, a := range buildArgs(s.Config, src, s.img.Engine) {
		args[a.Name] = a.Value
	}
	lookup := s.env()
	st, err := provenance.Build(provenance.Input{
		Subjects: subjects, Source: sourceRepo(s.Config.Dir, src, lookup), BuildArgs: args, Platforms: plats,
		BaseImages: s.baseDeps(), Builder: provenance.DetectBuilder(lookup, s.Config.BuildWorkflow), Started: s.start, Finished: time.Now(),
	})
	if err != nil {
		return referrers.Artifact{}, err
	}
	b, err := provenance.JSON(st)
	if err != nil {
		return referrers.Artifact{}, err
	}
	return referrers.Artifact{ArtifactType: provenance.MediaType, Payload: b, Title: provenanceTitle,
		Annotations: map[string]string{"org.opencontainers.image.created": time.Now().UTC().Format(time.RFC3339)}}, nil
}

// pinnedBases are the base images with the digests the build was pinned
// to (build, pinBaseImages). A base not pinned, or a candidate an earlier
// run built (whose pins are not known), is recorded as an unresolved tag,
// never as a guess.
func (s *run) pinnedBases() []sbom.BaseImage {
	var pins []PinnedImage
	if s.rel.origin == pushedNow {
		pins = s.img.Bases
	}
	bases := baseImages(s.Config)
	for i, b := range bases {
		for _, p := range pins {
			if p.Arg == b.Arg && p.Ref == b.Ref {
				bases[i].Pinned = p.Pinned
			}
		}
	}
	return bases
}

// baseDeps are pinnedBases as the provenance records them.
func (s *run) baseDeps() []provenance.BaseImage {
	var deps []provenance.BaseImage
	for _, b := range s.pinnedBases() {
		deps = append(deps, provenance.BaseImage{Arg: b.Arg, Ref: b.Ref, Pinned: b.Pinned})
	}
	return deps
}

// baseImages are the Dockerfile's base images: the configured mirrors, or
// the Dockerfile's defaults (images.go, tied to the Dockerfile by tests).
func baseImages(cfg config.Config) []sbom.BaseImage {
	orDefault := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	return []sbom.BaseImage{
		{Ref: orDefault(cfg.GoImage, config.DefaultGoImage), Arg: "GO_IMAGE", Stage: "build"},
		{Ref: orDefault(cfg.RuntimeImage, config.DefaultRuntimeImage), Arg: "RUNTIME_IMAGE", Stage: "runtime"},
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
			s.Repository = redact.URL(strings.TrimSpace(string(out)))
		}
	}
	// Neither: the repository is unknown and left out, not guessed.
	if s.Ref == "" {
		switch {
		case src.gitTag != "":
			s.Ref = "refs/tags/" + src.gitTag
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

// env reads the CI's variables (os.LookupEnv unless a test set lookupEnv).
func (r *Runner) env() func(string) (string, bool) {
	if r.lookupEnv == nil {
		return os.LookupEnv
	}
	return r.lookupEnv
}

// sourceLabel is the image's org.opencontainers.image.source: the
// repository sourceRepo finds (GitHub's variables in Actions, else the
// origin remote) when it is an http(s) address, "" (no label) otherwise:
// never a made-up address.
func (r *Runner) sourceLabel(src source) string {
	repo := strings.TrimSuffix(sourceRepo(r.Config.Dir, src, r.env()).Repository, ".git")
	if !strings.HasPrefix(repo, "https://") && !strings.HasPrefix(repo, "http://") {
		return ""
	}
	return repo
}
