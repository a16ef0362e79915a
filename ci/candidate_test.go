package ci

// Tests of releasing a commit whose image an earlier run pushed: the
// release checks and documents that image, read back from ECR, not this
// run's rebuild.

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	spdxjson "github.com/spdx/tools-golang/json"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/ecr/ecrtest"
	"github.com/example/sidecar/ci/provenance"
	"github.com/example/sidecar/ci/referrers"
	"github.com/example/sidecar/ci/sbom"
	"github.com/example/sidecar/ci/vulncheck/vulndbtest"
)

// attached returns the documents attached to digest, by title (the last
// one of a title wins).
func attached(t *testing.T, ecrSrv *ecrtest.Server, digest string) (map[string]referrers.Found, int) {
	t.Helper()
	found, err := referrers.List(testCtx(t), ecrSrv.Host()+"/sidecar", digest, "", &authn.Basic{Username: "AWS", Password: ecrSrv.Password})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]referrers.Found{}
	for _, f := range found {
		out[f.Title] = f
	}
	return out, len(found)
}

// checkCandidateDocuments asserts the documents attached to the candidate
// (and in dist/) are valid and made from the candidate's own files.
func checkCandidateDocuments(t *testing.T, fe *fakeEngine, ecrSrv *ecrtest.Server, cand string, plats []string) {
	t.Helper()
	docs, _ := attached(t, ecrSrv, cand)
	files := earlierFiles(t)
	for i, p := range []string{"linux/amd64", "linux/arm64"} {
		title := sbomTitle(p)
		f, ok := docs[title]
		if !ok {
			t.Errorf("no %s attached to the candidate %s; attached: %v", title, cand, slices.Collect(mapKeys(docs)))
			continue
		}
		if err := sbom.Verify(f.Payload, plats[i], files[p][binaryPath]); err != nil {
			t.Errorf("%s: %v", title, err)
		}
		doc, err := spdxjson.Read(strings.NewReader(string(f.Payload)))
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]string{}
		for _, pk := range doc.Packages {
			names[pk.PackageName] = pk.PackageVersion
		}
		if names["stdlib"] != olderGo() || names["busybox"] != "1.36.1-r0" {
			t.Errorf("%s lists stdlib %s and busybox %s, want the candidate's %s and 1.36.1-r0", title, names["stdlib"], names["busybox"], olderGo())
		}
		if onDisk, _ := os.ReadFile(filepath.Join(fe.dir, "dist", title)); string(onDisk) != string(f.Payload) {
			t.Errorf("dist/%s is not the attached document", title)
		}
	}
	f, ok := docs[provenanceTitle]
	if !ok {
		t.Fatalf("no provenance attached to the candidate %s", cand)
	}
	st, _, err := provenance.Parse(f.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var subj []string
	for _, s := range st.Subject {
		subj = append(subj, "sha256:"+s.Digest["sha256"])
	}
	if want := append([]string{cand}, plats...); !slices.Equal(subj, want) {
		t.Errorf("provenance subjects %v, want the candidate's %v", subj, want)
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// The commit's candidate was pushed, but the run that pushed it stopped
// before attaching its documents (gate, timeout, attach error): the
// release attaches them, made from the candidate's own files, before the
// version tag moves.
func TestPushDocumentsAnUndocumentedCandidate(t *testing.T) {
	t.Parallel()
	ecrSrv, fe, short := versionRelease(t, "v1.5.0", nil)
	cand, plats := pushedCandidate(t, ecrSrv, short, earlierFiles(t))
	// An earlier run's documents, which do not belong to this run.
	stale := filepath.Join(fe.dir, "dist", "sbom-linux-arm-v7.spdx.json")
	if err := os.MkdirAll(filepath.Dir(stale), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(fe.dir, "dist", "notes.txt")
	if err := os.WriteFile(keep, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}

	if err := fe.runner.Push(testCtx(t)); err != nil {
		t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
	}
	if repo, _ := ecrSrv.Repository("sidecar"); repo.Tags["1.5.0"] != cand {
		t.Errorf("tags %v, want v1.5.0 at the candidate %s", repo.Tags, cand)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("an earlier run's %s is still in dist/ (%v)", filepath.Base(stale), err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("removed a file that is not a release document: %v", err)
	}
	checkCandidateDocuments(t, fe, ecrSrv, cand, plats)
	if _, n := attached(t, ecrSrv, cand); n != 3 {
		t.Errorf("%d referrers, want 3", n)
	}
	log := fe.log.String()
	if a, p := strings.LastIndex(log, "attached "+provenanceTitle), strings.Index(log, "releasing "+cand); a < 0 || p < 0 || a > p {
		t.Errorf("not attached before the promotion:\n%s", log)
	}
	assertSecretHidden(t, fe, ecrSrv.Password)

	// A re-run accepts the documents now attached: nothing new.
	if err := os.RemoveAll(filepath.Join(fe.dir, "dist")); err != nil {
		t.Fatal(err)
	}
	if err := fe.runner.Push(testCtx(t)); err != nil {
		t.Fatalf("second Push: %v\nlog:\n%s", err, fe.log)
	}
	if _, n := attached(t, ecrSrv, cand); n != 3 {
		t.Errorf("%d referrers after a re-run, want 3", n)
	}
	checkCandidateDocuments(t, fe, ecrSrv, cand, plats)
}

// A candidate whose files cannot be read (here: ECR lists it, the
// registry does not have it) cannot be documented: the release is refused
// and says what to do; no tag moves.
func TestPushRefusesACandidateItCannotRead(t *testing.T) {
	t.Parallel()
	ecrSrv, fe, short := versionRelease(t, "v1.5.0", nil)
	cand := prePushed(t, ecrSrv, short, "unreadable")
	err := fe.runner.Push(testCtx(t))
	if err == nil {
		t.Fatalf("Push released a candidate it could not document; log:\n%s", fe.log)
	}
	if config.IsError(err) {
		t.Errorf("exit 2 for a candidate that cannot be read: %v", err)
	}
	for _, w := range []string{"release refused", cand, "SBOM and provenance", "1.5.0 not moved", "batch-delete-image --repository-name sidecar --image-ids imageTag=" + short} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if repo, _ := ecrSrv.Repository("sidecar"); repo.Tags["1.5.0"] != "" || slices.Contains(ecrSrv.Operations(), "PutImage") {
		t.Errorf("a tag moved: %v %v", repo.Tags, ecrSrv.Operations())
	}
	assertSecretHidden(t, fe, ecrSrv.Password)
}

// A candidate with only some of its documents, or unusable ones ({}
// under the right title), gets the missing ones; the good one stands.
func TestPushCompletesAPartialAttach(t *testing.T) {
	t.Parallel()
	ecrSrv, fe, short := versionRelease(t, "v1.6.0", nil)
	files := earlierFiles(t)
	cand, plats := pushedCandidate(t, ecrSrv, short, files)
	repoURI := ecrSrv.Host() + "/sidecar"
	auth := &authn.Basic{Username: "AWS", Password: ecrSrv.Password}
	ref, err := name.NewDigest(repoURI + "@" + cand)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref, remote.WithAuth(auth))
	if err != nil {
		t.Fatal(err)
	}
	subject := v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}
	good, err := sbom.Build(sbom.Input{Name: "sidecar", Version: "dev", Platform: "linux/amd64", Image: repoURI + "@" + plats[0],
		Binary: files["linux/amd64"][binaryPath], BinaryPath: binaryPath})
	if err != nil {
		t.Fatal(err)
	}
	goodJSON, _ := sbom.JSON(good)
	for _, a := range []referrers.Artifact{
		{ArtifactType: sbom.MediaType, Title: sbomTitle("linux/amd64"), Payload: goodJSON, Annotations: map[string]string{platformAnnotation: "linux/amd64"}},
		{ArtifactType: sbom.MediaType, Title: sbomTitle("linux/arm64"), Payload: []byte("{}"), Annotations: map[string]string{platformAnnotation: "linux/arm64"}},
		{ArtifactType: provenance.MediaType, Title: provenanceTitle, Payload: []byte("{}")},
	} {
		if _, err := referrers.Attach(testCtx(t), repoURI, subject, a, auth); err != nil {
			t.Fatal(err)
		}
	}

	if err := fe.runner.Push(testCtx(t)); err != nil {
		t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
	}
	if _, n := attached(t, ecrSrv, cand); n != 5 {
		t.Errorf("%d referrers, want the 3 there were and 2 new ones", n)
	}
	log := fe.log.String()
	for _, w := range []string{sbomTitle("linux/arm64") + " attached to " + cand, provenanceTitle + " attached to " + cand, "not accepted"} {
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %q:\n%s", w, log)
		}
	}
	if onDisk, _ := os.ReadFile(filepath.Join(fe.dir, "dist", sbomTitle("linux/amd64"))); string(onDisk) != string(goodJSON) {
		t.Errorf("the attached amd64 SBOM did not stand")
	}
	// The new ones: valid, the candidate's.
	for _, title := range []string{sbomTitle("linux/arm64"), provenanceTitle} {
		b, _ := os.ReadFile(filepath.Join(fe.dir, "dist", title))
		if title == provenanceTitle {
			if _, _, err := provenance.Parse(b); err != nil {
				t.Errorf("dist/%s: %v", title, err)
			}
		} else if err := sbom.Verify(b, plats[1], files["linux/arm64"][binaryPath]); err != nil {
			t.Errorf("dist/%s: %v", title, err)
		}
	}
	if repo, _ := ecrSrv.Repository("sidecar"); repo.Tags["1.6.0"] != cand {
		t.Errorf("tags %v", repo.Tags)
	}
}

// The released image is the candidate: govulncheck checks its binaries,
// not the rebuild's.
func TestPushVulnChecksTheReusedCandidate(t *testing.T) {
	t.Parallel()
	onlyOlder := vulndbtest.Entry{ID: "GO-2026-0100", Module: "stdlib", Package: "net", Symbols: []string{"Dialer.DialContext"}, Fixed: "1.21.0"}
	onlyThis := vulndbtest.StdlibNow("GO-2026-0200", "net", "Dialer.DialContext")
	onlyThis.Introduced = strings.TrimPrefix(runtimeMinor(), "go") + ".0"
	for _, tc := range []struct {
		name  string
		entry vulndbtest.Entry
		fails bool
	}{
		{"the candidate is vulnerable, the rebuild not", onlyOlder, true},
		{"the rebuild is vulnerable, the candidate not", onlyThis, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ecrSrv, fe, short := versionRelease(t, "v1.7.0", map[string]string{"GOVULNDB": vulndbtest.Write(t, tc.entry), "VULN_CHECK": "true"})
			cand, _ := pushedCandidate(t, ecrSrv, short, earlierFilesOf(t, sidecarFiles(t)))
			err := fe.runner.Push(testCtx(t))
			image := ecrSrv.Host() + "/sidecar@" + cand
			if !strings.Contains(fe.log.String(), "sidecar binary of the commit's image "+image) {
				t.Errorf("log does not name the checked image %s:\n%s", image, fe.log)
			}
			repo, _ := ecrSrv.Repository("sidecar")
			if !tc.fails {
				if err != nil {
					t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
				}
				if repo.Tags["1.7.0"] != cand {
					t.Errorf("tags %v", repo.Tags)
				}
				return
			}
			if err == nil {
				t.Fatalf("Push released a candidate with a vulnerable binary; log:\n%s", fe.log)
			}
			for _, w := range []string{"GO-2026-0100", image, "1.7.0 not moved"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if repo.Tags["1.7.0"] != "" {
				t.Errorf("version tag moved: %v", repo.Tags)
			}
		})
	}
}

// runtimeMinor is "go1.N" of the running toolchain.
func runtimeMinor() string {
	major, rest, _ := strings.Cut(strings.TrimPrefix(runtime.Version(), "go"), ".")
	minor, _, _ := strings.Cut(rest, ".")
	return "go" + major + "." + minor
}

// checkAttached accepts only a document that is one of ours for this
// image.
func TestCheckAttached(t *testing.T) {
	t.Parallel()
	files := sidecarFiles(t)
	const index, amd, arm = "sha256:1000000000000000000000000000000000000000000000000000000000000000",
		"sha256:2000000000000000000000000000000000000000000000000000000000000000",
		"sha256:3000000000000000000000000000000000000000000000000000000000000000"
	pushed := ecr.Pushed{Digest: index, Platforms: []ecr.Manifest{{Platform: "linux/amd64", Digest: amd}, {Platform: "linux/arm64", Digest: arm}}}
	sbomOf := func(plat, digest string) []byte {
		doc, err := sbom.Build(sbom.Input{Name: "sidecar", Version: "dev", Platform: plat, Image: "host/sidecar@" + digest,
			Binary: files[plat][binaryPath], BinaryPath: binaryPath})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := sbom.JSON(doc)
		return b
	}
	provOf := func(digests ...string) []byte {
		var subj []provenance.Subject
		for _, d := range digests {
			subj = append(subj, provenance.Subject{Name: "host/sidecar", Digest: d})
		}
		st, err := provenance.Build(provenance.Input{Subjects: subj, Source: provenance.Source{Repository: "https://github.com/example/sidecar", Commit: "0123456789abcdef0123456789abcdef01234567", Ref: "refs/heads/main"},
			Builder: provenance.Builder{ID: "https://example.com/builder"}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := provenance.JSON(st)
		return b
	}
	amdSBOM := referrers.Artifact{ArtifactType: sbom.MediaType, Title: sbomTitle("linux/amd64"), Annotations: map[string]string{platformAnnotation: "linux/amd64"}}
	prov := referrers.Artifact{ArtifactType: provenance.MediaType, Title: provenanceTitle}
	for _, tc := range []struct {
		name string
		want referrers.Artifact
		f    referrers.Found
		err  string // "" accepted
	}{
		{"our amd64 SBOM", amdSBOM, referrers.Found{ArtifactType: sbom.MediaType, Annotations: amdSBOM.Annotations, Payload: sbomOf("linux/amd64", amd)}, ""},
		{"{} as the SBOM", amdSBOM, referrers.Found{ArtifactType: sbom.MediaType, Annotations: amdSBOM.Annotations, Payload: []byte("{}")}, "not SPDX"},
		{"the arm64 SBOM under the amd64 title", amdSBOM, referrers.Found{ArtifactType: sbom.MediaType, Annotations: amdSBOM.Annotations, Payload: sbomOf("linux/arm64", arm)}, "does not describe"},
		{"annotated for another platform", amdSBOM, referrers.Found{ArtifactType: sbom.MediaType, Annotations: map[string]string{platformAnnotation: "linux/arm64"}, Payload: sbomOf("linux/amd64", amd)}, "annotated for platform"},
		{"a provenance under the SBOM title", amdSBOM, referrers.Found{ArtifactType: provenance.MediaType, Annotations: amdSBOM.Annotations, Payload: provOf(index, amd, arm)}, "artifact type"},
		{"our provenance", prov, referrers.Found{ArtifactType: provenance.MediaType, Payload: provOf(index, amd, arm)}, ""},
		{"{} as the provenance", prov, referrers.Found{ArtifactType: provenance.MediaType, Payload: []byte("{}")}, "not an in-toto"},
		{"provenance of another index", prov, referrers.Found{ArtifactType: provenance.MediaType, Payload: provOf(arm, amd)}, "lack " + index},
		{"provenance without a platform", prov, referrers.Found{ArtifactType: provenance.MediaType, Payload: provOf(index, amd)}, "lack " + arm},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkAttached(tc.f, tc.want, pushed, files)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("checkAttached = %v, want %q", err, tc.err)
			}
		})
	}
}

// The commit's image in ECR is what a run releases: one pushed earlier
// with fewer platforms than PLATFORMS (a local PLATFORMS=linux/amd64
// push) is refused, so a version tag never names an image that tasks of
// the missing architecture cannot pull.
func TestPushRefusesACandidateLackingAPlatform(t *testing.T) {
	t.Parallel()
	ecrSrv, fe, short := versionRelease(t, "v9.0.0", nil)
	files := tinyFiles(t)
	delete(files, "linux/arm64")
	cand, _ := pushedCandidate(t, ecrSrv, short, files)
	err := fe.runner.Push(testCtx(t))
	if err == nil {
		t.Fatalf("Push released an amd64-only candidate for PLATFORMS=linux/amd64,linux/arm64; log:\n%s", fe.log)
	}
	if config.IsError(err) {
		t.Errorf("exit 2 for a candidate lacking a platform: %v", err)
	}
	for _, w := range []string{"release refused", cand, "has no linux/arm64 image", "PLATFORMS=linux/amd64,linux/arm64; it has linux/amd64",
		"9.0.0 not moved", "batch-delete-image --repository-name sidecar --image-ids imageTag=" + short} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if repo, _ := ecrSrv.Repository("sidecar"); repo.Tags["9.0.0"] != "" || slices.Contains(ecrSrv.Operations(), "PutImage") {
		t.Errorf("a tag moved: %v %v", repo.Tags, ecrSrv.Operations())
	}
}
