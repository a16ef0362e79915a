package ci

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/example/sidecar/ci/imagetag"
)

// TestTagRulesShown ties `mage -h push` and docs/pipeline.md to
// imagetag.Decide: both state its rules word for word (Rules computes the
// examples in them by calling Decide).
func TestTagRulesShown(t *testing.T) {
	t.Parallel()
	docs, err := pipelineTargetDocs("../magefiles/magefile.go")
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile("../docs/pipeline.md")
	if err != nil {
		t.Fatal(err)
	}
	help := strings.Join(strings.Fields(docs["push"]), " ")
	for _, rule := range imagetag.Rules() {
		if !strings.Contains(help, rule) {
			t.Errorf("mage -h push lacks the tag rule %q", rule)
		}
		if !slices.Contains(strings.Split(string(md), "\n"), "- "+rule) {
			t.Errorf("docs/pipeline.md lacks the tag rule as a list item:\n- %s", rule)
		}
	}
}

// shownTagRE finds the image tags the docs show for the pipeline's image.
var shownTagRE = regexp.MustCompile(`\bsidecar:([A-Za-z0-9_][A-Za-z0-9_.-]*)`)

// semverTagRE is the git tag form docs/pipeline.md tells users to push.
var semverTagRE = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)

// TestDocsTagsAreDecided checks every sidecar:<tag> in README.md and docs/
// is a tag imagetag.Decide pushes: a commit tag, latest, or the version
// tag of a v<semver> git tag (so sidecar:v1.0.0, which no push makes, fails).
func TestDocsTagsAreDecided(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range append(files, "../README.md") {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range shownTagRE.FindAllStringSubmatch(string(data), -1) {
			seen++
			tag := strings.TrimRight(m[1], ".-")
			var in imagetag.Input
			switch {
			case regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(tag):
				in.Short = tag
			case tag == "latest":
				in.PushLatest = true
			case semverTagRE.MatchString("v" + tag):
				in.GitTag = "v" + tag
			default:
				t.Errorf("%s shows sidecar:%s, which push never pushes (%s)", f, tag, strings.Join(imagetag.Rules(), " "))
				continue
			}
			if !slices.Contains(imagetag.Decide(in).Names(), tag) {
				t.Errorf("%s shows sidecar:%s, but imagetag.Decide(%+v) pushes %v", f, tag, in, imagetag.Decide(in).Names())
			}
		}
	}
	if seen == 0 {
		t.Fatal("no sidecar:<tag> found in README.md or docs/: the pattern is stale")
	}
}
