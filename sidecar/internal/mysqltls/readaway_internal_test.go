package mysqltls

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// docs/iam.md states readAway's bounds: readAwayQuiet, readAwayMax and
// readAwayLimit.
func TestDocsReadAwayBounds(t *testing.T) {
	b, err := os.ReadFile("../../../docs/iam.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(b)), " ")
	quiet := "a second"
	if readAwayQuiet.Seconds() != 1 {
		quiet = fmt.Sprintf("%g s", readAwayQuiet.Seconds())
	}
	want := fmt.Sprintf("%s without any, %g s in all or %d GiB ends it", quiet, readAwayMax.Seconds(), readAwayLimit>>30)
	if !strings.Contains(text, want) {
		t.Errorf("docs/iam.md does not say %q", want)
	}
}
