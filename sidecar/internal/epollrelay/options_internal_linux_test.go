//go:build linux && (amd64 || arm64)

package epollrelay

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// docs/performance.md states the buffer a connection whose client stops
// reading holds: the default Options.BufferSize.
func TestDocsBufferSize(t *testing.T) {
	b, err := os.ReadFile("../../../docs/performance.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(b)), " ")
	if want := fmt.Sprintf("holding one %d KiB buffer", Options{}.bufferSize()>>10); !strings.Contains(text, want) {
		t.Errorf("docs/performance.md does not say %q", want)
	}
}
