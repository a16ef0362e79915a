package shortskips

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func TestCollect(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"a/a_test.go": `package a
import "testing"
func TestSlow(t *testing.T) { if testing.Short() { t.Skip("slow") } }
func TestFast(t *testing.T) {}
func helper(t *testing.T) { if !testing.Short() { return } }
`,
		"b/b.go":             "package b\nfunc Short() bool { return false }\nfunc f() bool { return Short() }\n",
		"a/testdata/x.go":    "package x\nimport \"testing\"\nfunc g() bool { return testing.Short() }\n",
		".hidden/h_test.go":  "package h\nimport \"testing\"\nfunc TestH(t *testing.T) { _ = testing.Short() }\n",
		"c/nested/c_test.go": "package c\nimport \"testing\"\nfunc TestC(t *testing.T) { t.Run(\"x\", func(t *testing.T) { _ = testing.Short() }) }\n",
	}
	for name, src := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Collect(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []Skip{{"a", "TestSlow"}, {"a", "helper"}, {"c/nested", "TestC"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Collect = %v, want %v", got, want)
	}
}

// contributingSection is the heading of CONTRIBUTING.md's section on -short.
const contributingSection = "## A quick loop: `-short`"

// CONTRIBUTING.md's -short section names every function that calls
// testing.Short() (in backquotes, in the list item of its package, which
// is named as `dir/`), and names no test that does not.
func TestContributingListsEveryShortSkip(t *testing.T) {
	root := filepath.Join("..", "..")
	skips, err := Collect(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(skips) == 0 {
		t.Fatal("no testing.Short() calls found: the walk is broken")
	}
	raw, err := os.ReadFile(filepath.Join(root, "CONTRIBUTING.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	start := strings.Index(doc, "\n"+contributingSection+"\n")
	if start < 0 {
		t.Fatalf("CONTRIBUTING.md has no %q section", contributingSection)
	}
	section := doc[start+1:]
	if end := strings.Index(section[len(contributingSection):], "\n## "); end >= 0 {
		section = section[:len(contributingSection)+end]
	}
	items := strings.Split(section, "\n- ")
	known := map[string]bool{}
	for _, s := range skips {
		known[s.Func] = true
		found := false
		for _, item := range items {
			if strings.HasPrefix(item, "`"+s.Dir+"/`") && strings.Contains(item, "`"+s.Func+"`") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s/%s calls testing.Short(): name `%s` in the list item for `%s/` in CONTRIBUTING.md's %q section, with what -short leaves out",
				s.Dir, s.Func, s.Func, s.Dir, contributingSection)
		}
	}
	for _, m := range regexp.MustCompile("`(Test\\w+)`").FindAllStringSubmatch(section, -1) {
		if !known[m[1]] {
			t.Errorf("CONTRIBUTING.md's %q section names %s, which does not call testing.Short()", contributingSection, m[1])
		}
	}
}
