// Package sidecarbin builds the real sidecar binary for tests, with the
// Dockerfile's flags, so checks that read a binary (govulncheck, build
// info for the SBOM) read what the image ships.
package sidecarbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Build compiles ./sidecar of this module for linux/goarch into a test
// temporary directory and returns the binary's path.
func Build(t testing.TB, goarch string) string {
	t.Helper()
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	out := filepath.Join(t.TempDir(), "sidecar-"+goarch)
	// As the Dockerfile's build stage (keep in step with it).
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X main.version=test -X main.commit=test", "-o", out, "./sidecar")
	cmd.Dir = strings.TrimSpace(string(root))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOFLAGS=-mod=readonly")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./sidecar for %s: %v\n%s", goarch, err, b)
	}
	return out
}
