// Package sbom writes an SPDX 2.3 JSON software bill of materials for one
// platform of the sidecar image: the sidecar binary with its Go toolchain
// and modules (from the binary's build info), the runtime image's OS
// packages (Alpine's /lib/apk/db/installed), and the base images by
// reference.
//
//	doc, err := sbom.Build(sbom.Input{Platform: "linux/arm64", Binary: bin, APKInstalled: db, ...})
//	b, err := sbom.JSON(doc)
package sbom

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
	"github.com/spdx/tools-golang/spdx/v2/common"
	"github.com/spdx/tools-golang/spdxlib"
)

// MediaType is the artifact type of an SPDX JSON document.
const MediaType = "application/spdx+json"

// BaseImage is a base image of the Dockerfile, by reference and, when
// the build was pinned to it, by digest.
type BaseImage struct {
	Ref    string // e.g. golang:1.26-alpine, or a mirror's reference
	Pinned string // Ref@sha256:… the build used; "" when not known
	Arg    string // the Dockerfile build argument naming it: GO_IMAGE, RUNTIME_IMAGE
	Stage  string // "build" (toolchain only) or "runtime" (the image's base)
}

// Input is what the SBOM describes.
type Input struct {
	Name         string // image name, e.g. sidecar
	Version      string // image version (tag or dev)
	Revision     string // source commit
	Platform     string // os/arch
	Image        string // the image's reference in the registry; "" when not pushed
	Binary       []byte // the sidecar binary as shipped
	BinaryPath   string // its path in the image
	APKInstalled []byte // /lib/apk/db/installed; nil when the image has none
	OSRelease    []byte // the image's os-release file; nil when it has none
	BaseImages   []BaseImage
	Created      time.Time // document creation time (the commit time keeps it reproducible)
	Tool         string    // creator tool, e.g. sidecar-ci
}

// APKPackage is one package of an apk installed database.
type APKPackage struct {
	Name, Version, Arch, License, URL, Description, Origin, Maintainer string
}

// OSRelease is what an os-release file says of the image's distribution.
type OSRelease struct{ ID, VersionID string }

// ParseOSRelease reads ID and VERSION_ID from an os-release file
// (KEY=value lines, values optionally quoted; see os-release(5)).
func ParseOSRelease(b []byte) OSRelease {
	var r OSRelease
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		switch k {
		case "ID":
			r.ID = v
		case "VERSION_ID":
			r.VersionID = v
		}
	}
	return r
}

// ParseAPK reads an apk installed database: paragraphs separated by blank
// lines, one "K:value" per line (https://wiki.alpinelinux.org/wiki/Apk_spec).
func ParseAPK(db []byte) ([]APKPackage, error) {
	var pkgs []APKPackage
	var cur APKPackage
	flush := func(line int) error {
		if cur == (APKPackage{}) {
			return nil
		}
		if cur.Name == "" || cur.Version == "" {
			return fmt.Errorf("apk database: package ending at line %d has no P: (name) or V: (version)", line)
		}
		pkgs = append(pkgs, cur)
		cur = APKPackage{}
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(db))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if line == "" {
			if err := flush(n); err != nil {
				return nil, err
			}
			continue
		}
		if len(line) < 2 || line[1] != ':' {
			return nil, fmt.Errorf("apk database line %d: want K:value, got %q", n, line)
		}
		v := line[2:]
		switch line[0] {
		case 'P':
			cur.Name = v
		case 'V':
			cur.Version = v
		case 'A':
			cur.Arch = v
		case 'L':
			cur.License = v
		case 'U':
			cur.URL = v
		case 'T':
			cur.Description = v
		case 'o':
			cur.Origin = v
		case 'm':
			cur.Maintainer = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := flush(n + 1); err != nil {
		return nil, err
	}
	return pkgs, nil
}

var idUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

func elementID(kind, name string) common.ElementID {
	return common.ElementID(kind + "-" + strings.Trim(idUnsafe.ReplaceAllString(name, "-"), "-"))
}

const noAssertion = "NOASSERTION"

// Build makes the SPDX document and validates it.
func Build(in Input) (*spdx.Document, error) {
	bi, err := buildinfo.Read(bytes.NewReader(in.Binary))
	if err != nil {
		return nil, fmt.Errorf("%s: no Go build info: %w", in.BinaryPath, err)
	}
	sum := sha256.Sum256(in.Binary)
	binSum := hex.EncodeToString(sum[:])
	d := &document{newDocument(in)}
	image := d.pkg(&spdx.Package{
		PackageName: in.Name, PackageSPDXIdentifier: "Image", PackageVersion: in.Version,
		PrimaryPackagePurpose: "CONTAINER",
		PackageComment:        fmt.Sprintf("The %s image for %s, from commit %s.", in.Name, in.Platform, in.Revision),
		PackageSourceInfo:     in.Image,
	})
	d.rel("DOCUMENT", "DESCRIBES", image)
	binary := d.goBinary(in, bi, binSum)
	d.rel(image, "CONTAINS", binary)
	if in.APKInstalled != nil {
		if err := d.apks(in.APKInstalled, ParseOSRelease(in.OSRelease), image); err != nil {
			return nil, err
		}
	}
	d.baseImages(in.BaseImages, image, binary)
	if err := d.name(in); err != nil {
		return nil, err
	}
	if err := spdxlib.ValidateDocument(d.Document); err != nil {
		return nil, fmt.Errorf("SPDX document: %w", err)
	}
	// spdxlib checks identifiers and relationships, not licenses.
	if err := checkLicenses(d.Document); err != nil {
		return nil, fmt.Errorf("SPDX document: %w", err)
	}
	return d.Document, nil
}

// newDocument is the document's header: its name, namespace and creation.
func newDocument(in Input) *spdx.Document {
	created := in.Created.UTC()
	if created.IsZero() {
		created = time.Now().UTC()
	}
	tool := in.Tool
	if tool == "" {
		tool = "sidecar-ci"
	}
	return &spdx.Document{
		SPDXVersion:    spdx.Version,
		DataLicense:    spdx.DataLicense,
		SPDXIdentifier: "DOCUMENT",
		DocumentName:   fmt.Sprintf("%s-%s-%s", in.Name, in.Version, strings.ReplaceAll(in.Platform, "/", "-")),
		CreationInfo: &spdx.CreationInfo{
			Creators: []common.Creator{{CreatorType: "Tool", Creator: tool}},
			Created:  created.Format(time.RFC3339),
		},
	}
}

// document adds packages and relationships to an SPDX document.
type document struct{ *spdx.Document }

// name sets the namespace, once the document is whole: SPDX allows one
// document per namespace URI, and the same binary on a newer base (other
// OS packages) is another document.
func (d *document) name(in Input) error {
	body, err := json.Marshal(d.Document)
	if err != nil {
		return fmt.Errorf("SPDX document: %w", err)
	}
	sum := sha256.Sum256(body)
	d.DocumentNamespace = fmt.Sprintf("https://spdx.org/spdxdocs/%s/%s/%s/%s", in.Name, in.Version, in.Platform, hex.EncodeToString(sum[:]))
	return nil
}

// rel records that a relates to b as typ.
func (d *document) rel(a common.ElementID, typ string, b common.ElementID) {
	d.Relationships = append(d.Relationships, &spdx.Relationship{
		RefA: common.MakeDocElementID("", string(a)), RefB: common.MakeDocElementID("", string(b)), Relationship: typ,
	})
}

// pkg adds p, with NOASSERTION for what it leaves unsaid, and returns its id.
func (d *document) pkg(p *spdx.Package) common.ElementID {
	if p.PackageDownloadLocation == "" {
		p.PackageDownloadLocation = noAssertion
	}
	if p.PackageLicenseConcluded == "" {
		p.PackageLicenseConcluded = noAssertion
	}
	if p.PackageLicenseDeclared == "" {
		p.PackageLicenseDeclared = noAssertion
	}
	if p.PackageCopyrightText == "" {
		p.PackageCopyrightText = noAssertion
	}
	p.IsFilesAnalyzedTagPresent = true
	// elementID maps / and - alike (github.com/a/b-c, github.com/a-b/c):
	// a later package whose id is taken gets a suffix, in a stable order.
	base := p.PackageSPDXIdentifier
	for n := 2; d.hasID(p.PackageSPDXIdentifier); n++ {
		p.PackageSPDXIdentifier = common.ElementID(fmt.Sprintf("%s-%d", base, n))
	}
	d.Packages = append(d.Packages, p)
	return p.PackageSPDXIdentifier
}

func (d *document) hasID(id common.ElementID) bool {
	for _, q := range d.Packages {
		if q.PackageSPDXIdentifier == id {
			return true
		}
	}
	return false
}

func purl(locator string) []*spdx.PackageExternalReference {
	return []*spdx.PackageExternalReference{{Category: "PACKAGE-MANAGER", RefType: "purl", Locator: locator}}
}

// stdlibRefs names the Go standard library as scanners look it up: a
// release's purl and CPE versions drop the "go" prefix and any
// experiments (as syft writes them; grype matches the CPE against NVD,
// Trivy parses the purl's version as semver), and a release candidate's
// "rc1" is the CPE's update field. A devel toolchain gets no CPE.
func stdlibRefs(goVersion string) []*spdx.PackageExternalReference {
	release, _, _ := strings.Cut(strings.TrimPrefix(goVersion, "go"), " ") // "go1.26.8 X:nodwarf5"
	m := goRelease.FindStringSubmatch(release)
	if m == nil {
		return purl("pkg:golang/stdlib@" + purlEscape(goVersion))
	}
	update := "-"
	if m[2] != "" {
		update = m[2]
	}
	return append(purl("pkg:golang/stdlib@"+release), &spdx.PackageExternalReference{
		Category: "SECURITY", RefType: "cpe23Type", Locator: "cpe:2.3:a:golang:go:" + m[1] + ":" + update + ":*:*:*:*:*:*",
	})
}

// goRelease is a Go release's version after "go": 1.26.8, 1.27rc1.
var goRelease = regexp.MustCompile(`^(\d+\.\d+(?:\.\d+)?)((?:rc|beta)\d+)?$`)

// goBinary adds the Go binary, its toolchain, main module and dependency
// modules, and returns the binary's id.
func (d *document) goBinary(in Input, bi *buildinfo.BuildInfo, binSum string) common.ElementID {
	goarch, goos := "", ""
	var settings []string
	for _, s := range bi.Settings {
		switch s.Key {
		case "GOARCH":
			goarch = s.Value
		case "GOOS":
			goos = s.Value
		}
		settings = append(settings, s.Key+"="+s.Value)
	}
	binary := d.pkg(&spdx.Package{
		PackageName: bi.Path, PackageSPDXIdentifier: "Binary-sidecar", PackageVersion: in.Version,
		PackageFileName:           in.BinaryPath,
		PrimaryPackagePurpose:     "APPLICATION",
		PackageChecksums:          []common.Checksum{{Algorithm: common.SHA256, Value: binSum}},
		PackageExternalReferences: purl(fmt.Sprintf("pkg:golang/%s@%s?goarch=%s&goos=%s", purlPath(bi.Main.Path), purlEscape(goModuleVersion(in.Version)), purlEscape(goarch), purlEscape(goos))),
		PackageComment:            "Go build settings: " + strings.Join(settings, " "),
	})
	stdlib := d.pkg(&spdx.Package{
		PackageName: "stdlib", PackageSPDXIdentifier: "Go-stdlib", PackageVersion: bi.GoVersion,
		PackageDownloadLocation:   "https://go.dev/dl/",
		PackageLicenseDeclared:    "BSD-3-Clause",
		PrimaryPackagePurpose:     "LIBRARY",
		PackageExternalReferences: stdlibRefs(bi.GoVersion),
		PackageComment:            "The Go toolchain and standard library the binary was built with.",
	})
	d.rel(binary, "DEPENDS_ON", stdlib)
	if bi.Main.Path != "" && bi.Main.Path != bi.Path {
		main := d.pkg(&spdx.Package{
			PackageName: bi.Main.Path, PackageSPDXIdentifier: elementID("GoModule", bi.Main.Path), PackageVersion: in.Version,
			PrimaryPackagePurpose: "SOURCE", PackageComment: "The main module (build info version " + bi.Main.Version + ").",
		})
		d.rel(binary, "GENERATED_FROM", main)
	}
	for _, m := range modules(bi) {
		p := d.pkg(&spdx.Package{
			PackageName: m.path, PackageSPDXIdentifier: elementID("GoModule", m.path+"-"+m.version), PackageVersion: m.version,
			PrimaryPackagePurpose: "LIBRARY", PackageExternalReferences: purl(m.purl),
			PackageComment: m.comment,
		})
		d.rel(binary, "DEPENDS_ON", p)
	}
	return binary
}

// apks adds the Alpine packages of the installed database as contained in
// the image.
func (d *document) apks(installed []byte, osr OSRelease, image common.ElementID) error {
	apks, err := ParseAPK(installed)
	if err != nil {
		return err
	}
	extracted := map[string]*spdx.OtherLicense{} // by LicenseRef: packages with the same field share one
	for _, a := range apks {
		l := licenseOf(a.License)
		if l.extracted != nil {
			extracted[l.extracted.LicenseIdentifier] = l.extracted
		}
		p := &spdx.Package{
			PackageName: a.Name, PackageSPDXIdentifier: elementID("APK", a.Name+"-"+a.Version), PackageVersion: a.Version,
			PackageHomePage: a.URL, PackageSummary: a.Description,
			PackageLicenseDeclared: l.declared, PackageLicenseComments: l.comment,
			PrimaryPackagePurpose:     "OPERATING_SYSTEM", // the JSON schema's spelling; the spec's text has a hyphen
			PackageExternalReferences: purl(apkPurl(a, osr)),
			PackageSourceInfo:         "origin " + a.Origin + "; from /lib/apk/db/installed",
		}
		if a.Maintainer != "" {
			p.PackageSupplier = &common.Supplier{SupplierType: "Person", Supplier: agent(a.Maintainer)}
		}
		d.rel(image, "CONTAINS", d.pkg(p))
	}
	d.OtherLicenses = extractedLicenses(extracted)
	return nil
}

// agent is apk's "Name <email>" in SPDX's agent syntax, "Name (email)"
// (SPDX 2.3 clause 7.5).
func agent(maintainer string) string {
	name, rest, ok := strings.Cut(maintainer, "<")
	email, _, closed := strings.Cut(rest, ">")
	if !ok || !closed {
		return maintainer
	}
	return strings.TrimSpace(strings.TrimSpace(name) + " (" + strings.TrimSpace(email) + ")")
}

// baseImages adds the Dockerfile's base images: the runtime stage's as
// the image's ancestor, the build stage's as the binary's build tool.
func (d *document) baseImages(bases []BaseImage, image, binary common.ElementID) {
	for _, b := range bases {
		ref, by := b.Ref, "by tag: the digest it named at build time is not recorded"
		if b.Pinned != "" {
			ref, by = b.Pinned, "by the digest the build was pinned to"
		}
		p := d.pkg(&spdx.Package{
			PackageName: b.Ref, PackageSPDXIdentifier: elementID("BaseImage", b.Arg), PrimaryPackagePurpose: "CONTAINER",
			PackageExternalReferences: purl(ociPurl(ref)),
			PackageComment:            fmt.Sprintf("Base image of the %s stage (Dockerfile %s), %s.", b.Stage, b.Arg, by),
		})
		if b.Stage == "runtime" {
			d.rel(image, "DESCENDANT_OF", p)
		} else {
			d.rel(p, "BUILD_TOOL_OF", binary)
		}
	}
}

type debugModule struct{ path, version, purl, comment string }

// modules are the binary's dependency modules, sorted by path: for a
// replaced one, what the binary holds (the replacement), as scanners must
// match; a local directory has no version, and its purl none either.
func modules(bi *buildinfo.BuildInfo) []*debugModule {
	var out []*debugModule
	for _, d := range bi.Deps {
		m := &debugModule{path: d.Path, version: d.Version, comment: "go.sum " + d.Sum}
		switch r := d.Replace; {
		case r != nil && r.Version != "":
			m.path, m.version = r.Path, r.Version
			m.comment = fmt.Sprintf("replaces %s %s (go.sum %s)", d.Path, d.Version, r.Sum)
		case r != nil:
			m.version = "(devel)"
			m.comment = fmt.Sprintf("%s %s replaced by the local directory %s", d.Path, d.Version, r.Path)
		}
		m.purl = "pkg:golang/" + purlPath(m.path)
		if m.version != "(devel)" {
			m.purl += "@" + purlEscape(m.version)
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

// ociPurl is the package URL of an image reference
// (https://github.com/package-url/purl-spec: pkg:oci/name@digest?repository_url=…&tag=…).
func ociPurl(ref string) string {
	repo, digest, _ := strings.Cut(ref, "@")
	tag := ""
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo, tag = repo[:i], repo[i+1:]
	}
	name := repo[strings.LastIndex(repo, "/")+1:]
	p := "pkg:oci/" + name
	if digest != "" {
		p += "@" + strings.ReplaceAll(digest, ":", "%3A")
	}
	q := []string{"repository_url=" + repo}
	if tag != "" {
		q = append(q, "tag="+tag)
	}
	return p + "?" + strings.Join(q, "&")
}

// JSON renders the document as SPDX JSON.
func JSON(doc *spdx.Document) ([]byte, error) {
	var b bytes.Buffer
	if err := spdxjson.Write(doc, &b, spdxjson.Indent("  ")); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Verify parses an SPDX JSON document read back from a registry and
// checks it is one Build made for this image: valid SPDX (its licenses
// too), describing the image manifest with digest (its Image package's
// source), whose sidecar binary is binary (by SHA-256).
func Verify(b []byte, digest string, binary []byte) error {
	doc, err := spdxjson.Read(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not SPDX JSON: %w", err)
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		return fmt.Errorf("not a valid SPDX document: %w", err)
	}
	// An earlier run's SBOM may predate Build's license check: refused,
	// it is made again from the image's files.
	if err := checkLicenses(doc); err != nil {
		return fmt.Errorf("not a valid SPDX document: %w", err)
	}
	var image, bin *spdx.Package
	for _, p := range doc.Packages {
		switch p.PackageSPDXIdentifier {
		case "Image":
			image = p
		case "Binary-sidecar":
			bin = p
		}
	}
	if image == nil || !strings.HasSuffix(image.PackageSourceInfo, "@"+digest) {
		return fmt.Errorf("does not describe the image manifest %s", digest)
	}
	sum := sha256.Sum256(binary)
	if bin == nil || len(bin.PackageChecksums) == 0 || bin.PackageChecksums[0].Value != hex.EncodeToString(sum[:]) {
		return fmt.Errorf("does not list the image's sidecar binary (sha256:%s)", hex.EncodeToString(sum[:]))
	}
	return nil
}

// goModuleVersion is the Go module version of an image version: the image
// drops the git tag's v (1.2.3, see imagetag.VersionOf), Go module
// versions keep it (v1.2.3); "dev" stays.
func goModuleVersion(v string) string {
	if v != "" && v[0] >= '0' && v[0] <= '9' {
		return "v" + v
	}
	return v
}

// apkPurl is an apk package's URL as syft writes it. Scanners read the
// distribution from its distro qualifier (grype picks Alpine's security
// database by it) and match vulnerabilities, which Alpine files by origin
// package, through upstream.
func apkPurl(a APKPackage, osr OSRelease) string {
	ns := "alpine" // apk's own distribution, when the image does not name one
	if osr.ID != "" {
		ns = strings.ToLower(osr.ID)
	}
	q := url.Values{}
	if a.Arch != "" {
		q.Set("arch", a.Arch)
	}
	if osr.ID != "" && osr.VersionID != "" {
		q.Set("distro", osr.ID+"-"+osr.VersionID)
	}
	if a.Origin != "" && a.Origin != a.Name {
		q.Set("upstream", a.Origin)
	}
	u := "pkg:apk/" + purlEscape(ns) + "/" + purlEscape(a.Name) + "@" + purlEscape(a.Version)
	if len(q) > 0 {
		u += "?" + q.Encode() // sorted by key, as purl's canonical form wants
	}
	return u
}

// purlEscape percent-encodes one component of a package URL (a namespace
// segment, the name or the version) as the purl specification's canonical
// form wants: every byte but the alphanumerics, the punctuation ".-_~" and
// the colon is encoded. url.PathEscape leaves "+" alone, so Go's
// "+incompatible" versions and apk's libstdc++ were written unencoded,
// which is not the canonical purl that tools compare as strings
// (packageurl-go, which syft and Trivy use, writes %2B).
func purlEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '-', c == '_', c == '~', c == ':':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// purlPath is a Go module path as a purl's namespace and name: each
// segment encoded, the slashes between them kept.
func purlPath(path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = purlEscape(s)
	}
	return strings.Join(segs, "/")
}
