package ci

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// dockerfileRefusal is a message the Dockerfile's shell prints before it
// stops a build.
var dockerfileRefusal = regexp.MustCompile(`echo "([^"]+)" >&2`)

// A plain docker build prints the Dockerfile's own refusals, not the
// pipeline's code, so TestTroubleshootingCoversPipelineMessages does not
// see them: pipeline.md's troubleshooting table quotes each in full.
func TestTroubleshootingCoversDockerfileMessages(t *testing.T) {
	t.Parallel()
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile("../docs/pipeline.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(md), "\n## Troubleshooting the pipeline")
	section, _, _ = strings.Cut(section, "\n## ")
	msgs := dockerfileRefusal.FindAllStringSubmatch(string(df), -1)
	if len(msgs) == 0 {
		t.Fatal("no refusal (echo \"…\" >&2) found in the Dockerfile: the pattern no longer matches how it prints them")
	}
	for _, m := range msgs {
		if !strings.Contains(section, "| `"+m[1]+"`") {
			t.Errorf("docs/pipeline.md's troubleshooting table has no row quoting the Dockerfile's %q", m[1])
		}
	}
}
