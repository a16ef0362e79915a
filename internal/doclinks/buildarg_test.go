package doclinks

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// bareBuildArgRE is a --build-arg NAME=value followed by another NAME=value
// without its own --build-arg: docker build takes that word for the build
// context and stops ("requires exactly 1 argument").
var bareBuildArgRE = regexp.MustCompile(`--build-arg\s+[A-Z_]+=\S+\s+[A-Z_]+=\S*`)

// uncomment joins a file's comment lines into one text, so a command the
// Dockerfile's header wraps over lines reads as one.
func uncomment(text string) string {
	var b strings.Builder
	for line := range strings.Lines(text) {
		b.WriteString(strings.TrimPrefix(strings.TrimSpace(line), "#"))
		b.WriteByte(' ')
	}
	return b.String()
}

func TestBareBuildArg(t *testing.T) {
	for text, want := range map[string]bool{
		"--build-arg GO_IMAGE=golang:1.26-alpine RUNTIME_IMAGE=alpine:3.22":                 true,
		"--build-arg GO_IMAGE=golang:1.26-alpine --build-arg RUNTIME_IMAGE=alpine:3.22":     false,
		"`--build-arg GO_IMAGE=golang:1.26-alpine --build-arg RUNTIME_IMAGE=alpine:3.22`":   false,
		uncomment("# --build-arg\n# GO_IMAGE=golang:1.26-alpine RUNTIME_IMAGE=alpine:3.22"): true,
	} {
		if got := bareBuildArgRE.MatchString(text); got != want {
			t.Errorf("bareBuildArgRE.MatchString(%q) = %v, want %v", text, got, want)
		}
	}
}

// Every --build-arg the Dockerfile's header and the docs show sets one
// argument, so the command works as copied.
func TestDocsBuildArgsEachHaveTheirFlag(t *testing.T) {
	for _, d := range userDocs(t, "Dockerfile") {
		text := d.text
		if filepath.Base(d.path) == "Dockerfile" {
			text = uncomment(text)
		}
		for _, m := range bareBuildArgRE.FindAllString(text, -1) {
			t.Errorf("%s: %q: each NAME=value needs its own --build-arg, or docker build takes it for the build context", d.path, m)
		}
	}
}
