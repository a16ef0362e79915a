package imagetest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// CONTRIBUTING.md tells a newcomer how the tests build the image offline, so
// they can do the same by hand. It must name the network and the build args
// dockerBuildArgs really passes; it once said the RUN steps had no network,
// long after the build came to need a module proxy on loopback.
func TestContributingDescribesTheTestBuild(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "CONTRIBUTING.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Join(strings.Fields(string(b)), " ")
	for _, a := range dockerBuildArgs(t, standins{Runtime: "r", Go: "g"}, "tag") {
		switch {
		case strings.HasPrefix(a, "--network="):
			if !strings.Contains(doc, "`"+a+"`") {
				t.Errorf("CONTRIBUTING.md does not say the test build runs with `%s`", a)
			}
		case strings.HasPrefix(a, "GOPROXY="):
			if !strings.Contains(doc, "--build-arg GOPROXY=") {
				t.Errorf("CONTRIBUTING.md does not say the test build passes --build-arg GOPROXY (%s)", a)
			}
		}
	}
	if strings.Contains(doc, "steps use `--network=none`") {
		t.Error("CONTRIBUTING.md still says the image build's RUN steps use --network=none")
	}
}
