package ci

import (
	"errors"
	"os"
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

// TestLoadConfigReadsTheTable checks that LoadConfig reads exactly the rows
// of Vars it owns (ReadBy ""), and none that another program reads.
func TestLoadConfigReadsTheTable(t *testing.T) {
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
	bad := map[string]string{"SIZE_BUDGET": "huge", "LOCAL_IMAGE": "bad name!", "OCI_TARBALL": "/nonexistent/x.tar",
		"GO_IMAGE": "a b", "RUNTIME_IMAGE": "a b", "MYSQL_IMAGE": "a b", "ECR_REPOSITORY": "Bad!"}
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
