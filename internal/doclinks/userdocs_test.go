package doclinks

import (
	"os"
	"path/filepath"
	"testing"
)

// userDoc is a page users copy commands from, and its text.
type userDoc struct{ path, text string }

// userDocs reads docs/*.md, README.md and CONTRIBUTING.md, then the
// repository's files named in extra (bench/*.md are reports of past
// runs, left as written): one list for every test of the docs' commands.
func userDocs(t *testing.T, extra ...string) []userDoc {
	t.Helper()
	root := filepath.Join("..", "..")
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs/*.md found (%v): is the test running from internal/doclinks?", err)
	}
	for _, f := range append([]string{"README.md", "CONTRIBUTING.md"}, extra...) {
		files = append(files, filepath.Join(root, f))
	}
	docs := make([]userDoc, 0, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, userDoc{f, string(b)})
	}
	return docs
}
