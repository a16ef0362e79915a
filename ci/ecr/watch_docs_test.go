package ecr_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/example/sidecar/ci/ecr"
)

// The docs state the bounds the code applies.
func TestDocsStateTheWaitBounds(t *testing.T) {
	doc, err := os.ReadFile("../../docs/pipeline.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("every %d s a line", int(ecr.ProgressEvery.Seconds())),
		fmt.Sprintf("each ECR API call, its retries included, after %d s", int(ecr.CallTimeout.Seconds())),
		fmt.Sprintf("gives up after %d s", int(ecr.DefaultCredentialsTimeout.Seconds())),
		fmt.Sprintf("each wait on it giving up after %d min", int(ecr.RegistryBound.Minutes())),
	} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/pipeline.md does not say %q", want)
		}
	}
}
