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
)

// docsRow is how docs/pipeline.md's variables table shows a row of Vars.
func docsRow(v Var) string {
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
	for _, v := range Vars() {
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
	rows := map[string]Var{} // by every name a row documents
	for _, v := range Vars() {
		rows[v.Name] = v
		for _, n := range envNameRE.FindAllString(v.Label, -1) {
			rows[n] = v
		}
	}
	stated := map[string]bool{}
	for target, doc := range docs {
		doc = strings.Join(strings.Fields(doc), " ") // defaults may wrap
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
	for _, v := range Vars() {
		if v.ReadBy == "" && !stated[v.Name] {
			t.Errorf("no pipeline target's help states %s (default: %s)", v.Name, v.Default)
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

// TestLoadConfigReadsTheTable checks that LoadConfig reads exactly the rows
// of Vars it owns (ReadBy ""), and none that another program reads.
func TestLoadConfigReadsTheTable(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{
		{}, // defaults
		{"PLATFORMS": "linux/amd64,windows/amd64", "SIZE_BUDGET": "huge", "LOCAL_IMAGE": "bad name!", "OCI_TARBALL": "/nonexistent/x.tar",
			"GO_IMAGE": "a b", "UNIT_TESTS": "maybe", "ECR_REPOSITORY": "Bad!", "PUSH_LATEST": "perhaps"},
	} {
		read := map[string]bool{}
		_, _ = LoadConfig(t.TempDir(), func(name string) (string, bool) {
			read[name] = true
			v, ok := env[name]
			return v, ok
		})
		for _, v := range Vars() {
			if owned := v.ReadBy == ""; read[v.Name] != owned {
				t.Errorf("%s: LoadConfig reads it: %v; Vars says read by %q", v.Name, read[v.Name], v.ReadBy)
			}
			delete(read, v.Name)
		}
		for name := range read {
			t.Errorf("LoadConfig reads %s, which Vars does not list", name)
		}
	}
}

// TestLoadConfigAccepted checks that a bad value's error says what the
// table accepts for that variable.
func TestLoadConfigAccepted(t *testing.T) {
	t.Parallel()
	bad := map[string]string{"SIZE_BUDGET": "huge", "LOCAL_IMAGE": "bad name!", "OCI_TARBALL": "/nonexistent/x.tar",
		"GO_IMAGE": "a b", "RUNTIME_IMAGE": "a b", "MYSQL_IMAGE": "a b", "ECR_REPOSITORY": "Bad!",
		"GOVULNDB": "vuln.example.com", "SCAN_TIMEOUT": "10", "SCAN_FAIL_ON": "SEVERE"}
	for _, v := range Vars() {
		if v.Accepted == acceptBool {
			bad[v.Name] = "maybe"
		}
	}
	for _, v := range Vars() {
		if v.Accepted == "" {
			continue
		}
		val, ok := bad[v.Name]
		if !ok {
			t.Errorf("%s: no bad value to try", v.Name)
			continue
		}
		_, err := LoadConfig(t.TempDir(), func(name string) (string, bool) {
			return val, name == v.Name
		})
		if want := v.Name + "=" + `"` + val + `": ` + v.Accepted; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=%q: error %v, want it to say %q", v.Name, val, err, want)
		}
	}
}

// TestVarsParse checks that LoadConfig's rows have a parser and the rows
// another program reads have none.
func TestVarsParse(t *testing.T) {
	t.Parallel()
	for _, v := range Vars() {
		if (v.Parse == nil) != (v.ReadBy != "") {
			t.Errorf("%s: parser %v, read by %q", v.Name, v.Parse != nil, v.ReadBy)
		}
	}
}

func TestTypoWarnings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		environ []string
		want    []string
	}{
		{[]string{"ECR_REPO=team/app"}, []string{"WARNING: ECR_REPO is set but not read; did you mean ECR_REPOSITORY? ECR_REPOSITORY is unset, so ECR_REPOSITORY=sidecar applies."}},
		{[]string{"ECR_REPO=team/app", "ECR_REPOSITORY=team/app"}, []string{"WARNING: ECR_REPO is set but not read; did you mean ECR_REPOSITORY? ECR_REPOSITORY is set too."}},
		{[]string{"OCI_TARBAL=x"}, []string{"WARNING: OCI_TARBAL is set but not read; did you mean OCI_TARBALL? OCI_TARBALL is unset."}},
		{[]string{"AWS_REGOIN=eu-west-1"}, []string{"WARNING: AWS_REGOIN is set but not read; did you mean AWS_REGION?"}},
		// Names a row documents with it are not typos of its Name.
		{[]string{"AWS_PROFILE=x", "DOCKER_CONTEXT=colima", "AWS_ENDPOINT_URL=http://127.0.0.1:1", "PATH=/bin", "HOME=/root"}, nil},
	} {
		if got := TypoWarnings(tc.environ); !slices.Equal(got, tc.want) {
			t.Errorf("TypoWarnings(%v) =\n%q\nwant\n%q", tc.environ, got, tc.want)
		}
	}
}
