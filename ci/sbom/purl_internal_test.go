package sbom

import (
	"debug/buildinfo"
	"runtime/debug"
	"testing"

	"github.com/spdx/tools-golang/spdx"
)

// Package URLs are in the purl specification's canonical form, which
// scanners and vulnerability databases compare as strings: "+" (Go's
// +incompatible versions, a version's build metadata) percent-encoded as
// %2B, as syft and Trivy write it, and qualifiers sorted by key.
func TestGoPurlsAreCanonical(t *testing.T) {
	bi := &buildinfo.BuildInfo{
		GoVersion: "go1.26.8",
		Path:      "github.com/example/sidecar/sidecar",
		Main:      debug.Module{Path: "github.com/example/sidecar", Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: "github.com/docker/cli", Version: "v29.7.2+incompatible", Sum: "h1:x="},
			{Path: "github.com/old/lib", Version: "v2.0.0+incompatible",
				Replace: &debug.Module{Path: "github.com/fork/lib", Version: "v2.1.0+incompatible", Sum: "h1:y="}},
		},
		Settings: []debug.BuildSetting{{Key: "GOARCH", Value: "arm64"}, {Key: "GOOS", Value: "linux"}},
	}
	d := &document{&spdx.Document{}}
	d.goBinary(Input{Version: "1.2.3+build.7", BinaryPath: "/usr/local/bin/sidecar"}, bi, "00")
	want := map[string]string{
		"github.com/example/sidecar/sidecar": "pkg:golang/github.com/example/sidecar@v1.2.3%2Bbuild.7?goarch=arm64&goos=linux",
		"github.com/docker/cli":              "pkg:golang/github.com/docker/cli@v29.7.2%2Bincompatible",
		"github.com/fork/lib":                "pkg:golang/github.com/fork/lib@v2.1.0%2Bincompatible",
	}
	for _, p := range d.Packages {
		w, ok := want[p.PackageName]
		if !ok {
			continue
		}
		delete(want, p.PackageName)
		if got := p.PackageExternalReferences[0].Locator; got != w {
			t.Errorf("%s: purl %s, want %s", p.PackageName, got, w)
		}
	}
	if len(want) > 0 {
		t.Errorf("not listed: %v", want)
	}
}

func TestPurlEscape(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":              "v1.2.3",
		"v0.0.0-20260101-abc": "v0.0.0-20260101-abc",
		"v2.0.0+incompatible": "v2.0.0%2Bincompatible",
		"libstdc++":           "libstdc%2B%2B",
		"a b/c@d?e#f%g":       "a%20b%2Fc%40d%3Fe%23f%25g",
		"1:2.3~rc1_x":         "1:2.3~rc1_x",
		"gr\u00fcn":           "gr%C3%BCn",
	} {
		if got := purlEscape(in); got != want {
			t.Errorf("purlEscape(%q) = %q, want %q", in, got, want)
		}
	}
}
