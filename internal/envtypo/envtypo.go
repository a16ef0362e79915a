// Package envtypo finds environment variables that look like misspellings
// of a program's own, so a mistyped name is warned about instead of being
// silently ignored. The sidecar (sidecar/internal/config) and the pipeline
// (ci) both use it.
package envtypo

import (
	"sort"
	"strings"
)

// Typo is a variable in the environment that is not one of ours but looks
// like a misspelling of one.
type Typo struct {
	Variable string // as found in the environment
	Meant    string // the variable it is closest to
}

// minAbbrev is the shortest name taken for an abbreviation of ours.
const minAbbrev = 6

// Find finds, among environ's names (os.Environ form, NAME=value), the
// ones that are not in names but look like one of them:
//
//   - one or two edits away (insert, delete, replace, swap of neighbours;
//     any case); names shorter than 6 bytes allow one edit only: HOME is
//     two edits from MODE;
//   - or cut short inside a word: ECR_REPO for ECR_REPOSITORY (a prefix of
//     at least 6 bytes that does not end at an underscore of ours, so
//     AWS_ENDPOINT_URL is not taken for AWS_ENDPOINT_URL_ECR).
//
// The values are never looked at, so nothing secret can end up in a
// warning. The result is sorted by Variable.
func Find(environ []string, names []string) []Typo {
	ours := map[string]bool{}
	for _, n := range names {
		ours[n] = true
	}
	var out []Typo
	seen := map[string]bool{}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if ours[name] || seen[name] || name == "" {
			continue
		}
		seen[name] = true
		if meant := closest(strings.ToUpper(name), names); meant != "" {
			out = append(out, Typo{Variable: name, Meant: meant})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Variable < out[j].Variable })
	return out
}

// closest is the name in names that upper looks like, "" for none.
func closest(upper string, names []string) string {
	best, bestDist := "", 3
	for _, n := range names {
		limit := 2
		if len(n) < 6 {
			limit = 1
		}
		if d := Distance(upper, n); d <= limit && d < bestDist {
			best, bestDist = n, d
		}
	}
	if best != "" {
		return best
	}
	for _, n := range names {
		if len(upper) >= minAbbrev && len(upper) < len(n) && strings.HasPrefix(n, upper) &&
			n[len(upper)] != '_' && upper[len(upper)-1] != '_' {
			return n
		}
	}
	return ""
}

// Distance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent bytes.
func Distance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
