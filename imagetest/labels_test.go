package imagetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
)

// A plain `docker build` on a RUNTIME_IMAGE with its own source label
// (Chainguard's, say) must not pass that repository off as the image's:
// only the pipeline sets the label, from the real repository.
func TestBaseSourceLabelNotInherited(t *testing.T) {
	d := requireDocker(t)
	s := ensureStandins(t, d)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	base := "sidecar-imagetest-labelled:" + suffix
	const baseSource = "https://example.invalid/base-image-repository"
	changes := []string{"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LABEL org.opencontainers.image.source=" + baseSource}
	if err := importRootfs(d, base, changes, staticBusybox(t), rootfsFiles(), nil); err != nil {
		t.Fatalf("make stand-in %s: %v", base, err)
	}
	t.Cleanup(func() { _, _ = d.output(context.Background(), "rmi", base) })
	if got := inspectImage(t, d, base).Config.Labels["org.opencontainers.image.source"]; got != baseSource {
		t.Fatalf("stand-in %s has source label %q, want %q", base, got, baseSource)
	}
	tag := "sidecar-imagetest-labels:" + suffix
	dockerBuild(t, d, standins{Go: s.Go, Runtime: base}, tag)
	labels := inspectImage(t, d, tag).Config.Labels
	if got := labels["org.opencontainers.image.source"]; got != "" {
		t.Errorf("image built on %s has org.opencontainers.image.source=%q, the base's; want it empty (labels %v)", base, got, labels)
	}
	if got := labels["org.opencontainers.image.title"]; got != "sidecar" {
		t.Errorf("image title label %q, want sidecar", got)
	}
}
