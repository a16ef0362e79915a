package doclinks

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

var (
	goModDaggerRE = regexp.MustCompile(`(?m)^\s*dagger\.io/dagger (v\S+)`)
	// docsDaggerRE is a Dagger version the docs name: "Dagger v0.21.8",
	// "`dagger` v0.21.8", "downloads its CLI (v0.21.8)", the engine image
	// registry.dagger.io/engine:v0.21.8.
	docsDaggerRE = regexp.MustCompile("(?i)(?:dagger[^.\n]{0,30}?\\b|registry\\.dagger\\.io/engine:)(v\\d+\\.\\d+\\.\\d+)")
)

// The Dagger version the docs name (the CLI to install offline, the
// engine a shared one must run) is the SDK's in go.mod, which decides the
// CLI it downloads and the engine it talks to.
func TestDocsDaggerVersionIsTheSDKs(t *testing.T) {
	root := filepath.Join("..", "..")
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := goModDaggerRE.FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod requires no dagger.io/dagger")
	}
	want := string(m[1])
	seen := 0
	for _, d := range userDocs(t) {
		for _, sm := range docsDaggerRE.FindAllStringSubmatch(d.text, -1) {
			seen++
			if sm[1] != want {
				t.Errorf("%s: %q names Dagger %s; go.mod's SDK is %s", d.path, sm[0], sm[1], want)
			}
		}
	}
	if seen == 0 {
		t.Error("no Dagger version found in the docs: the pattern is stale")
	}
}
