package ci

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/example/sidecar/ci/config"
)

// docsRow is how docs/pipeline.md's variables table shows a row of Vars.
func docsRow(v config.Var) string {
	name := "`" + v.Name + "`"
	if v.Label != "" {
		name = v.Label
	}
	def := "`" + v.Default + "`"
	if v.NoValue {
		def = "*(" + v.Default + ")*"
	}
	return "| " + name + " | " + def + " | " + v.Help + " |"
}

// TestVarsDocsTable ties docs/pipeline.md's variables table to Vars: the
// same rows, in the same order, with the same default and meaning.
func TestVarsDocsTable(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../docs/pipeline.md")
	if err != nil {
		t.Fatal(err)
	}
	got, err := docsVarsTable(string(data))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, v := range config.Vars() {
		want = append(want, docsRow(v))
	}
	if !slices.Equal(got, want) {
		for _, g := range got {
			if !slices.Contains(want, g) {
				t.Errorf("docs row not in Vars (or differs from it):\n%s", g)
			}
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("Vars row missing from the docs (or differs there):\n%s", w)
			}
		}
		t.Errorf("docs/pipeline.md's variables table should read:\n%s", strings.Join(want, "\n"))
	}
}

// docsVarsTable returns the body rows of the table under "## Pipeline
// configuration" whose header is | Variable | Default | Meaning |.
func docsVarsTable(md string) ([]string, error) {
	_, section, ok := strings.Cut(md, "\n## Pipeline configuration\n")
	if !ok {
		return nil, errors.New(`docs/pipeline.md has no "## Pipeline configuration" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	lines := strings.Split(section, "\n")
	start := slices.Index(lines, "| Variable | Default | Meaning |")
	if start < 0 || start+1 >= len(lines) || !strings.HasPrefix(lines[start+1], "|---") {
		return nil, errors.New(`no | Variable | Default | Meaning | table under "## Pipeline configuration"`)
	}
	var rows []string
	for _, l := range lines[start+2:] {
		if !strings.HasPrefix(l, "|") {
			break
		}
		rows = append(rows, l)
	}
	return rows, nil
}

// envNameRE matches what reads as an environment variable in prose: upper
// case with an underscore (SIZE_BUDGET, _EXPERIMENTAL_DAGGER_CLI_BIN).
var envNameRE = regexp.MustCompile(`\b_*[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b`)

// defaultRE is the one form in which the Mage help states a default.
var defaultRE = regexp.MustCompile(`\b(_*[A-Z][A-Z0-9_]*) \(default: ([^)]*)\)`)

// TestMageHelpAgrees ties the Mage targets' help (their doc comments, which
// `go tool mage -h <target>` prints) to Vars: every variable the help of a
// pipeline target names is in the table, every default it states is the
// table's, and every variable LoadConfig reads has its default stated.
func TestMageHelpAgrees(t *testing.T) {
	t.Parallel()
	docs, err := pipelineTargetDocs("../magefiles/magefile.go")
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) < 3 {
		t.Fatalf("found the help of %d pipeline targets (%v), want build, test and push", len(docs), docs)
	}
	rows := map[string]config.Var{} // by every name a row documents
	for _, v := range config.Vars() {
		rows[v.Name] = v
		for _, n := range envNameRE.FindAllString(v.Label, -1) {
			rows[n] = v
		}
	}
	stated, all := map[string]bool{}, ""
	for target, doc := range docs {
		doc = strings.Join(strings.Fields(doc), " ") // defaults may wrap
		all += doc + "\n"
		for _, n := range envNameRE.FindAllString(doc, -1) {
			if _, ok := rows[n]; !ok {
				t.Errorf("mage -h %s names %s, which Vars does not list", target, n)
			}
		}
		for _, m := range defaultRE.FindAllStringSubmatch(doc, -1) {
			name, def := m[1], m[2]
			v, ok := rows[name]
			if !ok {
				continue // reported above
			}
			if def != v.Default {
				t.Errorf("mage -h %s: %s (default: %s), but Vars says %s", target, name, def, v.Default)
			}
			stated[v.Name] = true
		}
		if rest := defaultRE.ReplaceAllString(doc, ""); strings.Contains(strings.ToLower(rest), "default") {
			t.Errorf("mage -h %s states a default not in the form NAME (default: VALUE), which this test checks:\n%s", target, rest)
		}
	}
	for _, v := range config.Vars() {
		if v.ReadBy == "" && !stated[v.Name] {
			t.Errorf("no pipeline target's help states %s (default: %s)", v.Name, v.Default)
		}
		// Whole names: AWS_ENDPOINT_URL_ECR does not name AWS_ENDPOINT_URL.
		if !regexp.MustCompile(`\b` + regexp.QuoteMeta(v.Name) + `\b`).MatchString(all) {
			t.Errorf("no pipeline target's help names %s", v.Name)
		}
	}
}

// pipelineTargetDocs returns the doc comments of the Mage targets in file
// that load the pipeline configuration (their body calls runner()), by
// target name.
func pipelineTargetDocs(file string) (map[string]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	docs := map[string]string{}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Recv != nil || !fn.Name.IsExported() || fn.Body == nil {
			continue
		}
		loads := false
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok {
				if id, ok := call.Fun.(*ast.Ident); ok && id.Name == "runner" {
					loads = true
				}
			}
			return !loads
		})
		if loads {
			docs[strings.ToLower(fn.Name.Name)] = fn.Doc.Text()
		}
	}
	return docs, nil
}
