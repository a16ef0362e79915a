package doclinks

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRepositoryDocs checks the user and contributor docs of this repository.
func TestRepositoryDocs(t *testing.T) {
	root := filepath.Join("..", "..")
	files := []string{"README.md", "CONTRIBUTING.md", "CHANGELOG.md", "SECURITY.md"}
	var present []string
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			present = append(present, f)
		} else {
			t.Errorf("%s is missing", f)
		}
	}
	// Every page of docs/ and every benchmark report: README links to
	// bench/RESULTS-tls.md and the others too, not only to RESULTS.md.
	for _, dir := range []string{"docs", "bench"} {
		pages, err := filepath.Glob(filepath.Join(root, dir, "*.md"))
		if err != nil {
			t.Fatal(err)
		}
		if len(pages) == 0 {
			t.Fatalf("no %s/*.md found: is the test running from internal/doclinks?", dir)
		}
		for _, p := range pages {
			present = append(present, dir+"/"+filepath.Base(p))
		}
	}
	problems, err := Check(root, present)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

func TestSlug(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Quick start", "quick-start"},
		{"Why the health check is `sidecar healthcheck`", "why-the-health-check-is-sidecar-healthcheck"},
		{"Data path: epoll on Linux, io.Copy elsewhere", "data-path-epoll-on-linux-iocopy-elsewhere"},
		{"Sharing one Dagger engine (and its cache) across a team", "sharing-one-dagger-engine-and-its-cache-across-a-team"},
		{"socat's listen backlog", "socats-listen-backlog"},
		{"[Unreleased]", "unreleased"},
		{"In-package benchmarks (`go test -bench`)", "in-package-benchmarks-go-test--bench"},
	} {
		if got := Slug(tc.in); got != tc.want {
			t.Errorf("Slug(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCheckFindsBrokenLinks(t *testing.T) {
	root := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("README.md", strings.Join([]string{
		"# Title",
		"## Repeated",
		"## Repeated",
		"[ok](#title) [ok](#repeated-1) [ok](docs/a.md#section-two) [ok](docs/) [ok](https://example.com/x#y)",
		"[bad anchor](#nowhere)",
		"[bad file](docs/missing.md)",
		"[bad anchor in other file](docs/a.md#section-three)",
		"[outside](../x.md)",
		"`[not a link](#nowhere)` and",
		"```",
		"[not a link either](#nowhere)",
		"# not a heading",
		"```",
		"[heading in a fence is no anchor](#not-a-heading)",
	}, "\n"))
	write("docs/a.md", "# A\n\n## Section two\n\n[up](../README.md#repeated)\n")
	problems, err := Check(root, []string{"README.md", "docs/a.md"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range problems {
		got = append(got, p.Target)
	}
	want := []string{"#nowhere", "docs/missing.md", "docs/a.md#section-three", "../x.md", "#not-a-heading"}
	if !slices.Equal(got, want) {
		t.Errorf("problems = %q, want %q\n%v", got, want, problems)
	}
	if _, err := Check(root, []string{"nope.md"}); err == nil {
		t.Error("Check of a missing file: no error")
	}
}

// Each page's contents list names its sections.
func TestRepositoryContents(t *testing.T) {
	docs, err := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs/*.md found (%v): is the test running from internal/doclinks?", err)
	}
	for _, d := range docs {
		b, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range Contents(string(b)) {
			t.Errorf("docs/%s: %s", filepath.Base(d), p)
		}
	}
}

func TestContents(t *testing.T) {
	t.Parallel()
	const body = "\n## A\n\n### A one\n\n### A two\n\n## B\n\n```\n## not a heading\n```\n"
	for _, tc := range []struct {
		name, md string
		want     []string
	}{
		{"every ##", "# T\n\n- [A](#a)\n- [B](#b)\n" + body, nil},
		{"every ## and ###", "# T\n\n- [A](#a)\n  - [A one](#a-one)\n  - [A two](#a-two)\n- [B](#b)\n" + body, nil},
		{"a ## left out", "# T\n\n- [A](#a)\n" + body, []string{"section #b is missing from the contents"}},
		{"one ### of two", "# T\n\n- [A](#a)\n  - [A one](#a-one)\n- [B](#b)\n" + body, []string{"section #a-two is missing from the contents"}},
		{"out of order", "# T\n\n- [B](#b)\n- [A](#a)\n" + body, []string{"contents entry #a is out of the page's order"}},
		{"no such heading", "# T\n\n- [A](#a)\n- [B](#b)\n- [C](#c)\n" + body, []string{"contents entry #c names no ## or ### heading"}},
		{"a short page needs none", "# T\n" + body, nil},
		{"a long page needs one", "# T\n" + body + "\n## C\n\n## D\n", []string{"no contents list for its 4 sections"}},
		{"a list after the first ## is not the contents", "# T\n\n- [A](#a)\n- [B](#b)\n" + body + "\n- [X](#x)\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Contents(tc.md); !slices.Equal(got, tc.want) {
				t.Errorf("Contents = %q, want %q", got, tc.want)
			}
		})
	}
}
