package sbom

import (
	"debug/buildinfo"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/spdx/tools-golang/spdx"
)

// A replaced module is listed as what the binary holds, the replacement,
// so that scanners reading the SBOM match its vulnerabilities.
func TestReplacedModulesAreListedAsBuilt(t *testing.T) {
	bi := &buildinfo.BuildInfo{
		GoVersion: "go1.26.8",
		Path:      "github.com/example/sidecar/sidecar",
		Main:      debug.Module{Path: "github.com/example/sidecar", Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: "golang.org/x/net", Version: "v0.40.0", Sum: "h1:new=",
				Replace: &debug.Module{Path: "golang.org/x/net", Version: "v0.20.0", Sum: "h1:old="}},
			{Path: "golang.org/x/text", Version: "v0.30.0", Replace: &debug.Module{Path: "../text"}},
		},
	}
	d := &document{&spdx.Document{}}
	d.goBinary(Input{Version: "dev", BinaryPath: "/usr/local/bin/sidecar"}, bi, "00")
	want := map[string][2]string{
		"golang.org/x/net":  {"v0.20.0", "pkg:golang/golang.org/x/net@v0.20.0"},
		"golang.org/x/text": {"(devel)", "pkg:golang/golang.org/x/text"},
	}
	for _, p := range d.Packages {
		w, ok := want[p.PackageName]
		if !ok {
			continue
		}
		delete(want, p.PackageName)
		if p.PackageVersion != w[0] || p.PackageExternalReferences[0].Locator != w[1] {
			t.Errorf("%s listed as %q, %q; want %q, %q (comment: %s)", p.PackageName, p.PackageVersion, p.PackageExternalReferences[0].Locator, w[0], w[1], p.PackageComment)
		}
	}
	if len(want) > 0 {
		t.Errorf("not listed: %v", want)
	}
}

// Module paths that elementID maps to one id still get an id each, and
// the binary's DEPENDS_ON names each of them.
func TestModuleIDsAreUnique(t *testing.T) {
	bi := &buildinfo.BuildInfo{
		GoVersion: "go1.26.8", Path: "github.com/example/sidecar/sidecar",
		Main: debug.Module{Path: "github.com/example/sidecar", Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: "github.com/foo/bar-baz", Version: "v1.0.0"},
			{Path: "github.com/foo-bar/baz", Version: "v1.0.0"},
		},
	}
	d := &document{&spdx.Document{}}
	d.goBinary(Input{Version: "dev"}, bi, "00")
	ids := map[string]string{}
	for _, p := range d.Packages {
		if other, dup := ids[string(p.PackageSPDXIdentifier)]; dup {
			t.Errorf("%s and %s share the SPDX id %s", other, p.PackageName, p.PackageSPDXIdentifier)
		}
		ids[string(p.PackageSPDXIdentifier)] = p.PackageName
	}
	depends := 0
	for _, r := range d.Relationships {
		if r.Relationship == "DEPENDS_ON" && ids[string(r.RefB.ElementRefID)] != "" && strings.HasPrefix(ids[string(r.RefB.ElementRefID)], "github.com/foo") {
			depends++
		}
	}
	if depends != 2 {
		t.Errorf("%d DEPENDS_ON relationships name the two modules, want 2", depends)
	}
}
