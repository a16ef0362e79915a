// Package msgdoc finds, in Go source, the messages a program prints when
// something goes wrong, so a test can require a troubleshooting page to
// explain every one: a new message cannot go undocumented.
//
// Variable parts (format verbs, values joined in) become "…", and a message
// ends at its first newline; the page must contain each message so written.
package msgdoc

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Kinds of message sites.
const (
	// Logs: slog calls at Warn or Error (Logger.Warn/Error, Log/LogAttrs
	// with slog.LevelWarn/LevelError or a level chosen at run time, and
	// any call passing those levels before its messages).
	Logs = 1 << iota
	// Stderr: fmt.Fprint* to a writer named stderr or os.Stderr.
	Stderr
	// Errors: fmt.Errorf, errors.New and mage's mg.Fatal(f).
	Errors
	// Notes: slog calls at Info or Debug, the lines an operator reads
	// when nothing is wrong.
	Notes
)

// Message is one message and where it is written.
type Message struct {
	Text string // normalized: verbs and values as "…"
	Pos  string // file:line
}

// Collect returns the messages of the given kinds in the non-test .go
// files of dirs (each walked recursively when recursive), sorted by text.
func Collect(dirs []string, recursive bool, kinds int) ([]Message, error) {
	fset := token.NewFileSet()
	var out []Message
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != dir && !recursive {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				for _, e := range messages(call, kinds) {
					if text := normalize(render(e)); text != "" {
						p := fset.Position(e.Pos())
						out = append(out, Message{Text: text, Pos: fmt.Sprintf("%s:%d", p.Filename, p.Line)})
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Text < out[j].Text })
	return out, nil
}

// Missing returns the messages page does not contain.
func Missing(page string, msgs []Message) []Message {
	var out []Message
	for _, m := range msgs {
		if !strings.Contains(page, m.Text) {
			out = append(out, m)
		}
	}
	return out
}

// messages returns the message expressions of call, if it is a site of
// one of kinds.
func messages(call *ast.CallExpr, kinds int) []ast.Expr {
	pkg, name := callee(call)
	args := call.Args
	switch {
	case kinds&Errors != 0 && (pkg == "fmt" && name == "Errorf" || pkg == "errors" && name == "New") && len(args) > 0:
		return args[:1]
	case kinds&Errors != 0 && pkg == "mg" && (name == "Fatalf" || name == "Fatal") && len(args) > 1:
		return args[1:2]
	case kinds&Stderr != 0 && pkg == "fmt" && strings.HasPrefix(name, "Fprint") && len(args) > 1 && isStderr(args[0]):
		return args[1:2]
	case kinds&Notes != 0 && (name == "Info" || name == "Debug") && len(args) > 0 && isText(args[0]):
		return args[:1]
	case kinds&Notes != 0 && (name == "InfoContext" || name == "DebugContext") && len(args) > 1 && isText(args[1]):
		return args[1:2]
	case kinds&(Logs|Notes) == 0:
		return nil
	case kinds&Logs != 0 && (name == "Error" || name == "Warn") && len(args) > 0 && isText(args[0]):
		return args[:1]
	case kinds&Logs != 0 && (name == "ErrorContext" || name == "WarnContext") && len(args) > 1 && isText(args[1]):
		return args[1:2]
	}
	for i, a := range args {
		lvl := levelOf(a)
		if kinds&Logs != 0 && (lvl == "LevelError" || lvl == "LevelWarn" || (lvl == "" && (name == "Log" || name == "LogAttrs") && i == 1)) ||
			kinds&Notes != 0 && (lvl == "LevelInfo" || lvl == "LevelDebug") {
			var out []ast.Expr
			for _, m := range args[i+1:] {
				if isText(m) {
					out = append(out, m)
				}
			}
			if name == "Log" || name == "LogAttrs" {
				out = out[:min(len(out), 1)]
			}
			return out
		}
	}
	return nil
}

func callee(call *ast.CallExpr) (pkg, name string) {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		if id, ok := call.Fun.(*ast.Ident); ok {
			return "", id.Name
		}
		return "", ""
	}
	if id, ok := sel.X.(*ast.Ident); ok {
		pkg = id.Name
	}
	return pkg, sel.Sel.Name
}

func isStderr(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name == "stderr"
	case *ast.SelectorExpr:
		id, ok := e.X.(*ast.Ident)
		return ok && id.Name == "os" && e.Sel.Name == "Stderr"
	}
	return false
}

// levelOf names a slog level argument: "LevelError" for slog.LevelError,
// "" for an expression chosen at run time, "-" for anything else.
func levelOf(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.SelectorExpr:
		if id, ok := e.X.(*ast.Ident); ok && id.Name == "slog" && strings.HasPrefix(e.Sel.Name, "Level") {
			return e.Sel.Name
		}
	case *ast.Ident:
		if strings.Contains(strings.ToLower(e.Name), "level") {
			return ""
		}
	}
	return "-"
}

// isText reports whether e is a string literal or built from one.
func isText(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.BasicLit:
		return e.Kind == token.STRING
	case *ast.BinaryExpr:
		return e.Op == token.ADD && (isText(e.X) || isText(e.Y))
	case *ast.CallExpr:
		pkg, name := callee(e)
		return pkg == "fmt" && name == "Sprintf" && len(e.Args) > 0 && isText(e.Args[0])
	}
	return false
}

var verb = regexp.MustCompile(`%[-+# 0-9.*]*[a-zA-Z%]`)

// render writes e with its variable parts as "…".
func render(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.BasicLit:
		if s, err := strconv.Unquote(e.Value); err == nil && e.Kind == token.STRING {
			return s
		}
	case *ast.BinaryExpr:
		if e.Op == token.ADD {
			return render(e.X) + render(e.Y)
		}
	case *ast.CallExpr:
		if pkg, name := callee(e); pkg == "fmt" && name == "Sprintf" && len(e.Args) > 0 {
			return verb.ReplaceAllString(render(e.Args[0]), "…")
		}
	case *ast.ParenExpr:
		return render(e.X)
	}
	return "…"
}

func normalize(s string) string {
	s = verb.ReplaceAllString(s, "…")
	s, _, _ = strings.Cut(s, "\n")
	for strings.Contains(s, "……") {
		s = strings.ReplaceAll(s, "……", "…")
	}
	return strings.TrimRight(s, " …:;,")
}

// ExitCodes returns the integer constants named exit… declared in file,
// by name: a program's exit codes, as a page must list them.
func ExitCodes(file string) (map[string]int, error) {
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(strings.ToLower(n.Name), "exit") || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.INT {
					v, err := strconv.Atoi(lit.Value)
					if err != nil {
						return nil, err
					}
					out[n.Name] = v
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s declares no exit… constants", file)
	}
	return out, nil
}

// Text is e as a page must contain it (verbs and values as "…", cut at
// the first newline), for a test that finds messages Collect does not
// (a problem listed in an error's field); ok is false when e is not
// built from a string literal.
func Text(e ast.Expr) (text string, ok bool) {
	if !isText(e) {
		return "", false
	}
	return normalize(render(e)), true
}
