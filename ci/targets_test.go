package ci

import (
	"maps"
	"slices"
	"testing"
)

func TestUnknownTargets(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args, want []string
	}{
		{nil, nil},
		{[]string{"push"}, nil},
		{[]string{"Build", "TEST"}, nil},
		{[]string{"-t", "10m", "build"}, nil},
		{[]string{"nosuch", "build"}, nil}, // mage refuses a first unknown before running anything
		{[]string{"push", "-v"}, []string{"-v"}},
		{[]string{"build", "tset", "push", "-t", "5m"}, []string{"tset", "-t", "5m"}},
	} {
		if got := UnknownTargets(tc.args, MageTargets()); !slices.Equal(got, tc.want) {
			t.Errorf("UnknownTargets(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

// MageTargets is the magefiles' exported functions, each a target.
func TestMageTargetsAreTheMagefiles(t *testing.T) {
	t.Parallel()
	got := slices.Sorted(maps.Keys(mageTargets(t, "../magefiles")))
	if want := slices.Sorted(slices.Values(MageTargets())); !slices.Equal(got, want) {
		t.Errorf("magefiles/ has the targets %q; MageTargets says %q", got, want)
	}
}
