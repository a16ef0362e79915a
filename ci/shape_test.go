package ci

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// Limits on the shape of the pipeline's code (issue 17): a function a
// reader takes in at once, and a signature a caller can fill in without
// mixing up its arguments. Tests are exempt: table-driven tests are long
// by nature, and no one calls them.
const (
	maxFuncLines  = 60 // body lines, braces included
	maxFuncParams = 5  // a variadic parameter counts as one
)

// TestFunctionShape holds every function and function literal in ci/
// (all its packages, test helpers such as ecrtest included) to
// maxFuncLines and maxFuncParams.
func TestFunctionShape(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			name, typ, body := funcParts(n)
			if typ == nil {
				return true
			}
			checked++
			pos := fset.Position(n.Pos())
			if body != nil {
				if lines := fset.Position(body.Rbrace).Line - fset.Position(body.Lbrace).Line + 1; lines > maxFuncLines {
					t.Errorf("%s:%d: %s is %d lines, over %d: split it into steps a reader can name", pos.Filename, pos.Line, name, lines, maxFuncLines)
				}
			}
			if params := typ.Params.NumFields(); params > maxFuncParams {
				t.Errorf("%s:%d: %s takes %d parameters, over %d: group them in a struct", pos.Filename, pos.Line, name, params, maxFuncParams)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("checked only %d functions: is the walk looking at ci/?", checked)
	}
}

// funcParts is a function declaration's or literal's name (for the
// message), signature and body; typ is nil for any other node.
func funcParts(n ast.Node) (name string, typ *ast.FuncType, body *ast.BlockStmt) {
	switch fn := n.(type) {
	case *ast.FuncDecl:
		name = fn.Name.Name
		if fn.Recv != nil && len(fn.Recv.List) == 1 {
			name = recvName(fn.Recv.List[0].Type) + "." + name
		}
		return name, fn.Type, fn.Body
	case *ast.FuncLit:
		return "a function literal", fn.Type, fn.Body
	}
	return "", nil, nil
}

// recvName names a receiver type: T or *T.
func recvName(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.StarExpr:
		return "*" + recvName(x.X)
	case *ast.Ident:
		return x.Name
	case *ast.IndexExpr:
		return recvName(x.X)
	}
	return "?"
}
