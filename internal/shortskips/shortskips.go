// Package shortskips finds the tests that `go test -short` leaves out: every
// function that calls testing.Short(). Its test ties the list in
// CONTRIBUTING.md to them, so the documented quick loop says what it skips.
package shortskips

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
)

// Skip is a function that calls testing.Short().
type Skip struct {
	Dir  string // the package directory, relative to the root, with slashes
	Func string // the function (a test, or a helper the tests call)
}

// Collect walks the Go files under root (skipping testdata, vendor and
// hidden directories) and returns the functions that call testing.Short(),
// sorted by directory and name.
func Collect(root string) ([]Skip, error) {
	var skips []Skip
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (d.Name() == "testdata" || d.Name() == "vendor" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok && fn.Body != nil && callsShort(fn.Body) {
				skips = append(skips, Skip{Dir: filepath.ToSlash(rel), Func: fn.Name.Name})
			}
		}
		return nil
	})
	sort.Slice(skips, func(i, j int) bool {
		if skips[i].Dir != skips[j].Dir {
			return skips[i].Dir < skips[j].Dir
		}
		return skips[i].Func < skips[j].Func
	})
	return skips, err
}

// callsShort reports whether body calls testing.Short().
func callsShort(body *ast.BlockStmt) bool {
	found := false
	ast.Inspect(body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return !found
		}
		if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Short" {
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == "testing" {
				found = true
			}
		}
		return !found
	})
	return found
}
