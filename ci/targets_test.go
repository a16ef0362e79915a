package ci

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strings"
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

// MageTargets is the magefile's exported functions, each a target.
func TestMageTargetsAreTheMagefiles(t *testing.T) {
	t.Parallel()
	f, err := parser.ParseFile(token.NewFileSet(), "../magefiles/magefile.go", nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var funcs []string
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Name.IsExported() {
			funcs = append(funcs, strings.ToLower(fd.Name.Name))
		}
	}
	want := slices.Sorted(slices.Values(MageTargets()))
	if slices.Sort(funcs); !slices.Equal(funcs, want) {
		t.Errorf("magefile.go's targets are %q; MageTargets says %q", funcs, want)
	}
}
