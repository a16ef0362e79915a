package ci

// Helpers and tests for the release flow of push: vulnerability check,
// candidate, scan gate, promotion, SBOM and provenance.

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdxlib"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/daggertest"
	"github.com/example/sidecar/ci/ecr/ecrtest"
	"github.com/example/sidecar/ci/imagesize"
	"github.com/example/sidecar/ci/imagesize/imagesizetest"
	"github.com/example/sidecar/ci/imagetag"
	"github.com/example/sidecar/ci/ocilayout"
	"github.com/example/sidecar/ci/provenance"
	"github.com/example/sidecar/ci/referrers"
	"github.com/example/sidecar/ci/sbom"
	"github.com/example/sidecar/ci/vulncheck"
	"github.com/example/sidecar/ci/vulncheck/vulndbtest"
	"github.com/example/sidecar/internal/sidecarbin"
)

// setFiles sets the files each platform's exported image holds and
// recomputes the export's digest and top manifest.
func (fe *fakeEngine) setFiles(t *testing.T, files map[string]map[string][]byte) {
	t.Helper()
	fe.files, fe.filesGz, fe.filesContent = files, map[string][]byte{}, map[string]int64{}
	for p, fs := range files {
		fe.filesGz[p], fe.filesContent[p] = layerOf(p, fs)
	}
	probe := filepath.Join(t.TempDir(), "probe.tar")
	if _, err := imagesizetest.Write(probe, fe.images()...); err != nil {
		t.Fatal(err)
	}
	var err error
	if fe.digest, err = imagesize.Digest(probe); err != nil {
		t.Fatal(err)
	}
	if fe.topType, fe.top, err = topManifest(probe); err != nil {
		t.Fatal(err)
	}
	fe.layout = filepath.Join(t.TempDir(), "layout")
	if err := ocilayout.Untar(probe, fe.layout); err != nil {
		t.Fatal(err)
	}
}

// pushLayout pushes the export's image to the stand-in's registry under
// ref with the ECR login, as the engine's publish does.
func (fe *fakeEngine) pushLayout(ecrSrv *ecrtest.Server, ref string) error {
	return pushLayoutDir(ecrSrv, fe.layout, ref)
}

// pushLayoutDir pushes the image of the OCI layout in dir to the
// stand-in's registry under ref.
func pushLayoutDir(ecrSrv *ecrtest.Server, dir, ref string) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	ii, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return err
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return err
	}
	auth := remote.WithAuth(&authn.Basic{Username: "AWS", Password: ecrSrv.Password})
	d := im.Manifests[0]
	if d.MediaType == types.OCIImageIndex {
		child, err := ii.ImageIndex(d.Digest)
		if err != nil {
			return err
		}
		return remote.WriteIndex(r, child, auth)
	}
	img, err := ii.Image(d.Digest)
	if err != nil {
		return err
	}
	return remote.Write(r, img, auth)
}

// topManifest is the manifest index.json of an OCI layout tarball points
// at: what a push of that image puts under the tag.
func topManifest(path string) (string, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	blobs := map[string][]byte{}
	if err := ocilayout.Walk(f, func(h *tar.Header, r io.Reader) error {
		if h.Name == "index.json" || strings.HasPrefix(h.Name, "blobs/") && h.Size < 1<<20 {
			b, err := io.ReadAll(r)
			blobs[h.Name] = b
			return err
		}
		return nil
	}); err != nil {
		return "", nil, err
	}
	var idx struct {
		Manifests []struct{ MediaType, Digest string } `json:"manifests"`
	}
	if err := json.Unmarshal(blobs["index.json"], &idx); err != nil || len(idx.Manifests) != 1 {
		return "", nil, fmt.Errorf("index.json: %v (%d manifests)", err, len(idx.Manifests))
	}
	m := idx.Manifests[0]
	b, ok := blobs["blobs/sha256/"+strings.TrimPrefix(m.Digest, "sha256:")]
	if !ok {
		return "", nil, errors.New("top manifest blob missing")
	}
	return m.MediaType, b, nil
}

// layerCache holds the sidecar files' layers: compressing 2×6 MB is
// slow under -race, and every push test exports them twice.
var layerCache sync.Map // platform + content hash -> cachedLayer

type cachedLayer struct {
	gz      []byte
	content int64
}

func layerOf(platform string, files map[string][]byte) ([]byte, int64) {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(files)) {
		fmt.Fprintf(h, "%s\x00%d\x00", k, len(files[k]))
		h.Write(files[k])
	}
	key := platform + hex.EncodeToString(h.Sum(nil))
	if c, ok := layerCache.Load(key); ok {
		return c.(cachedLayer).gz, c.(cachedLayer).content
	}
	gz, n := imagesizetest.FilesLayer(files)
	layerCache.Store(key, cachedLayer{gz, n})
	return gz, n
}

// builtBinaries is a directory holding a binary per platform (amd64,
// arm64), built once per test run, and the error building it gave.
type builtBinaries struct {
	once sync.Once
	dir  string
	err  error
}

// sidecarBins and tinyBins are removed by TestMain.
var sidecarBins, tinyBins builtBinaries

// imageFiles builds the binaries the first time it is called, and returns
// an image's files per platform: the binary of each and an apk database.
func (b *builtBinaries) imageFiles(t *testing.T, build func() (string, error)) map[string]map[string][]byte {
	t.Helper()
	b.once.Do(func() { b.dir, b.err = build() })
	if b.err != nil {
		t.Fatal(b.err)
	}
	out := map[string]map[string][]byte{}
	for _, arch := range []string{"amd64", "arm64"} {
		bin, err := os.ReadFile(filepath.Join(b.dir, arch))
		if err != nil {
			t.Fatal(err)
		}
		out["linux/"+arch] = map[string][]byte{binaryPath: bin, apkDBPath: []byte(testAPKDB(arch)), osReleaseLibPath: []byte(testOSRelease)}
	}
	return out
}

// sidecarFiles are the files the release reads from a real image: the
// sidecar binary (built once per test run for both platforms) and an
// Alpine apk database.
func sidecarFiles(t *testing.T) map[string]map[string][]byte {
	t.Helper()
	if testing.Short() {
		t.Skip("end to end with the real sidecar binaries (built for two platforms, read by govulncheck and the SBOM): not run with -short")
	}
	return sidecarBins.imageFiles(t, func() (string, error) { return buildSidecars(t) })
}

// buildSidecars builds the sidecar for both platforms into a new
// directory.
func buildSidecars(t *testing.T) (string, error) {
	dir, err := os.MkdirTemp("", "ci-test-sidecar-")
	if err != nil {
		return "", err
	}
	for _, arch := range []string{"amd64", "arm64"} {
		b, err := os.ReadFile(sidecarbin.Build(&onceT{TB: t, dir: dir}, arch))
		if err != nil {
			return dir, err
		}
		if err := os.WriteFile(filepath.Join(dir, arch), b, 0o644); err != nil {
			return dir, err
		}
	}
	return dir, nil
}

// tinyFiles are sidecarFiles with, in place of the sidecar, the smallest
// Go program (built once per test run for both platforms, about a tenth
// of the sidecar's size): a binary with build info, as the SBOM needs,
// for the push tests that are not about the binary. Under -race the
// bytes an image carries through export, measure, read and push are
// most of a push test's time.
func tinyFiles(t *testing.T) map[string]map[string][]byte {
	t.Helper()
	return tinyBins.imageFiles(t, buildTiny)
}

func buildTiny() (string, error) {
	dir, err := os.MkdirTemp("", "ci-test-tiny-")
	if err != nil {
		return "", err
	}
	src := map[string]string{"go.mod": "module example.com/tiny\n\ngo 1.24\n", "main.go": "package main\n\nfunc main() {}\n"}
	for name, body := range src {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return dir, err
		}
	}
	for _, arch := range []string{"amd64", "arm64"} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", arch, ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			return dir, fmt.Errorf("go build of the tiny program for %s: %v\n%s", arch, err, out)
		}
	}
	return dir, nil
}

// onceT lets a helper that takes a testing.TB run inside sync.Once: its
// temporary directories, made in dir, outlive the test that happened to
// run it first.
type onceT struct {
	testing.TB
	dir string
}

func (o *onceT) TempDir() string {
	d, err := os.MkdirTemp(o.dir, "build-")
	if err != nil {
		o.TB.Fatal(err)
	}
	return d
}

func TestMain(m *testing.M) {
	if os.Getenv(leaveEnv) != "" {
		leaveTempDirs() // exits
	}
	code := m.Run()
	for _, d := range []string{sidecarBins.dir, tinyBins.dir} {
		if d != "" {
			os.RemoveAll(d)
		}
	}
	os.Exit(code)
}

// testOSRelease is Alpine's os-release, here only at
// /usr/lib/os-release, as where /etc/os-release is a link to it.
const testOSRelease = "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.22.2\nPRETTY_NAME=\"Alpine Linux v3.22\"\n"

// testAPKDB is an Alpine installed database in apk's format (one
// paragraph per package, single-letter keys).
func testAPKDB(arch string) string {
	a := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch]
	return "C:Q1+BNTcYh1ZkVlcGpLK+IUdHCOWcE=\nP:busybox\nV:1.37.0-r19\nA:" + a + "\nS:507000\nI:946176\nT:Size optimized toolbox of many common UNIX utilities\n" +
		"U:https://busybox.net/\nL:GPL-2.0-only\no:busybox\nm:Sören Tempel <soeren+alpine@soeren-tempel.net>\nt:1746000000\nc:8a2b7ea0\n\n" +
		"C:Q1fMaL2vK5kHRtA1oE4gSEkTBWn2s=\nP:musl\nV:1.2.5-r10\nA:" + a + "\nS:411000\nI:633000\nT:the musl c library (libc) implementation\n" +
		"U:https://musl.libc.org/\nL:MIT\no:musl\nm:Timo Teräs <timo.teras@iki.fi>\nt:1745000000\nc:4f2a1b3c\n\n"
}

// scanningPush is a push setup against a repository with mutable tags
// and scanType scanning on push: the ECR stand-in and a push engine with env.
func scanningPush(t *testing.T, scanType string, env map[string]string) (*ecrtest.Server, *fakeEngine) {
	t.Helper()
	mutable := false
	ecrSrv := pushEnv(t, &mutable)
	ecrSrv.SetScanning("sidecar", scanType, "SCAN_ON_PUSH")
	return ecrSrv, newLightPushEngine(t, ecrSrv, env)
}

// newPushEngine is newEngine for push runs against ecrSrv: the export
// holds the real sidecar binaries, and a publish pushes the exported
// image to the stand-in's registry and records its top manifest in the
// ECR stand-in under the tag, as a registry push does. It answers
// address@digest of the root descriptor, as the engine does
// (core/container.go, Container.Publish at v0.21.8:
// reference.WithDigest(refName, resp.RootDesc.Digest)): the index for
// several platforms, the manifest for one.
func newPushEngine(t *testing.T, ecrSrv *ecrtest.Server, env map[string]string) *fakeEngine {
	t.Helper()
	return newPushEngineSizes(t, ecrSrv, env, nil)
}

// newPushEngineSizes is newPushEngine with the platforms (and layer
// sizes) the export holds, as newEngine takes them.
func newPushEngineSizes(t *testing.T, ecrSrv *ecrtest.Server, env map[string]string, sizes layerBytes) *fakeEngine {
	t.Helper()
	return newPushEngineFiles(t, ecrSrv, vulnCheckOff(env), sizes, sidecarFiles(t))
}

// vulnCheckOff is env with VULN_CHECK=false unless env sets it.
// govulncheck runs in process; under -race it takes seconds per binary.
// The tests of the check itself and TestPushPipeline run it; the other
// push tests are about what follows.
func vulnCheckOff(env map[string]string) map[string]string {
	if _, ok := env["VULN_CHECK"]; ok {
		return env
	}
	env = maps.Clone(env)
	if env == nil {
		env = map[string]string{}
	}
	env["VULN_CHECK"] = "false"
	return env
}

// releaseV140 is a light push engine with env, for a commit tagged
// v1.4.0, to an immutable repository: the fake ECR, the engine and the
// commit's tag.
func releaseV140(t *testing.T, env map[string]string) (*ecrtest.Server, *fakeEngine, string) {
	t.Helper()
	immutable := true
	ecrSrv := pushEnv(t, &immutable)
	fe := newLightPushEngine(t, ecrSrv, env)
	gitTag(t, fe.dir, "v1.4.0")
	return ecrSrv, fe, gitHead(t, fe.dir)[:12]
}

// newLightPushEngine is newPushEngine with tinyFiles' binaries: for
// tests of what the release does with tags, gates and candidates, which
// read no more of the binary than its checksum and build info.
func newLightPushEngine(t *testing.T, ecrSrv *ecrtest.Server, env map[string]string) *fakeEngine {
	t.Helper()
	return newPushEngineFiles(t, ecrSrv, vulnCheckOff(env), nil, tinyFiles(t))
}

// newPushEngineFiles is newPushEngineSizes with the images' files.
func newPushEngineFiles(t *testing.T, ecrSrv *ecrtest.Server, env map[string]string, sizes layerBytes, files map[string]map[string][]byte) *fakeEngine {
	t.Helper()
	fe := newEngine(t, env, sizes)
	for p := range files {
		if _, ok := sizes[p]; sizes != nil && !ok {
			delete(files, p)
		}
	}
	fe.setFiles(t, files)
	fe.srv.Handle("publish", func(q daggertest.Query) (any, error) {
		addr := q.Leaf().Arg("address")
		repoTag := strings.TrimPrefix(addr, ecrSrv.Host()+"/")
		repo, tag, _ := strings.Cut(repoTag, ":")
		if err := fe.pushLayout(ecrSrv, addr); err != nil {
			return nil, daggertest.Failure("publish: " + err.Error())
		}
		d := ecrSrv.PushImage(repo, tag, fe.topType, fe.top)
		return addr + "@" + d, nil
	})
	fe.setEnv(ecrSrv.Vars(t))
	return fe
}

// prePushed records in the stand-in an image index pushed by an earlier
// run (another build of the commit) under tag, and returns its digest.
func prePushed(t *testing.T, ecrSrv *ecrtest.Server, tag, build string) string {
	t.Helper()
	var ms []string
	for _, arch := range []string{"amd64", "arm64"} {
		ms = append(ms, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":700,"platform":{"os":"linux","architecture":%q}}`,
			digestOf(build+arch), arch))
	}
	idx := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + strings.Join(ms, ",") + `]}`
	return ecrSrv.PushImage("sidecar", tag, "application/vnd.oci.image.index.v1+json", []byte(idx))
}

// pushedCandidate pushes to the stand-in, under tag, a real image an
// earlier run built for the commit, holding files per platform (an index
// for several, a manifest for one), and returns its digest and its
// platform manifests' (amd64 first).
func pushedCandidate(t *testing.T, ecrSrv *ecrtest.Server, tag string, files map[string]map[string][]byte) (string, []string) {
	t.Helper()
	var imgs []imagesizetest.Image
	for _, p := range slices.Sorted(maps.Keys(files)) {
		gz, n := layerOf(p, files[p])
		imgs = append(imgs, imagesizetest.Image{Platform: p, LayerBytes: []int{3000}, FilesGz: gz, FilesContent: n, Files: files[p]})
	}
	tarball := filepath.Join(t.TempDir(), "candidate.tar")
	if _, err := imagesizetest.Write(tarball, imgs...); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	if err := ocilayout.Untar(tarball, dir); err != nil {
		t.Fatal(err)
	}
	if err := pushLayoutDir(ecrSrv, dir, ecrSrv.Host()+"/sidecar:"+tag); err != nil {
		t.Fatal(err)
	}
	typ, top, err := topManifest(tarball)
	if err != nil {
		t.Fatal(err)
	}
	d := ecrSrv.PushImage("sidecar", tag, typ, top)
	if len(files) == 1 {
		return d, []string{d}
	}
	var idx struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	if err := json.Unmarshal(top, &idx); err != nil || len(idx.Manifests) != len(files) {
		t.Fatalf("candidate index: %v %s", err, top)
	}
	var plats []string
	for _, m := range idx.Manifests {
		plats = append(plats, m.Digest)
	}
	return d, plats
}

// olderGo is the Go version earlierFiles' binaries claim.
func olderGo() string {
	v := strings.TrimPrefix(runtime.Version(), "go")
	major, rest, _ := strings.Cut(v, ".")
	_, patch, _ := strings.Cut(rest, ".")
	return "go" + major + ".20." + patch
}

// earlierFiles are the files of the commit's image as an earlier run
// built them: not this run's build (a rebuild differs), here visibly so:
// its binaries' build info says olderGo, and its apk database has an
// older busybox. What the release reads from the candidate shows whose
// files it read.
func earlierFiles(t *testing.T) map[string]map[string][]byte {
	t.Helper()
	return earlierFilesOf(t, tinyFiles(t))
}

// earlierFilesOf is earlierFiles made from the files out, which it
// changes: sidecarFiles for a test that needs the sidecar's own code in
// the candidate (govulncheck's symbol-level findings).
func earlierFilesOf(t *testing.T, out map[string]map[string][]byte) map[string]map[string][]byte {
	t.Helper()
	for p, fs := range out {
		bin := slices.Clone(fs[binaryPath])
		magic := bytes.Index(bin, []byte("\xff Go buildinf:"))
		if magic < 0 {
			t.Fatalf("%s binary has no build info", p)
		}
		// Go 1.18+ build info: the version string inline, just after the
		// 32-byte header; same length, so nothing else moves.
		i := bytes.Index(bin[magic:magic+64], []byte(runtime.Version()))
		if i < 0 || len(olderGo()) != len(runtime.Version()) {
			t.Fatalf("%s: cannot find %s in the build info header", p, runtime.Version())
		}
		copy(bin[magic+i:], olderGo())
		if bi, err := buildinfo.Read(bytes.NewReader(bin)); err != nil || bi.GoVersion != olderGo() {
			t.Fatalf("patched build info: %v %v", bi, err)
		}
		db := strings.ReplaceAll(string(fs[apkDBPath]), "V:1.37.0-r19", "V:1.36.1-r0")
		out[p] = map[string][]byte{binaryPath: bin, apkDBPath: []byte(db), osReleaseLibPath: fs[osReleaseLibPath]}
	}
	return out
}

// An image whose OS packages cannot be named fully still gets its SBOM, and
// the log says what it lacks: no apk database (no OS packages listed), or
// no VERSION_ID in os-release (package URLs without a distro release,
// which scanners need).
func TestPushNotesWhatTheSBOMCannotSay(t *testing.T) {
	t.Parallel()
	immutable := true
	ecrSrv := pushEnv(t, &immutable)
	files := tinyFiles(t)
	delete(files["linux/amd64"], apkDBPath)
	files["linux/arm64"][osReleaseLibPath] = []byte("NAME=\"Alpine Linux\"\nID=alpine\n")
	fe := newPushEngineFiles(t, ecrSrv, vulnCheckOff(nil), nil, files)
	if err := fe.runner.Push(testCtx(t)); err != nil {
		t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
	}
	for _, w := range []string{
		"push: note: the linux/amd64 image has no /lib/apk/db/installed (nor /usr/lib/apk/db/installed): the SBOM lists no OS packages",
		"push: note: the linux/arm64 image's os-release names no VERSION_ID",
	} {
		if !strings.Contains(fe.log.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, fe.log)
		}
	}
	sbom, err := os.ReadFile(filepath.Join(fe.dir, "dist", "sbom-linux-arm64.spdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(sbom), `"pkg:apk/alpine/busybox@1.37.0-r19?arch=aarch64"`) {
		t.Errorf("arm64 SBOM: want busybox's purl without a distro qualifier:\n%s", sbom)
	}
}

func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestPushStopsOnAVulnerabilityAffectingTheBinary(t *testing.T) {
	t.Parallel()
	immutable := true
	ecrSrv := pushEnv(t, &immutable)
	// The sidecar dials with net.Dialer and links nothing of net/smtp: only
	// the first entry affects it.
	db := vulndbtest.Write(t, vulndbtest.StdlibNow("GO-2026-0042", "net", "Dialer.DialContext"),
		vulndbtest.StdlibNow("GO-2026-0043", "net/smtp", "SendMail"))
	fe := newPushEngine(t, ecrSrv, map[string]string{"GOVULNDB": db, "VULN_CHECK": "true"})
	err := fe.runner.Push(testCtx(t))
	if err == nil {
		t.Fatalf("Push passed with a vulnerable binary; log:\n%s", fe.log)
	}
	for _, w := range []string{"GO-2026-0042", "nothing pushed", "linux/amd64", "linux/arm64", "VULN_CHECK=false"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	// The table: id, package, found and fixed version, symbol.
	goVersion := "v" + strings.TrimPrefix(runtime.Version(), "go")
	for _, w := range []string{"OSV", "MODULE/PACKAGE", "GO-2026-0042", "stdlib net", goVersion, "net.Dialer.DialContext", "GO-2026-0043"} {
		if !strings.Contains(fe.log.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, fe.log)
		}
	}
	if strings.Contains(err.Error(), "GO-2026-0043") {
		t.Errorf("error names a vulnerability in code the binary does not link: %v", err)
	}
	if n := len(fe.leaves("publish")); n != 0 {
		t.Errorf("published %d times", n)
	}
	if repo, _ := ecrSrv.Repository("sidecar"); len(repo.Tags) != 0 || slices.Contains(ecrSrv.Operations(), "PutImage") {
		t.Errorf("ECR changed: tags %v, ops %v", repo.Tags, ecrSrv.Operations())
	}

	t.Run("VULN_CHECK=false", func(t *testing.T) {
		ecrSrv := pushEnv(t, &immutable)
		fe := newLightPushEngine(t, ecrSrv, map[string]string{"GOVULNDB": db, "VULN_CHECK": "false"})
		if err := fe.runner.Push(testCtx(t)); err != nil {
			t.Fatalf("Push: %v", err)
		}
		if !strings.Contains(fe.log.String(), "vulncheck skipped (VULN_CHECK=false)") || strings.Contains(fe.log.String(), "GO-2026-0042") {
			t.Errorf("log:\n%s", fe.log)
		}
	})
}

func TestPushUnreachableVulnDBFailsFast(t *testing.T) {
	t.Parallel()
	immutable := true
	ecrSrv := pushEnv(t, &immutable)
	db := "http://127.0.0.1:" + refusedPort(t)
	fe := newLightPushEngine(t, ecrSrv, map[string]string{"GOVULNDB": db, "VULN_CHECK": "true"})
	start := time.Now()
	err := fe.runner.Push(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "GOVULNDB="+db) || !strings.Contains(err.Error(), "nothing was built or pushed") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > vulncheck.ProbeTimeout {
		t.Errorf("took %s", d)
	}
	if ops := ecrSrv.Operations(); len(ops) != 0 {
		t.Errorf("ECR called: %v", ops)
	}
	if n := len(fe.srv.Select(func(q daggertest.Query) bool { return q.Has("dockerBuild") })); n != 0 {
		t.Errorf("%d build queries", n)
	}
}

// platformDigests are the platform manifests of the export's index.
func (fe *fakeEngine) platformDigests(t *testing.T) []string {
	t.Helper()
	var idx struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	if err := json.Unmarshal(fe.top, &idx); err != nil || len(idx.Manifests) == 0 {
		t.Fatalf("export top manifest is not an index: %v %s", err, fe.top)
	}
	var ds []string
	for _, m := range idx.Manifests {
		ds = append(ds, m.Digest)
	}
	return ds
}

func TestPushScanGate(t *testing.T) {
	t.Parallel()
	crit := ecrtest.ScanFinding{Severity: "CRITICAL", Name: "CVE-2026-1111", Package: "busybox", Version: "1.37.0-r19"}
	high := ecrtest.ScanFinding{Severity: "HIGH", Name: "CVE-2026-2222", Package: "musl", Version: "1.2.5-r10"}
	medium := ecrtest.ScanFinding{Severity: "MEDIUM", Name: "CVE-2026-3333", Package: "musl", Version: "1.2.5-r10"}
	low := ecrtest.ScanFinding{Severity: "LOW", Name: "CVE-2026-4444", Package: "busybox", Version: "1.37.0-r19"}
	progress := ecrtest.ScanState{Status: "IN_PROGRESS"}
	complete := func(fs ...ecrtest.ScanFinding) ecrtest.ScanState {
		return ecrtest.ScanState{Status: "COMPLETE", Findings: fs}
	}
	for _, tc := range []struct {
		name     string
		scanType string // "" = repository without scanning
		freq     string
		env      map[string]string
		// scanTimeout replaces SCAN_TIMEOUT's, whose minimum is minutes.
		scanTimeout time.Duration
		amd, arm    []ecrtest.ScanState
		released    bool
		errWant     []string
		logWant     []string
	}{
		{name: "clean scan releases", scanType: "BASIC", freq: "SCAN_ON_PUSH",
			amd: []ecrtest.ScanState{{}, progress, complete(low)}, arm: []ecrtest.ScanState{progress, complete()}, released: true,
			logWant: []string{"waiting for the ECR scan of linux/amd64 (NOT_STARTED)", "linux/amd64", "CRITICAL 0, HIGH 0, MEDIUM 0, LOW 1", "no ECR findings at or above CRITICAL"}},
		{name: "critical stops the release", scanType: "BASIC", freq: "SCAN_ON_PUSH",
			amd: []ecrtest.ScanState{complete(crit, high, medium, low)}, arm: []ecrtest.ScanState{complete()},
			errWant: []string{"SCAN_FAIL_ON=CRITICAL", "linux/amd64: CRITICAL CVE-2026-1111 (busybox 1.37.0-r19)", "stays as an unreleased candidate", "3.0.0 and latest not moved"},
			logWant: []string{"CRITICAL 1, HIGH 1, MEDIUM 1, LOW 1"}},
		{name: "HIGH threshold", scanType: "ENHANCED", freq: "CONTINUOUS_SCAN", env: map[string]string{"SCAN_FAIL_ON": "HIGH"},
			amd: []ecrtest.ScanState{{Status: "PENDING"}, {Status: "ACTIVE", Findings: []ecrtest.ScanFinding{medium}}}, arm: []ecrtest.ScanState{{Status: "ACTIVE", Findings: []ecrtest.ScanFinding{high}}},
			errWant: []string{"SCAN_FAIL_ON=HIGH", "linux/arm64: HIGH CVE-2026-2222 (musl 1.2.5-r10)"}, logWant: []string{"enhanced (Inspector)"}},
		{name: "MEDIUM threshold passes low", scanType: "BASIC", freq: "SCAN_ON_PUSH", env: map[string]string{"SCAN_FAIL_ON": "MEDIUM"},
			amd: []ecrtest.ScanState{complete(low)}, arm: []ecrtest.ScanState{complete(low)}, released: true},
		{name: "LOW threshold", scanType: "BASIC", freq: "SCAN_ON_PUSH", env: map[string]string{"SCAN_FAIL_ON": "LOW"},
			amd: []ecrtest.ScanState{complete(low)}, arm: []ecrtest.ScanState{complete()}, errWant: []string{"LOW CVE-2026-4444"}},
		{name: "none does not gate", scanType: "BASIC", freq: "SCAN_ON_PUSH", env: map[string]string{"SCAN_FAIL_ON": "none"},
			amd: []ecrtest.ScanState{complete(crit)}, arm: []ecrtest.ScanState{complete()}, released: true,
			logWant: []string{"CRITICAL 1", "SCAN_FAIL_ON=none"}},
		{name: "failed scan is an error", scanType: "BASIC", freq: "SCAN_ON_PUSH",
			amd: []ecrtest.ScanState{progress, {Status: "FAILED", Description: "internal error"}}, arm: []ecrtest.ScanState{complete()},
			errWant: []string{"linux/amd64", "ended FAILED: internal error", "not a pass", "unreleased candidate"}},
		{name: "unsupported image is an error", scanType: "BASIC", freq: "SCAN_ON_PUSH",
			amd: []ecrtest.ScanState{complete()}, arm: []ecrtest.ScanState{{Status: "UNSUPPORTED_IMAGE", Description: "UnsupportedImageError"}},
			errWant: []string{"linux/arm64", "UNSUPPORTED_IMAGE"}},
		{name: "timeout", scanType: "BASIC", freq: "SCAN_ON_PUSH", scanTimeout: 300 * time.Millisecond,
			amd: []ecrtest.ScanState{progress}, arm: []ecrtest.ScanState{complete()},
			errWant: []string{"did not finish within 300ms", "linux/amd64 (IN_PROGRESS)", "unreleased candidate"}},
		{name: "repository without scanning", scanType: "BASIC", freq: "MANUAL", released: true,
			logWant: []string{"WARNING", "does not scan pushed images", "no scan gate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mutable := false
			ecrSrv := pushEnv(t, &mutable)
			ecrSrv.SetScanning("sidecar", tc.scanType, tc.freq)
			env := map[string]string{"PUSH_LATEST": "true"}
			for k, v := range tc.env {
				env[k] = v
			}
			fe := newLightPushEngine(t, ecrSrv, env)
			fe.runner.scanPoll, fe.runner.scanProgress = 5*time.Millisecond, time.Nanosecond
			if tc.scanTimeout != 0 {
				fe.runner.Config.ScanTimeout = tc.scanTimeout
			}
			gitTag(t, fe.dir, "v3.0.0")
			short := gitHead(t, fe.dir)[:12]
			plats := fe.platformDigests(t)
			ecrSrv.ScriptScan(plats[0], tc.amd...)
			ecrSrv.ScriptScan(plats[1], tc.arm...)

			err := fe.runner.Push(testCtx(t))
			repo, _ := ecrSrv.Repository("sidecar")
			if repo.Tags[short] != fe.digest {
				t.Errorf("commit tag at %q, want the candidate %s", repo.Tags[short], fe.digest)
			}
			if n := len(fe.leaves("publish")); n != 1 {
				t.Errorf("%d publishes, want 1 (the candidate)", n)
			}
			if tc.released {
				if err != nil {
					t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
				}
				if repo.Tags["3.0.0"] != fe.digest || repo.Tags["latest"] != fe.digest {
					t.Errorf("tags %v, want v3.0.0 and latest at %s", repo.Tags, fe.digest)
				}
			} else {
				if err == nil {
					t.Fatalf("Push passed; log:\n%s", fe.log)
				}
				if _, ok := repo.Tags["3.0.0"]; ok {
					t.Errorf("version tag moved: %v", repo.Tags)
				}
				if _, ok := repo.Tags["latest"]; ok {
					t.Errorf("latest moved: %v", repo.Tags)
				}
				if config.IsError(err) {
					t.Errorf("a gate failure is not a configuration error")
				}
				// Documented before the gate: a later run cannot promote
				// the candidate without its documents.
				if _, n := attached(t, ecrSrv, fe.digest); n != 3 {
					t.Errorf("the stopped candidate has %d documents attached, want 3", n)
				}
				for _, w := range tc.errWant {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q:\n%v", w, err)
					}
				}
			}
			for _, w := range tc.logWant {
				if !strings.Contains(fe.log.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, fe.log)
				}
			}
			// The promotion happened only after the scan answered.
			ops := ecrSrv.Operations()
			if i, j := slices.Index(ops, "PutImage"), lastIndex(ops, "DescribeImageScanFindings"); i >= 0 && j > i {
				t.Errorf("a tag was promoted before the scan finished: %v", ops)
			}
		})
	}
}

// The gate's message says what it held back: what this run was to move.
func TestPushGateFailureSaysWhatWasHeld(t *testing.T) {
	t.Parallel()
	crit := ecrtest.ScanState{Status: "COMPLETE", Findings: []ecrtest.ScanFinding{{Severity: "CRITICAL", Name: "CVE-2026-1111", Package: "busybox"}}}
	for _, tc := range []struct {
		name    string
		version string // a v* tag on HEAD
		already bool   // the version tag points at the image before the run
		want    string
	}{
		{"main push: nothing to promote", "", false, "this run had no version tag or latest to move"},
		{"version tag", "v3.1.0", false, "stays as an unreleased candidate; 3.1.0 not moved"},
		{"version tag already on the image", "v3.1.0", true, "3.1.0 already pointed at the commit's image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ecrSrv, fe := scanningPush(t, "BASIC", nil)
			if tc.version != "" {
				gitTag(t, fe.dir, tc.version)
			}
			if tc.already {
				ecrSrv.PushImage("sidecar", gitHead(t, fe.dir)[:12], fe.topType, fe.top)
				ecrSrv.SetTag("sidecar", imagetag.VersionOf(tc.version), fe.digest)
			}
			for _, d := range fe.platformDigests(t) {
				ecrSrv.ScriptScan(d, crit)
			}
			err := fe.runner.Push(testCtx(t))
			if err == nil {
				t.Fatalf("Push passed a CRITICAL finding; log:\n%s", fe.log)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error lacks %q:\n%v", tc.want, err)
			}
			if tc.version == "" || tc.already {
				for _, wrong := range []string{"unreleased candidate", "not moved"} {
					if strings.Contains(err.Error(), wrong) {
						t.Errorf("error says %q, but nothing was to be moved:\n%v", wrong, err)
					}
				}
			}
		})
	}
}

func lastIndex(s []string, v string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == v {
			return i
		}
	}
	return -1
}

func TestPushAttachesSBOMAndProvenance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		noReferrers bool
	}{{"referrers API", false}, {"no referrers API: referrers tag", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mutable := false
			ecrSrv := pushEnv(t, &mutable)
			ecrSrv.SetScanning("sidecar", "BASIC", "SCAN_ON_PUSH")
			if tc.noReferrers {
				ecrSrv.NoReferrersAPI()
			}
			fe := newPushEngine(t, ecrSrv, map[string]string{"PUSH_LATEST": "true", "RUNTIME_IMAGE": "mirror.example/alpine:3.22",
				"BUILD_WORKFLOW": ".github/workflows/pipeline.yml"}) // as pipeline.yml, which ci.yml calls, sets it
			env := map[string]string{"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "example/sidecar",
				"GITHUB_RUN_ID": "99", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_REF": "refs/tags/v4.0.0",
				"GITHUB_WORKFLOW_REF": "example/sidecar/.github/workflows/ci.yml@refs/tags/v4.0.0"}
			fe.setEnv(env)
			gitTag(t, fe.dir, "v4.0.0")
			commit := gitHead(t, fe.dir)
			// Promotion waits for the documents: watch the order.
			if err := fe.runner.Push(testCtx(t)); err != nil {
				t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
			}
			assertSecretHidden(t, fe, ecrSrv.Password)
			repoURI := ecrSrv.Host() + "/sidecar"
			auth := &authn.Basic{Username: "AWS", Password: ecrSrv.Password}
			plats := fe.platformDigests(t)

			// dist/ has both, and they are what is attached.
			for _, f := range []string{"sbom-linux-amd64.spdx.json", "sbom-linux-arm64.spdx.json", "provenance.intoto.json"} {
				if _, err := os.Stat(filepath.Join(fe.dir, "dist", f)); err != nil {
					t.Errorf("dist/%s: %v", f, err)
				}
			}
			sboms, err := referrers.List(testCtx(t), repoURI, fe.digest, sbom.MediaType, auth)
			if err != nil || len(sboms) != 2 {
				t.Fatalf("SBOM referrers of the index: %v %d", err, len(sboms))
			}
			files := sidecarFiles(t)
			for _, f := range sboms {
				plat := f.Annotations[platformAnnotation]
				onDisk, _ := os.ReadFile(filepath.Join(fe.dir, "dist", f.Title))
				if string(onDisk) != string(f.Payload) {
					t.Errorf("%s in dist/ differs from the attached one", f.Title)
				}
				doc, err := spdxjson.Read(strings.NewReader(string(f.Payload)))
				if err != nil {
					t.Fatalf("%s: %v", f.Title, err)
				}
				if err := spdxlib.ValidateDocument(doc); err != nil {
					t.Fatal(err)
				}
				names := map[string]string{}
				for _, p := range doc.Packages {
					names[p.PackageName] = p.PackageVersion
					if want := "pkg:apk/alpine/busybox@1.37.0-r19?arch=" + map[string]string{"linux/amd64": "x86_64", "linux/arm64": "aarch64"}[plat] + "&distro=alpine-3.22.2"; p.PackageName == "busybox" && p.PackageExternalReferences[0].Locator != want {
						t.Errorf("%s: busybox is %s, want %s (the distribution from the image's os-release)", f.Title, p.PackageExternalReferences[0].Locator, want)
					}
					if p.PackageName == "github.com/example/sidecar/sidecar" {
						sum := sha256.Sum256(files[plat][binaryPath])
						if p.PackageChecksums[0].Value != hex.EncodeToString(sum[:]) {
							t.Errorf("%s: the binary checksum is not the %s image's binary", f.Title, plat)
						}
					}
				}
				if names["stdlib"] != runtime.Version() || names["busybox"] != "1.37.0-r19" || names["musl"] != "1.2.5-r10" {
					t.Errorf("%s (%s) packages %v", f.Title, plat, names)
				}
				if _, ok := names["mirror.example/alpine:3.22"]; !ok {
					t.Errorf("%s lacks the runtime base image: %v", f.Title, names)
				}
			}
			provs, err := referrers.List(testCtx(t), repoURI, fe.digest, provenance.MediaType, auth)
			if err != nil || len(provs) != 1 {
				t.Fatalf("provenance referrers: %v %d", err, len(provs))
			}
			st, pred, err := provenance.Parse(provs[0].Payload)
			if err != nil {
				t.Fatal(err)
			}
			var subj []string
			for _, s := range st.Subject {
				subj = append(subj, "sha256:"+s.Digest["sha256"])
			}
			if want := append([]string{fe.digest}, plats...); !slices.Equal(subj, want) {
				t.Errorf("subjects %v, want the index and each platform %v", subj, want)
			}
			src := pred.BuildDefinition.ExternalParameters.AsMap()["source"].(map[string]any)
			if src["commit"] != commit || src["ref"] != "refs/tags/v4.0.0" || src["repository"] != "https://github.com/example/sidecar" {
				t.Errorf("source %v", src)
			}
			if args := pred.BuildDefinition.ExternalParameters.AsMap()["buildArgs"].(map[string]any); args["VERSION"] != "4.0.0" || args["RUNTIME_IMAGE"] != "mirror.example/alpine:3.22" {
				t.Errorf("build args %v", args)
			}
			// The signer of GitHub's attestation; ci.yml started the run.
			if id := pred.RunDetails.Builder.Id; id != "https://github.com/example/sidecar/.github/workflows/pipeline.yml@refs/tags/v4.0.0" {
				t.Errorf("builder %q", id)
			}
			if w, _ := pred.BuildDefinition.ExternalParameters.AsMap()["workflow"].(map[string]any); w["path"] != ".github/workflows/ci.yml" || w["ref"] != "refs/tags/v4.0.0" {
				t.Errorf("workflow %v", w)
			}
			if inv := pred.RunDetails.Metadata.InvocationId; inv != "https://github.com/example/sidecar/actions/runs/99/attempts/1" {
				t.Errorf("invocation %q", inv)
			}
			var deps []string
			for _, d := range pred.BuildDefinition.ResolvedDependencies {
				deps = append(deps, d.Uri)
			}
			if !slices.Contains(deps, "oci://"+daggertest.ImageRef("mirror.example/alpine:3.22")) {
				t.Errorf("resolved dependencies %v", deps)
			}
			// The referrers tag is written only where the API is missing.
			tag, _ := name.NewTag(repoURI + ":sha256-" + strings.TrimPrefix(fe.digest, "sha256:"))
			_, err = remote.Head(tag, remote.WithAuth(auth))
			if tc.noReferrers != (err == nil) {
				t.Errorf("referrers tag %s: head err %v with referrers API %v", tag, err, !tc.noReferrers)
			}
			// Promotion came after the documents were attached.
			log := fe.log.String()
			if a, p := strings.LastIndex(log, "attached provenance.intoto.json"), strings.Index(log, "releasing "+fe.digest); a < 0 || p < 0 || a > p {
				t.Errorf("promotion before attaching:\n%s", log)
			}

			// A re-run keeps the attached documents: nothing new attached,
			// the attached ones copied to dist/.
			if err := os.RemoveAll(filepath.Join(fe.dir, "dist")); err != nil {
				t.Fatal(err)
			}
			if err := fe.runner.Push(testCtx(t)); err != nil {
				t.Fatalf("second Push: %v", err)
			}
			if again, _ := referrers.List(testCtx(t), repoURI, fe.digest, "", auth); len(again) != 3 {
				t.Errorf("%d referrers after a re-run, want 3", len(again))
			}
			if _, err := os.Stat(filepath.Join(fe.dir, "dist", "provenance.intoto.json")); err != nil {
				t.Errorf("re-run did not copy the attached provenance to dist/: %v", err)
			}
		})
	}
}

// A single-platform push is one image manifest, not an index: it is
// scanned, described and attested as that platform.
func TestPushSinglePlatform(t *testing.T) {
	t.Parallel()
	mutable := false
	ecrSrv := pushEnv(t, &mutable)
	ecrSrv.SetScanning("sidecar", "BASIC", "SCAN_ON_PUSH")
	host := "linux/" + runtime.GOARCH
	fe := newPushEngineFiles(t, ecrSrv, map[string]string{"PLATFORMS": host, "VULN_CHECK": "false"}, layerBytes{host: {1000}}, tinyFiles(t))
	if !strings.Contains(fe.topType, "manifest") {
		t.Fatalf("export's top manifest is %s, want an image manifest", fe.topType)
	}
	gitTag(t, fe.dir, "v5.0.0")
	if err := fe.runner.Push(testCtx(t)); err != nil {
		t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
	}
	if !strings.Contains(fe.log.String(), "ECR scan of "+host+" ("+fe.digest+")") {
		t.Errorf("log does not report the scan of %s:\n%s", host, fe.log)
	}
	if _, err := os.Stat(filepath.Join(fe.dir, "dist", "sbom-"+strings.ReplaceAll(host, "/", "-")+".spdx.json")); err != nil {
		t.Error(err)
	}
	if repo, _ := ecrSrv.Repository("sidecar"); repo.Tags["5.0.0"] != fe.digest {
		t.Errorf("tags %v", repo.Tags)
	}
}

// A single-platform commit already in ECR (a plain manifest) is read back
// and documented as its platform, named by its config.
func TestPushSinglePlatformCandidate(t *testing.T) {
	t.Parallel()
	immutable := true
	ecrSrv := pushEnv(t, &immutable)
	host := "linux/" + runtime.GOARCH
	fe := newPushEngineFiles(t, ecrSrv, map[string]string{"PLATFORMS": host, "VULN_CHECK": "false"}, layerBytes{host: {1000}}, tinyFiles(t))
	gitTag(t, fe.dir, "v5.1.0")
	short := gitHead(t, fe.dir)[:12]
	files := earlierFiles(t)
	cand, _ := pushedCandidate(t, ecrSrv, short, map[string]map[string][]byte{host: files[host]})
	if err := fe.runner.Push(testCtx(t)); err != nil {
		t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
	}
	docs, n := attached(t, ecrSrv, cand)
	if n != 2 {
		t.Errorf("%d referrers, want an SBOM and the provenance", n)
	}
	f, ok := docs[sbomTitle(host)]
	if !ok {
		t.Fatalf("no %s attached: %v", sbomTitle(host), slices.Collect(mapKeys(docs)))
	}
	if err := sbom.Verify(f.Payload, cand, files[host][binaryPath]); err != nil {
		t.Error(err)
	}
	if f.Annotations[platformAnnotation] != host {
		t.Errorf("SBOM annotated %v", f.Annotations)
	}
	if repo, _ := ecrSrv.Repository("sidecar"); repo.Tags["5.1.0"] != cand {
		t.Errorf("tags %v", repo.Tags)
	}
}

// A registry that refuses the documents stops the release before the
// version tag moves.
func TestPushAttachFailureKeepsTheCandidate(t *testing.T) {
	t.Parallel()
	ecrSrv, fe := scanningPush(t, "BASIC", nil)
	gitTag(t, fe.dir, "v6.0.0")
	ecrSrv.DenyReferrers()
	err := fe.runner.Push(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "attach sbom-") || !strings.Contains(err.Error(), "stays as an unreleased candidate") {
		t.Fatalf("err = %v\nlog:\n%s", err, fe.log)
	}
	if repo, _ := ecrSrv.Repository("sidecar"); repo.Tags["6.0.0"] != "" {
		t.Errorf("version tag moved: %v", repo.Tags)
	}
	if _, err := os.Stat(filepath.Join(fe.dir, "dist", "provenance.intoto.json")); err != nil {
		t.Errorf("documents not kept in dist/: %v", err)
	}
}

// An ECR error part way through the release tags leaves some moved and
// some not: the message says which, and that a run again finishes the
// release, which it does, on the same image, with nothing pushed again.
func TestPushReleaseTagsStoppedPartWay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, fail string   // the tag whose PutImage fails
		want       []string // in the error
		wrong      []string // not in the error
		released   bool     // 1.4.0 moved before the failure
	}{
		{name: "latest fails after the version", fail: "latest", released: true,
			want: []string{"promote latest", "AccessDeniedException", "1.4.0 released (", "sidecar:1.4.0@", "latest not moved", "run again"}},
		{name: "the version fails first", fail: "1.4.0",
			want:  []string{"promote 1.4.0", "AccessDeniedException", "stays as an unreleased candidate; 1.4.0 and latest not moved", "run again"},
			wrong: []string{"released ("}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ecrSrv, fe, short := releaseV140(t, map[string]string{"PUSH_LATEST": "true"})
			ecrSrv.SetExclusions("sidecar", "latest")
			ecrSrv.FailPutImage(tc.fail, "AccessDeniedException")
			err := fe.runner.Push(testCtx(t))
			if err == nil {
				t.Fatalf("Push succeeded with PutImage of %s failing; log:\n%s", tc.fail, fe.log)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			for _, w := range tc.wrong {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error says %q:\n%v", w, err)
				}
			}
			repo, _ := ecrSrv.Repository("sidecar")
			candidate := repo.Tags[short]
			if got := repo.Tags["1.4.0"] == candidate; candidate == "" || got != tc.released || repo.Tags["latest"] != "" {
				t.Fatalf("tags after the failure: %v; want 1.4.0 on the candidate: %v, latest nowhere", repo.Tags, tc.released)
			}

			ecrSrv.FailPutImage(tc.fail, "")
			if err := fe.runner.Push(testCtx(t)); err != nil {
				t.Fatalf("run again: %v\nlog:\n%s", err, fe.log)
			}
			repo, _ = ecrSrv.Repository("sidecar")
			if repo.Tags["1.4.0"] != candidate || repo.Tags["latest"] != candidate || repo.Tags[short] != candidate {
				t.Errorf("tags after running again: %v, want all on the candidate %s", repo.Tags, candidate)
			}
			if n := len(fe.leaves("publish")); n != 1 {
				t.Errorf("%d publishes over both runs, want 1", n)
			}
		})
	}
}

// Another run may put the version tag between this run's lookup and its
// PutImage (two runs of one git tag). On this run's image, that is its
// release; on another image, the error names the tag, both images and
// what to do, and latest stays where it was.
func TestPushVersionTagTakenMeanwhile(t *testing.T) {
	t.Parallel()
	const theirs = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name, raced string // the digest the other run puts 1.4.0 on; "" for this run's
	}{{name: "on this run's image"}, {name: "on another image", raced: theirs}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ecrSrv, fe, short := releaseV140(t, map[string]string{"PUSH_LATEST": "true"})
			ecrSrv.SetExclusions("sidecar", "latest")
			ecrSrv.RacePutImage("1.4.0", tc.raced)
			err := fe.runner.Push(testCtx(t))
			repo, _ := ecrSrv.Repository("sidecar")
			candidate := repo.Tags[short]
			if tc.raced == "" {
				if err != nil {
					t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
				}
				if repo.Tags["1.4.0"] != candidate || repo.Tags["latest"] != candidate {
					t.Errorf("tags %v, want 1.4.0 and latest on the candidate %s", repo.Tags, candidate)
				}
				if !strings.Contains(fe.out.String(), ":1.4.0@"+candidate) {
					t.Errorf("stdout lacks the 1.4.0 reference:\n%s", fe.out)
				}
				return
			}
			if err == nil {
				t.Fatalf("Push succeeded with 1.4.0 taken by another image; log:\n%s", fe.log)
			}
			for _, w := range []string{"promote 1.4.0", `"1.4.0"`, theirs, candidate, "another run", "tag a new version", "latest not moved"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "run again") {
				t.Errorf("error says to run again, which the plan would refuse:\n%v", err)
			}
			if ExitCode(err) != ExitFailed {
				t.Errorf("exit code %d, want %d", ExitCode(err), ExitFailed)
			}
			if repo.Tags["1.4.0"] != theirs || repo.Tags["latest"] != "" {
				t.Errorf("tags %v, want 1.4.0 on %s, latest nowhere", repo.Tags, theirs)
			}
		})
	}
}

// When ECR does not answer for the candidate it is to release (its
// manifest, read back for its platforms), the error names the image and
// the call, says what is left in ECR and what to check.
func TestPushCandidateReadBackFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		before bool // the commit is in ECR from an earlier run
		want   []string
	}{
		{name: "pushed by this run", want: []string{`step "candidate"`, "reading back the candidate", "stays as an unreleased candidate; 1.4.0 not moved", "run again"}},
		{name: "pushed by an earlier run", before: true, want: []string{`step "release plan"`, "release refused", "stays as an unreleased candidate; 1.4.0 not moved", "run again"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ecrSrv, fe, short := releaseV140(t, nil)
			if tc.before {
				pushedCandidate(t, ecrSrv, short, earlierFiles(t))
			}
			ecrSrv.FailImageReads("AccessDeniedException")
			err := fe.runner.Push(testCtx(t))
			if err == nil {
				t.Fatalf("Push succeeded with the candidate unreadable; log:\n%s", fe.log)
			}
			repo, _ := ecrSrv.Repository("sidecar")
			candidate := repo.Tags[short]
			if candidate == "" || repo.Tags["1.4.0"] != "" {
				t.Fatalf("tags %v, want the candidate alone", repo.Tags)
			}
			for _, w := range append(tc.want, ecrSrv.Host()+"/sidecar:"+short+"@"+candidate, "ecr:BatchGetImage", "AccessDeniedException") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// Two runs of one commit may both find its tag free and push: in an
// immutable repository the second push is refused. The error says that
// another run pushed the commit meanwhile, and that a run again releases
// that image; a push refused for another cause pushed nothing.
func TestPushCandidateTakenMeanwhile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		raced  bool // the other run's image is under the commit tag
		refuse string
	}{
		{name: "another run pushed first", raced: true, refuse: "tag invalid: The image tag already exists and cannot be overwritten because the repository is immutable."},
		{name: "refused for another cause", refuse: "denied: not authorized to perform: ecr:InitiateLayerUpload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ecrSrv, fe, short := releaseV140(t, nil)
			theirs := "(none)"
			fe.srv.Handle("publish", func(q daggertest.Query) (any, error) {
				if tc.raced {
					theirs = prePushed(t, ecrSrv, short, "the other run's")
				}
				return nil, daggertest.Failure("failed to push " + q.Leaf().Arg("address") + ": " + tc.refuse)
			})
			err := fe.runner.Push(testCtx(t))
			if err == nil {
				t.Fatalf("Push succeeded with its publish refused; log:\n%s", fe.log)
			}
			want := []string{"publish " + ecrSrv.Host() + "/sidecar:" + short, tc.refuse, "(nothing pushed)"}
			if tc.raced {
				want = []string{"publish " + ecrSrv.Host() + "/sidecar:" + short, tc.refuse, "another run pushed this commit meanwhile, as " + theirs, "run again"}
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if said := strings.Contains(err.Error(), "another run"); said != tc.raced {
				t.Errorf("error blames another run: %v, want %v:\n%v", said, tc.raced, err)
			}
		})
	}
}
