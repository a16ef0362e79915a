package doclinks

import (
	"regexp"
	"testing"
)

// goBuildRE is a go build command up to the end of its code span or line.
var goBuildRE = regexp.MustCompile("go build[^`\n]*")

var (
	sidecarPkgRE = regexp.MustCompile(`(^|\s)\./sidecar/?(\s|$)`)
	outputFlagRE = regexp.MustCompile(`\s-o(=|\s)`)
)

// sidecarBuildsWithoutOutput returns the go build commands in md that
// build ./sidecar without -o: go names the binary after the package's
// directory, sidecar, which is that directory itself, so such a command
// fails at the repository root ("build output "sidecar" already exists and
// is a directory").
func sidecarBuildsWithoutOutput(md string) []string {
	var bad []string
	for _, cmd := range goBuildRE.FindAllString(md, -1) {
		if sidecarPkgRE.MatchString(cmd) && !outputFlagRE.MatchString(cmd) {
			bad = append(bad, cmd)
		}
	}
	return bad
}

func TestSidecarBuildsWithoutOutput(t *testing.T) {
	for _, tc := range []struct {
		md   string
		want int
	}{
		{"(`go build -trimpath ./sidecar`)", 1},
		{"go build ./sidecar/", 1},
		{"CGO_ENABLED=0 go build -trimpath -o bin/sidecar ./sidecar    # static", 0},
		{"`go build -o=bin/sidecar ./sidecar`", 0},
		{"a `go build` of this repository ran", 0},
		{"`go build ./sidecar/internal/config`", 0},
	} {
		if got := sidecarBuildsWithoutOutput(tc.md); len(got) != tc.want {
			t.Errorf("sidecarBuildsWithoutOutput(%q) = %q, want %d", tc.md, got, tc.want)
		}
	}
}

// The user docs' commands that build the sidecar work when pasted at the
// repository root. (bench/*.md are reports of past runs, left as written.)
func TestDocsBuildTheSidecarIntoAFile(t *testing.T) {
	for _, d := range userDocs(t) {
		for _, cmd := range sidecarBuildsWithoutOutput(d.text) {
			t.Errorf("%s: %q fails at the repository root (sidecar/ is a directory): add -o, such as -o bin/sidecar", d.path, cmd)
		}
	}
}
