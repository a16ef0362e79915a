package ci

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/example/sidecar/ci/config"
)

// dockerCmdRE is a docker build or run command up to the end of its code
// span or line.
var dockerCmdRE = regexp.MustCompile("docker (build|run)[^`\n]*")

// localImageDefault is LOCAL_IMAGE's default: the image build loads.
func localImageDefault(t *testing.T) string {
	for _, v := range config.Vars() {
		if v.Name == "LOCAL_IMAGE" {
			return v.Default
		}
	}
	t.Fatal("config.Vars has no LOCAL_IMAGE")
	return ""
}

// The README's quick start runs the image go tool mage build loads
// (LOCAL_IMAGE's default), and shows how to build that image with Docker
// alone, for a newcomer whose machine cannot run the Dagger engine.
func TestReadmeBuildsTheImageItRuns(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	img := localImageDefault(t)
	tagged := regexp.MustCompile(`\s` + regexp.QuoteMeta(img) + `(\s|$)`)
	var builds, runs int
	for _, cmd := range dockerCmdRE.FindAllString(string(data), -1) {
		cmd, _, _ = strings.Cut(cmd, " #")
		switch {
		case strings.HasPrefix(cmd, "docker build"):
			builds++
			if !strings.Contains(cmd, " -t "+img+" ") {
				t.Errorf("README: %q does not tag the image %s, which the quick start runs", cmd, img)
			}
		case !tagged.MatchString(cmd):
			t.Errorf("README: %q does not run %s, the image go tool mage build loads (LOCAL_IMAGE)", cmd, img)
		default:
			runs++
		}
	}
	if builds == 0 {
		t.Errorf("README shows no docker build -t %s: without a Dagger engine a newcomer has no image to run", img)
	}
	if runs == 0 {
		t.Errorf("README runs no %s with docker run", img)
	}
}
