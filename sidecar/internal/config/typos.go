package config

import "github.com/example/sidecar/internal/envtypo"

// Typo is a variable in the environment that is not one of ours but looks
// like a misspelling of one.
type Typo struct {
	Variable string // as found in the environment
	Meant    string // the variable it is closest to
}

// Typos finds, among environ's names (os.Environ form, NAME=value), the
// ones that are not ours but look like one of ours (envtypo.Find: one or
// two edits, or a name cut short inside a word). The values are never
// looked at, so nothing secret can end up in a warning.
func Typos(environ []string) []Typo {
	var out []Typo
	for _, t := range envtypo.Find(environ, Names) {
		out = append(out, Typo(t))
	}
	return out
}
