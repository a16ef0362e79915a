package config

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

// Typos finds, among environ's names (os.Environ form, NAME=value), the
// ones that are not ours but are one or two edits (insert, delete, replace,
// swap of neighbours; any case) from one of ours. Names shorter than 6
// bytes allow one edit only: HOME is two edits from MODE. The values are
// never looked at, so nothing secret can end up in a warning.
func Typos(environ []string) []Typo {
	ours := map[string]bool{}
	for _, n := range Names {
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
		best, bestDist := "", 3
		for _, n := range Names {
			limit := 2
			if len(n) < 6 {
				limit = 1
			}
			if d := editDistance(strings.ToUpper(name), n); d <= limit && d < bestDist {
				best, bestDist = n, d
			}
		}
		if best != "" {
			out = append(out, Typo{Variable: name, Meant: best})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Variable < out[j].Variable })
	return out
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent bytes.
func editDistance(a, b string) int {
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
