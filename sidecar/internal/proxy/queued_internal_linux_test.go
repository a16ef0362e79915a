//go:build linux

package proxy

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// With no cap injected (WithQueuedCap), the drain takes what the kernel
// queues at most: one over net.core.somaxconn, the backlog Go listens with.
func TestQueuedOnIsTheKernelsQueue(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		t.Skipf("no somaxconn to compare with: %v", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if got := queuedOn(0); got != n+1 {
		t.Errorf("queuedOn = %d, want net.core.somaxconn (%d) + 1", got, n)
	}
	if (Config{}).withDefaults().queuedCap != 0 {
		t.Errorf("the default Config caps the drain at %d: want the kernel's queue", (Config{}).withDefaults().queuedCap)
	}
}
