package imagetest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdxlib"

	"github.com/example/sidecar/ci/sbom"
)

// apkStandinTag is the runtime stand-in with an apk installed database: an
// image of its own, so it never replaces the shared runtime stand-in.
const apkStandinTag = runtimeStandinRepo + ":busybox-apkdb"

var busyboxBanner = regexp.MustCompile(`^BusyBox v\S+ \(Debian ([^)]+)\)`)

// standinAPKDB is an apk installed database (Alpine's
// /lib/apk/db/installed format) that says what the stand-in really holds:
// one package, Debian's busybox-static, with Debian's version.
func standinAPKDB(t testing.TB, busybox string) rootFile {
	t.Helper()
	out, _ := exec.Command(busybox).CombinedOutput() // exits 1 after the banner
	m := busyboxBanner.FindSubmatch(out)
	if m == nil {
		t.Fatalf("%s: no Debian version in the banner %q", busybox, firstLine(string(out)))
	}
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	body := fmt.Sprintf("P:busybox\nV:%s\nA:%s\nL:GPL-2.0-only\nU:https://packages.debian.org/bookworm/busybox-static\n"+
		"T:Debian's statically linked busybox (the sidecar test stand-in, not an Alpine package)\no:busybox\n\n", m[1], arch)
	return rootFile{"lib/apk/db/installed", 0o644, body}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// ensureAPKStandin makes (or reuses) the runtime stand-in with the apk
// database and returns its tag and the busybox version it records.
func ensureAPKStandin(t testing.TB, d docker) (string, string) {
	t.Helper()
	busybox := staticBusybox(t)
	bbSum, err := fileSHA256(busybox)
	if err != nil {
		t.Fatal(err)
	}
	db := standinAPKDB(t, busybox)
	files := append(rootfsFiles(), db)
	recipe := recipeHash(recipeVersion, bbSum, files)
	version := strings.TrimPrefix(strings.Split(db.body, "\n")[1], "V:")
	got, err := d.output(context.Background(), "image", "inspect", "--format",
		fmt.Sprintf("{{.Id}} {{index .Config.Labels %q}}", recipeLabel), apkStandinTag)
	old := strings.Fields(got)
	if err == nil && len(old) == 2 && old[1] == recipe {
		return apkStandinTag, version
	}
	changes := []string{"LABEL " + recipeLabel + "=" + recipe,
		"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", `CMD ["/bin/sh"]`}
	if err := importRootfs(d, apkStandinTag, changes, busybox, files, nil); err != nil {
		t.Fatalf("make stand-in %s: %v", apkStandinTag, err)
	}
	if len(old) > 0 { // our own outdated stand-in
		_, _ = d.output(context.Background(), "rmi", old[0])
	}
	return apkStandinTag, version
}

// TestImageSBOM builds the real Dockerfile on a runtime base with an apk
// database and checks the SBOM the pipeline writes from the built image's
// files: the sidecar binary with its Go toolchain, the OS packages, the
// base images.
func TestImageSBOM(t *testing.T) {
	d := requireDocker(t)
	s := ensureStandins(t, d)
	runtimeRef, bbVersion := ensureAPKStandin(t, d)
	s.Runtime = runtimeRef
	img := buildImage(t, d, s)

	name := containerName(t)
	d.must(t, "create", "--network", "host", "--name", name, "--entrypoint", "/bin/true", img.ref)
	d.removeOnCleanup(t, name)
	dir := t.TempDir()
	read := func(path string) []byte {
		dst := filepath.Join(dir, filepath.Base(path))
		d.must(t, "cp", name+":"+path, dst)
		b, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	bin, apkdb, osRelease := read("/usr/local/bin/sidecar"), read("/lib/apk/db/installed"), read("/etc/os-release")

	doc, err := sbom.Build(sbom.Input{
		Name: "sidecar", Version: testVersion, Revision: testRevision, Platform: "linux/" + runtime.GOARCH,
		Binary: bin, BinaryPath: "/usr/local/bin/sidecar", APKInstalled: apkdb, OSRelease: osRelease,
		BaseImages: []sbom.BaseImage{{Ref: s.Go, Arg: "GO_IMAGE", Stage: "build"}, {Ref: s.Runtime, Arg: "RUNTIME_IMAGE", Stage: "runtime"}},
		Created:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sbom.JSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	back, err := spdxjson.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("SPDX JSON: %v", err)
	}
	if err := spdxlib.ValidateDocument(back); err != nil {
		t.Fatal(err)
	}
	versions := map[string]string{}
	for _, p := range back.Packages {
		versions[p.PackageName] = p.PackageVersion
		// The runtime base's os-release reaches the final image, and names
		// the distribution in each OS package's URL.
		if want := "&distro=sidecar-standin-" + standinOSVersion; p.PackageName == "busybox" &&
			(!strings.HasPrefix(p.PackageExternalReferences[0].Locator, "pkg:apk/sidecar-standin/busybox@") || !strings.HasSuffix(p.PackageExternalReferences[0].Locator, want)) {
			t.Errorf("SBOM of the built image: busybox is %s, want the stand-in's distribution (%s)", p.PackageExternalReferences[0].Locator, want)
		}
	}
	goTC := findHostGo(t) // the Go stand-in carries this toolchain
	for pkg, want := range map[string]string{
		"stdlib": goTC.version, "busybox": bbVersion, "github.com/example/sidecar/sidecar": testVersion,
	} {
		if versions[pkg] != want {
			t.Errorf("SBOM of the built image: %s at %q, want %q (packages %v)", pkg, versions[pkg], want, versions)
		}
	}
	for _, ref := range []string{s.Go, s.Runtime} {
		if _, ok := versions[ref]; !ok {
			t.Errorf("SBOM lacks base image %s: %v", ref, versions)
		}
	}
	// The Go modules it lists are those `go version -m` finds in the
	// binary: none missing, none extra.
	var listed []string
	for _, p := range back.Packages {
		if p.PrimaryPackagePurpose == "LIBRARY" && p.PackageName != "stdlib" {
			listed = append(listed, p.PackageName+"@"+p.PackageVersion)
		}
	}
	slices.Sort(listed)
	if inBinary := binaryModules(t, filepath.Join(dir, "sidecar")); !slices.Equal(listed, inBinary) {
		t.Errorf("SBOM of the built image lists the Go modules\n  %v\n`go version -m` of its binary has\n  %v", listed, inBinary)
	}
	t.Logf("SBOM of %s: %d packages, %d bytes", img.ref, len(back.Packages), len(raw))
}

// binaryModules are the dependency modules `go version -m` reads from a
// Go binary, as path@version sorted; a replaced one as its replacement
// (a local directory as the module it replaces, at (devel)).
func binaryModules(t *testing.T, bin string) []string {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m %s: %v", bin, err)
	}
	var mods []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(strings.TrimPrefix(line, "\t"), "\t")
		switch {
		case len(f) >= 3 && f[0] == "dep":
			mods = append(mods, f[1]+"@"+f[2])
		case len(f) >= 3 && f[0] == "=>" && f[2] != "" && len(mods) > 0:
			mods[len(mods)-1] = f[1] + "@" + f[2]
		case len(f) >= 2 && f[0] == "=>" && len(mods) > 0: // a local directory
			path, _, _ := strings.Cut(mods[len(mods)-1], "@")
			mods[len(mods)-1] = path + "@(devel)"
		}
	}
	if len(mods) == 0 {
		t.Fatalf("go version -m %s lists no dependency modules:\n%s", bin, out)
	}
	slices.Sort(mods)
	return mods
}
