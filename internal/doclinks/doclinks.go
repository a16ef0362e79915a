// Package doclinks checks that the relative links in this repository's
// Markdown files resolve: the file exists and, for a #fragment, the target
// file has a heading with that GitHub anchor; and that a page's contents
// list names its sections (Contents).
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
	"iter"
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
	for n, line := range prose(md) {
		for _, m := range linkRE.FindAllStringSubmatch(stripCodeSpans(line), -1) {
			out = append(out, link{n, m[1]})
		}
	}
	return out
}

// prose yields md's lines outside fenced code blocks, with their 1-based
// numbers.
func prose(md string) iter.Seq2[int, string] {
	return func(yield func(int, string) bool) {
		fence := false
		for i, line := range strings.Split(md, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				fence = !fence
				continue
			}
			if !fence && !yield(i+1, line) {
				return
			}
		}
	}
}

type heading struct {
	line, level int
	anchor      string
}

// headings returns md's ATX headings outside fenced code blocks, each
// with its GitHub anchor: repeated headings get -1, -2, ….
func headings(md string) []heading {
	seen := map[string]int{}
	var out []heading
	for n, line := range prose(md) {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.TrimLeft(line, "#")
		level := len(line) - len(text)
		if level > 6 || (text != "" && text[0] != ' ') {
			continue
		}
		s := Slug(strings.TrimSpace(text))
		k := seen[s]
		seen[s] = k + 1
		if k > 0 {
			s = fmt.Sprintf("%s-%d", s, k)
		}
		out = append(out, heading{n, level, s})
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
	out := map[string]bool{}
	for _, h := range headings(md) {
		out[h.anchor] = true
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

// contentsRE matches a contents entry: a list item that is only a link to
// a heading of the page, indented two spaces per level.
var contentsRE = regexp.MustCompile(`^((?:  )*)- \[[^\]]*\]\(#([^)\s]+)\)$`)

// Contents checks a page's contents list (the list of links to its own
// headings before its first ## heading) against its ## and ### headings:
// every ## is listed, a ## whose ### are listed at all has each of them
// listed, entries keep the page's order, and a page of four or more ##
// has a list. It returns what is wrong, one line each.
func Contents(md string) []string {
	var heads []heading           // the ## and ###
	parent := map[string]string{} // each ###'s ##
	h2, count := "", 0            // the ## above, and how many
	for _, h := range headings(md) {
		switch {
		case h.level == 2:
			heads, h2 = append(heads, h), h.anchor
			count++
		case h.level == 3 && h2 != "":
			heads, parent[h.anchor] = append(heads, h), h2
		}
	}
	listed := contentsEntries(md, heads)
	if len(listed) == 0 {
		if count >= 4 {
			return []string{fmt.Sprintf("no contents list for its %d sections", count)}
		}
		return nil
	}
	pos := map[string]int{}
	for i, h := range heads {
		pos[h.anchor] = i
	}
	isListed := map[string]bool{}
	subListed := map[string]bool{} // a ## with any of its ### listed
	var problems []string
	last := -1
	for _, a := range listed {
		isListed[a] = true
		subListed[parent[a]] = true
		switch i, ok := pos[a]; {
		case !ok:
			problems = append(problems, fmt.Sprintf("contents entry #%s names no ## or ### heading", a))
		case i < last:
			problems = append(problems, fmt.Sprintf("contents entry #%s is out of the page's order", a))
		default:
			last = i
		}
	}
	for _, h := range heads {
		if !isListed[h.anchor] && (h.level == 2 || subListed[parent[h.anchor]]) {
			problems = append(problems, fmt.Sprintf("section #%s is missing from the contents", h.anchor))
		}
	}
	return problems
}

// contentsEntries returns the anchors a page's contents list links to: the
// entries before its first ## or ###.
func contentsEntries(md string, heads []heading) []string {
	var listed []string
	for n, line := range prose(md) {
		if len(heads) > 0 && n >= heads[0].line {
			break
		}
		if m := contentsRE.FindStringSubmatch(line); m != nil {
			listed = append(listed, m[2])
		}
	}
	return listed
}
