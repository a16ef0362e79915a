package sbom

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
	"github.com/spdx/tools-golang/spdxlib"

	"github.com/example/sidecar/internal/sidecarbin"
)

const apkDB = `C:Q1abc=
P:busybox
V:1.37.0-r19
A:x86_64
L:GPL-2.0-only
U:https://busybox.net/
T:Size optimized toolbox of many common UNIX utilities
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>

P:musl
V:1.2.5-r10
A:x86_64
L:MIT
o:musl

P:libcrypto3
V:3.5.4-r0
A:x86_64
L:Apache-2.0
o:openssl
`

// alpineOSRelease is Alpine 3.22's /etc/os-release.
const alpineOSRelease = `NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.22.2
PRETTY_NAME="Alpine Linux v3.22"
HOME_URL="https://alpinelinux.org/"
BUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"
`

func TestBuildFromTheRealBinary(t *testing.T) {
	bin, err := os.ReadFile(sidecarbin.Build(t, "arm64"))
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	goDigest := "sha256:" + strings.Repeat("a", 64)
	// One base pinned by the build, one known only by its tag.
	bases := []BaseImage{{Ref: "golang:1.26-alpine", Pinned: "golang:1.26-alpine@" + goDigest, Arg: "GO_IMAGE", Stage: "build"},
		{Ref: "alpine:3.22", Arg: "RUNTIME_IMAGE", Stage: "runtime"}}
	doc, err := Build(Input{
		Name: "sidecar", Version: "v1.2.3", Revision: "0123456789abcdef", Platform: "linux/arm64",
		Image:  "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sidecar@sha256:" + strings.Repeat("e", 64),
		Binary: bin, BinaryPath: "/usr/local/bin/sidecar", APKInstalled: []byte(apkDB), OSRelease: []byte(alpineOSRelease),
		BaseImages: bases,
		Created:    created,
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := JSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	// Parse it back with tools-golang and validate it.
	back, err := spdxjson.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("spdx json read: %v\n%s", err, raw)
	}
	if err := spdxlib.ValidateDocument(back); err != nil {
		t.Fatal(err)
	}
	if back.SPDXVersion != "SPDX-2.3" || back.DataLicense != "CC0-1.0" || back.CreationInfo.Created != "2026-03-04T05:06:07Z" {
		t.Errorf("header: %s %s %s", back.SPDXVersion, back.DataLicense, back.CreationInfo.Created)
	}
	described, err := spdxlib.GetDescribedPackageIDs(back)
	if err != nil || len(described) != 1 || described[0] != "Image" {
		t.Errorf("described %v %v", described, err)
	}
	byName := map[string]*spdx.Package{}
	for _, p := range back.Packages {
		byName[p.PackageName] = p
	}
	sum := sha256.Sum256(bin)
	b := byName["github.com/example/sidecar/sidecar"]
	if b == nil || b.PackageChecksums[0].Value != hex.EncodeToString(sum[:]) || !strings.Contains(b.PackageComment, "GOARCH=arm64") {
		t.Errorf("binary package %+v", b)
	}
	// Every module linked into the binary (go version -m lists the same)
	// is a package of its own, with its version and package URL; the
	// sidecar links aws-sdk-go-v2, so a list that lost them fails here.
	bi, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		t.Fatal(err)
	}
	libraries := 0
	for _, p := range back.Packages {
		if p.PrimaryPackagePurpose == "LIBRARY" && p.PackageName != "stdlib" {
			libraries++
		}
	}
	if libraries != len(bi.Deps) || !slices.ContainsFunc(bi.Deps, func(m *debug.Module) bool { return m.Path == "github.com/aws/aws-sdk-go-v2" }) {
		t.Errorf("%d module packages for the binary's %d modules (aws-sdk-go-v2 among them)", libraries, len(bi.Deps))
	}
	for _, m := range bi.Deps {
		p := byName[m.Path]
		if p == nil || p.PackageVersion != m.Version || p.PackageExternalReferences[0].Locator != "pkg:golang/"+m.Path+"@"+m.Version {
			t.Errorf("module %s %s: package %+v", m.Path, m.Version, p)
		}
	}
	if p := byName["stdlib"]; p == nil || p.PackageVersion != runtime.Version() || len(p.PackageExternalReferences) != 2 ||
		p.PackageExternalReferences[0].Locator != "pkg:golang/stdlib@"+strings.TrimPrefix(runtime.Version(), "go") ||
		p.PackageExternalReferences[1].Locator != "cpe:2.3:a:golang:go:"+strings.TrimPrefix(runtime.Version(), "go")+":-:*:*:*:*:*:*" {
		t.Errorf("stdlib package %+v", p)
	}
	if p := byName["busybox"]; p == nil || p.PackageVersion != "1.37.0-r19" || p.PackageLicenseDeclared != "GPL-2.0-only" ||
		p.PackageExternalReferences[0].Locator != "pkg:apk/alpine/busybox@1.37.0-r19?arch=x86_64&distro=alpine-3.22.2" || p.PackageSupplier == nil {
		t.Errorf("busybox package %+v", p)
	}
	if p := byName["busybox"]; p != nil && (p.PrimaryPackagePurpose != "OPERATING_SYSTEM" || !regexp.MustCompile(`^[^<>()]+ \([^()\s]+@[^()\s]+\)$`).MatchString(p.PackageSupplier.Supplier)) {
		t.Errorf("busybox purpose %q, supplier %q: want OPERATING_SYSTEM and \"Name (email)\"", p.PrimaryPackagePurpose, p.PackageSupplier.Supplier)
	}
	// Every purpose is one the SPDX 2.3 JSON schema allows (spdx/spdx-spec,
	// schemas/spdx-schema-2-3.json): schema validators refuse the rest.
	purposes := []string{"OTHER", "INSTALL", "ARCHIVE", "FIRMWARE", "APPLICATION", "FRAMEWORK", "LIBRARY", "CONTAINER", "SOURCE", "DEVICE", "OPERATING_SYSTEM", "FILE"}
	for _, p := range back.Packages {
		if p.PrimaryPackagePurpose != "" && !slices.Contains(purposes, p.PrimaryPackagePurpose) {
			t.Errorf("package %s: primaryPackagePurpose %q is not in the SPDX 2.3 JSON schema", p.PackageName, p.PrimaryPackagePurpose)
		}
	}
	if p := byName["musl"]; p == nil || p.PackageVersion != "1.2.5-r10" {
		t.Errorf("musl package %+v", p)
	}
	if p := byName["libcrypto3"]; p == nil ||
		p.PackageExternalReferences[0].Locator != "pkg:apk/alpine/libcrypto3@3.5.4-r0?arch=x86_64&distro=alpine-3.22.2&upstream=openssl" {
		t.Errorf("libcrypto3 package (origin openssl) %+v", p)
	}
	if p := byName["alpine:3.22"]; p == nil || p.PackageExternalReferences[0].Locator != "pkg:oci/alpine?repository_url=alpine&tag=3.22" ||
		!strings.Contains(p.PackageComment, "by tag: the digest it named at build time is not recorded") {
		t.Errorf("runtime base (not pinned) %+v", p)
	}
	if p := byName["golang:1.26-alpine"]; p == nil ||
		p.PackageExternalReferences[0].Locator != "pkg:oci/golang@sha256%3A"+strings.Repeat("a", 64)+"?repository_url=golang&tag=1.26-alpine" ||
		!strings.Contains(p.PackageComment, "by the digest the build was pinned to") {
		t.Errorf("build base (pinned) %+v", p)
	}
	rels := map[string]bool{}
	for _, r := range back.Relationships {
		rels[string(r.RefA.ElementRefID)+" "+r.Relationship+" "+string(r.RefB.ElementRefID)] = true
	}
	for _, w := range []string{
		"Image CONTAINS Binary-sidecar", "Binary-sidecar DEPENDS_ON Go-stdlib",
		"Image CONTAINS APK-busybox-1.37.0-r19", "Image DESCENDANT_OF BaseImage-RUNTIME-IMAGE",
		"BaseImage-GO-IMAGE BUILD_TOOL_OF Binary-sidecar",
	} {
		if !rels[w] {
			t.Errorf("no relationship %q in %v", w, rels)
		}
	}
	// Reproducible: the same input gives the same bytes.
	doc2, _ := Build(Input{Name: "sidecar", Version: "v1.2.3", Revision: "0123456789abcdef", Platform: "linux/arm64",
		Image:  "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sidecar@sha256:" + strings.Repeat("e", 64),
		Binary: bin, BinaryPath: "/usr/local/bin/sidecar", APKInstalled: []byte(apkDB), OSRelease: []byte(alpineOSRelease),
		BaseImages: bases,
		Created:    created})
	raw2, _ := JSON(doc2)
	if !bytes.Equal(raw, raw2) {
		t.Error("the same input gave different documents")
	}
	// Another document, another namespace (SPDX allows one document per
	// URI): the same binary on a base with other OS packages.
	doc3, _ := Build(Input{Name: "sidecar", Version: "v1.2.3", Revision: "0123456789abcdef", Platform: "linux/arm64",
		Image:  "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sidecar@sha256:" + strings.Repeat("e", 64),
		Binary: bin, BinaryPath: "/usr/local/bin/sidecar", APKInstalled: []byte(strings.Replace(apkDB, "1.37.0-r19", "1.37.0-r20", 1)),
		OSRelease: []byte(alpineOSRelease), BaseImages: bases, Created: created})
	if doc3 == nil || doc3.DocumentNamespace == doc.DocumentNamespace {
		t.Errorf("a document with a newer busybox has the namespace %q too", doc.DocumentNamespace)
	}
}

func TestBuildRefusesBadInput(t *testing.T) {
	if _, err := Build(Input{Binary: []byte("not a Go binary"), BinaryPath: "/usr/local/bin/sidecar"}); err == nil || !strings.Contains(err.Error(), "build info") {
		t.Errorf("non-Go binary: %v", err)
	}
	for _, bad := range []string{"P:x\n", "V:1\n", "garbage line\n"} {
		if _, err := ParseAPK([]byte(bad)); err == nil {
			t.Errorf("ParseAPK(%q) passed", bad)
		}
	}
	pkgs, err := ParseAPK([]byte(apkDB))
	if err != nil || len(pkgs) != 3 || pkgs[1].Name != "musl" || pkgs[2].Origin != "openssl" {
		t.Errorf("ParseAPK: %v %+v", err, pkgs)
	}
}

func TestJSONIdentifiers(t *testing.T) {
	bin, err := os.ReadFile(os.Args[0]) // any Go binary
	if err != nil {
		t.Fatal(err)
	}
	doc, err := Build(Input{Name: "sidecar", Version: "dev", Platform: "linux/amd64", Binary: bin, BinaryPath: "/x", Created: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := JSON(doc)
	for _, w := range []string{`"SPDXID": "SPDXRef-DOCUMENT"`, `"SPDXID": "SPDXRef-Image"`, `"spdxElementId": "SPDXRef-DOCUMENT"`, `"relatedSpdxElement": "SPDXRef-Image"`} {
		if !strings.Contains(string(raw), w) {
			t.Errorf("JSON lacks %s:\n%s", w, raw)
		}
	}
	if strings.Contains(string(raw), "SPDXRef-SPDXRef") {
		t.Error("doubled SPDXRef- prefix")
	}
}

func TestVerify(t *testing.T) {
	bin, err := os.ReadFile(os.Args[0]) // any Go binary
	if err != nil {
		t.Fatal(err)
	}
	const digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	doc, err := Build(Input{Name: "sidecar", Version: "dev", Platform: "linux/amd64", Image: "host/sidecar@" + digest, Binary: bin, BinaryPath: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := JSON(doc)
	if err := Verify(raw, digest, bin); err != nil {
		t.Fatalf("Verify of Build's own document: %v", err)
	}
	// An SBOM attached before Build checked licenses carried apk's L:
	// field as it was.
	doc, err = Build(Input{Name: "sidecar", Version: "dev", Platform: "linux/amd64", Image: "host/sidecar@" + digest, Binary: bin, BinaryPath: "/x",
		APKInstalled: []byte("P:x\nV:1.0-r0\nL:custom\n")})
	if err != nil {
		t.Fatal(err)
	}
	withRef, _ := JSON(doc)
	if err := Verify(withRef, digest, bin); err != nil {
		t.Fatalf("Verify of Build's own document with a LicenseRef: %v", err)
	}
	ref := doc.OtherLicenses[0].LicenseIdentifier
	unchecked := strings.Replace(string(withRef), `"licenseDeclared": "`+ref+`"`, `"licenseDeclared": "custom"`, 1)
	for _, tc := range []struct {
		name   string
		doc    string
		digest string
		binary []byte
		want   string
	}{
		{"empty object", "{}", digest, bin, "not SPDX JSON"},
		{"not JSON", "sbom", digest, bin, "not SPDX JSON"},
		{"another image", string(raw), "sha256:2222222222222222222222222222222222222222222222222222222222222222", bin, "does not describe the image manifest"},
		{"another binary", string(raw), digest, []byte("other"), "does not list the image's sidecar binary"},
		{"a license field as apk wrote it", unchecked, digest, bin, `license "custom" is not an SPDX license expression`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Verify([]byte(tc.doc), tc.digest, tc.binary); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestGoModuleVersion(t *testing.T) {
	for in, want := range map[string]string{"1.2.3": "v1.2.3", "v1.2.3": "v1.2.3", "dev": "dev", "": ""} {
		if got := goModuleVersion(in); got != want {
			t.Errorf("goModuleVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// Scanners find the standard library's vulnerabilities by these: syft
// writes the same purl and CPE for a Go binary it catalogs.
func TestStdlibRefs(t *testing.T) {
	for _, tc := range []struct{ goVersion, purl, cpe string }{
		{"go1.26.8", "pkg:golang/stdlib@1.26.8", "cpe:2.3:a:golang:go:1.26.8:-:*:*:*:*:*:*"},
		{"go1.27", "pkg:golang/stdlib@1.27", "cpe:2.3:a:golang:go:1.27:-:*:*:*:*:*:*"},
		{"go1.27rc1", "pkg:golang/stdlib@1.27rc1", "cpe:2.3:a:golang:go:1.27:rc1:*:*:*:*:*:*"},
		{"go1.26.8 X:nodwarf5", "pkg:golang/stdlib@1.26.8", "cpe:2.3:a:golang:go:1.26.8:-:*:*:*:*:*:*"},
		{"devel go1.27-4b0a3c9 Tue Dec 1 10:00:00 2026 +0000", "pkg:golang/stdlib@devel%20go1.27-4b0a3c9%20Tue%20Dec%201%2010:00:00%202026%20%2B0000", ""},
	} {
		t.Run(tc.goVersion, func(t *testing.T) {
			refs := stdlibRefs(tc.goVersion)
			var got []string
			for _, r := range refs {
				got = append(got, r.Category+" "+r.RefType+" "+r.Locator)
			}
			want := []string{"PACKAGE-MANAGER purl " + tc.purl}
			if tc.cpe != "" {
				want = append(want, "SECURITY cpe23Type "+tc.cpe)
			}
			if !slices.Equal(got, want) {
				t.Errorf("stdlibRefs(%q) = %q, want %q", tc.goVersion, got, want)
			}
		})
	}
}

// grype reads the distribution of an SBOM's OS packages from the purls'
// distro qualifier, and matches a package whose origin differs from its
// name through upstream; without them it finds no Alpine vulnerabilities.
func TestAPKPurl(t *testing.T) {
	alpine := ParseOSRelease([]byte(alpineOSRelease))
	for _, tc := range []struct {
		name string
		a    APKPackage
		osr  OSRelease
		want string
	}{
		{"alpine", APKPackage{Name: "busybox", Version: "1.37.0-r19", Arch: "aarch64", Origin: "busybox"}, alpine,
			"pkg:apk/alpine/busybox@1.37.0-r19?arch=aarch64&distro=alpine-3.22.2"},
		{"origin differs", APKPackage{Name: "libssl3", Version: "3.5.4-r0", Arch: "x86_64", Origin: "openssl"}, alpine,
			"pkg:apk/alpine/libssl3@3.5.4-r0?arch=x86_64&distro=alpine-3.22.2&upstream=openssl"},
		{"another apk distribution", APKPackage{Name: "busybox", Version: "1.37.0-r5", Arch: "x86_64"}, OSRelease{ID: "wolfi", VersionID: "20230201"},
			"pkg:apk/wolfi/busybox@1.37.0-r5?arch=x86_64&distro=wolfi-20230201"},
		{"no os-release", APKPackage{Name: "musl", Version: "1.2.5-r10", Arch: "x86_64", Origin: "musl"}, OSRelease{},
			"pkg:apk/alpine/musl@1.2.5-r10?arch=x86_64"},
		{"no VERSION_ID", APKPackage{Name: "musl", Version: "1.2.5-r10", Arch: "x86_64"}, OSRelease{ID: "alpine"},
			"pkg:apk/alpine/musl@1.2.5-r10?arch=x86_64"},
		{"a name to escape", APKPackage{Name: "libstdc++", Version: "14.2.0-r6", Arch: "x86_64", Origin: "gcc"}, alpine,
			"pkg:apk/alpine/libstdc%2B%2B@14.2.0-r6?arch=x86_64&distro=alpine-3.22.2&upstream=gcc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := apkPurl(tc.a, tc.osr); got != tc.want {
				t.Errorf("apkPurl(%+v, %+v) =\n %s, want\n %s", tc.a, tc.osr, got, tc.want)
			}
		})
	}
}

func TestParseOSRelease(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       OSRelease
	}{
		{"alpine", alpineOSRelease, OSRelease{ID: "alpine", VersionID: "3.22.2"}},
		{"quoted", "ID='debian'\nVERSION_ID=\"12\"\n", OSRelease{ID: "debian", VersionID: "12"}},
		{"comments and blanks", "# made by hand\n\nID=sidecar-standin\n", OSRelease{ID: "sidecar-standin"}},
		{"empty", "", OSRelease{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseOSRelease([]byte(tc.file)); got != tc.want {
				t.Errorf("ParseOSRelease(%q) = %+v, want %+v", tc.file, got, tc.want)
			}
		})
	}
}
