// Package doclinks checks that the relative links in this repository's
// Markdown files resolve: the file exists and, for a #fragment, the target
// file has a heading with that GitHub anchor.
//
// Typical use, from a test:
//
//	problems, err := doclinks.Check(root, []string{"README.md", "docs/ecs.md"})
//	for _, p := range problems {
//		t.Error(p)
//	}
//
// Links with a scheme (https:, mailto:) are not followed: they are outside
// the repository.
package doclinks

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
)

// Problem is one link that does not resolve.
type Problem struct {
	File   string // Markdown file holding the link, relative to the root
	Line   int    // 1-based line of the link
	Target string // the link as written
	Reason string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s:%d: link %q: %s", p.File, p.Line, p.Target, p.Reason)
}

// linkRE matches inline links and images: [text](target) or [text](target "title").
var linkRE = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)

var schemeRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)

// Check reads each file (paths relative to root, slash-separated) and
// returns every relative link in it that does not resolve. An error means a
// listed file could not be read.
func Check(root string, files []string) ([]Problem, error) {
	anchors := map[string]map[string]bool{} // by cleaned path relative to root
	anchorsOf := func(rel string) (map[string]bool, error) {
		if a, ok := anchors[rel]; ok {
			return a, nil
		}
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			return nil, err
		}
		a := Anchors(string(b))
		anchors[rel] = a
		return a, nil
	}
	var problems []Problem
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			return nil, fmt.Errorf("doclinks: %w", err)
		}
		for _, l := range links(string(b)) {
			if schemeRE.MatchString(l.target) {
				continue
			}
			pathPart, frag, _ := strings.Cut(l.target, "#")
			rel := f
			if pathPart != "" {
				rel = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(f), pathPart)))
				if strings.HasPrefix(rel, "../") {
					problems = append(problems, Problem{f, l.line, l.target, "points outside the repository"})
					continue
				}
				fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel)))
				if err != nil {
					problems = append(problems, Problem{f, l.line, l.target, "no such file " + rel})
					continue
				}
				if fi.IsDir() {
					if frag != "" {
						problems = append(problems, Problem{f, l.line, l.target, "anchor on a directory"})
					}
					continue
				}
			}
			if frag == "" {
				continue
			}
			if !strings.HasSuffix(rel, ".md") {
				problems = append(problems, Problem{f, l.line, l.target, "anchor into a non-Markdown file"})
				continue
			}
			a, err := anchorsOf(rel)
			if err != nil {
				return nil, fmt.Errorf("doclinks: %w", err)
			}
			if !a[frag] {
				problems = append(problems, Problem{f, l.line, l.target, "no heading with anchor #" + frag + " in " + rel})
			}
		}
	}
	return problems, nil
}

type link struct {
	line   int
	target string
}

// links returns the inline links outside fenced code blocks and code spans.
func links(md string) []link {
	var out []link
	fence := false
	for i, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fence = !fence
			continue
		}
		if fence {
			continue
		}
		for _, m := range linkRE.FindAllStringSubmatch(stripCodeSpans(line), -1) {
			out = append(out, link{i + 1, m[1]})
		}
	}
	return out
}

// stripCodeSpans blanks `code` spans, where brackets are not links.
func stripCodeSpans(line string) string {
	parts := strings.Split(line, "`")
	for i := 1; i < len(parts); i += 2 {
		if i == len(parts)-1 { // unmatched backtick: literal
			break
		}
		parts[i] = ""
	}
	return strings.Join(parts, "`")
}

// Anchors returns the GitHub anchors of the ATX headings in md, outside
// fenced code blocks. Repeated headings get -1, -2, … as on GitHub.
func Anchors(md string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	fence := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fence = !fence
			continue
		}
		if fence || !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.TrimLeft(line, "#")
		if len(line)-len(text) > 6 || (text != "" && text[0] != ' ') {
			continue
		}
		s := Slug(strings.TrimSpace(text))
		n := seen[s]
		seen[s] = n + 1
		if n > 0 {
			s = fmt.Sprintf("%s-%d", s, n)
		}
		out[s] = true
	}
	return out
}

// Slug is GitHub's anchor for a heading: lower case, markup and
// punctuation other than '-' and '_' removed, spaces turned into '-'.
func Slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
