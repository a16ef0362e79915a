package ci

import (
	"slices"
	"strings"
)

// MageTargets are the targets of magefiles/magefile.go, as mage's
// arguments name them (any case); a test ties them to its functions.
func MageTargets() []string { return []string{"build", "test", "push", "config", "lint", "bench"} }

// UnknownTargets is what in args, a compiled magefile's arguments, names
// none of targets, after the first that does. Mage runs the targets in
// order and refuses an unknown one only when it gets to it: go tool mage
// push -v would push, then exit 2 on "-v". Before the first target come
// mage's own flags (-v, -t 10m); an unknown first one mage refuses itself
// before running anything.
func UnknownTargets(args, targets []string) []string {
	known := func(a string) bool {
		return slices.ContainsFunc(targets, func(t string) bool { return strings.EqualFold(t, a) })
	}
	first := slices.IndexFunc(args, known)
	if first < 0 {
		return nil
	}
	var unknown []string
	for _, a := range args[first+1:] {
		if !known(a) {
			unknown = append(unknown, a)
		}
	}
	return unknown
}
