package ci

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/internal/msgdoc"
)

// Every problem push's AWS preflight can list (an *ecr.PreflightError's
// Problems, exit code 2), and the error's header, has a row of its own in
// docs/troubleshooting.md's pipeline section: a new problem without one
// fails here. The problems are found in the source (msgdoc's Collect sees
// only Errorf and log sites, not a field's values).
func TestTroubleshootingExplainsPreflightProblems(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../docs/troubleshooting.md")
	if err != nil {
		t.Fatal(err)
	}
	_, pipeline, _ := strings.Cut(string(b), "\n## The pipeline")
	problems := preflightProblems(t, ".", "ecr")
	// The header, the AWS configuration, credentials, region unset and
	// malformed, the repository missing, PUSH_LATEST on immutable tags.
	if len(problems) < 6 {
		t.Fatalf("found only %d preflight problems (%q): does the walk still see them?", len(problems), problems)
	}
	for _, p := range problems {
		if !strings.Contains(pipeline, "\n| `"+p) {
			t.Errorf("docs/troubleshooting.md's pipeline section has no row that starts with the preflight problem %q", p)
		}
	}
}

// preflightProblems are the texts (as msgdoc writes them) of the
// PreflightError header and of every problem a PreflightError literal in
// the non-test files of dirs holds: given in the literal, appended to the
// variable it holds, or returned by the function that gives either. One
// the walk cannot read fails t, so none goes unchecked.
func preflightProblems(t *testing.T, dirs ...string) []string {
	t.Helper()
	head, _, _ := strings.Cut((&ecr.PreflightError{}).Error(), ":")
	out := []string{head}
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			w := problemWalk{t: t, file: f, path: path}
			for _, d := range f.Decls {
				if fn, ok := d.(*ast.FuncDecl); ok && fn.Body != nil {
					w.fn = fn
					ast.Inspect(fn.Body, w.literal)
				}
			}
			out = append(out, w.found...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// problemWalk reads the problems of one file's PreflightError literals.
type problemWalk struct {
	t     *testing.T
	file  *ast.File
	path  string
	fn    *ast.FuncDecl // the function being walked
	found []string
}

// literal reads n's Problems when n is a PreflightError literal.
func (w *problemWalk) literal(n ast.Node) bool {
	lit, ok := n.(*ast.CompositeLit)
	if !ok || !isPreflightError(lit.Type) {
		return true
	}
	for _, e := range lit.Elts {
		kv, ok := e.(*ast.KeyValueExpr)
		if !ok || !isIdent(kv.Key, "Problems") {
			w.t.Errorf("%s: %s: a PreflightError literal without Problems: the test cannot read it", w.path, w.fn.Name.Name)
			continue
		}
		switch v := kv.Value.(type) {
		case *ast.CompositeLit:
			for _, p := range v.Elts {
				w.problem(w.fn, p)
			}
		case *ast.Ident:
			w.appended(v.Name)
		default:
			w.t.Errorf("%s: %s: Problems is neither a []string literal nor a variable: the test cannot read it", w.path, w.fn.Name.Name)
		}
	}
	return true
}

// appended reads what w.fn appends to its variable name.
func (w *problemWalk) appended(name string) {
	ast.Inspect(w.fn.Body, func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok && isIdent(call.Fun, "append") && len(call.Args) > 1 && isIdent(call.Args[0], name) {
			for _, p := range call.Args[1:] {
				w.problem(w.fn, p)
			}
		}
		return true
	})
}

// problem reads e, a problem's text in fn: a string literal or built from
// one, a variable assigned one in fn, or a call of a function of the file
// that returns them.
func (w *problemWalk) problem(fn *ast.FuncDecl, e ast.Expr) {
	if text, ok := msgdoc.Text(e); ok {
		if text != "" {
			w.found = append(w.found, text)
		}
		return
	}
	switch e := e.(type) {
	case *ast.Ident:
		if rhs := assigned(fn, e.Name); rhs != nil {
			w.problem(fn, rhs)
			return
		}
	case *ast.CallExpr:
		if id, ok := e.Fun.(*ast.Ident); ok {
			if callee := funcNamed(w.file, id.Name); callee != nil {
				ast.Inspect(callee.Body, func(n ast.Node) bool {
					if r, ok := n.(*ast.ReturnStmt); ok && len(r.Results) == 1 {
						w.problem(callee, r.Results[0])
					}
					return true
				})
				return
			}
		}
	}
	w.t.Errorf("%s: %s: a preflight problem the test cannot read: give it as a string literal, a fmt.Sprintf of one, or a function of this file returning those", w.path, fn.Name.Name)
}

// assigned is the value fn assigns to its variable name, or nil.
func assigned(fn *ast.FuncDecl, name string) ast.Expr {
	var rhs ast.Expr
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		if a, ok := n.(*ast.AssignStmt); ok && len(a.Lhs) == 1 && len(a.Rhs) == 1 && isIdent(a.Lhs[0], name) {
			rhs = a.Rhs[0]
		}
		return rhs == nil
	})
	return rhs
}

// funcNamed is f's function name, or nil.
func funcNamed(f *ast.File, name string) *ast.FuncDecl {
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && fn.Name.Name == name && fn.Body != nil {
			return fn
		}
	}
	return nil
}

// isPreflightError reports whether typ names PreflightError (in ecr or
// as ecr.PreflightError).
func isPreflightError(typ ast.Expr) bool {
	if sel, ok := typ.(*ast.SelectorExpr); ok {
		return isIdent(sel.X, "ecr") && sel.Sel.Name == "PreflightError"
	}
	return isIdent(typ, "PreflightError")
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}
