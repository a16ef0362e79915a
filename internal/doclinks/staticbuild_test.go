package doclinks

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmeGoBuildRE is a go build command with what precedes it on its line
// or code span (where CGO_ENABLED=0 is set).
var readmeGoBuildRE = regexp.MustCompile("[^`\n]*go build[^`\n]*")

// Every README command that builds the sidecar builds the static binary
// the image ships (the Dockerfile sets CGO_ENABLED=0): with cgo, go build
// links the C resolver, and the binary needs the host's libc.
func TestReadmeBuildsTheSidecarStatic(t *testing.T) {
	root := filepath.Join("..", "..")
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dockerfile), "CGO_ENABLED=0") {
		t.Fatal("the Dockerfile no longer sets CGO_ENABLED=0: revisit this test")
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, cmd := range readmeGoBuildRE.FindAllString(string(readme), -1) {
		if !sidecarPkgRE.MatchString(cmd) {
			continue
		}
		n++
		if !strings.Contains(cmd, "CGO_ENABLED=0 go build") {
			t.Errorf("README: %q builds the sidecar with cgo, into a binary that needs the host's libc; set CGO_ENABLED=0 as the Dockerfile does", strings.TrimSpace(cmd))
		}
	}
	if n == 0 {
		t.Error("README builds no sidecar: the pattern is stale")
	}
}
