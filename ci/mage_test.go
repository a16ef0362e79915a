package ci

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMageTargets compiles magefiles/ the way users run it (go vet skips
// the mage build tag) and checks the listing and the push help.
func TestMageTargets(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the magefile")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // safety net
	defer cancel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	mage := func(args ...string) string {
		cmd := exec.CommandContext(ctx, "go", append([]string{"tool", "mage"}, args...)...)
		cmd.Dir = root
		// Own cache: no stale compiled magefile from another checkout.
		cmd.Env = append(os.Environ(), "MAGEFILE_CACHE="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go tool mage %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	list := mage("-l")
	for _, target := range []string{"build", "test", "push", "lint", "bench"} {
		found := false
		for _, line := range strings.Split(list, "\n") {
			f := strings.Fields(line)
			found = found || (len(f) > 2 && f[0] == target)
		}
		if !found {
			t.Errorf("mage -l has no described %q target:\n%s", target, list)
		}
	}
	help := mage("-h", "push")
	for _, v := range []string{"AWS_REGION", "ECR_REPOSITORY", "ECR_IMMUTABLE_TAGS", "PUSH_LATEST", "AWS_ENDPOINT_URL_ECR"} {
		if !strings.Contains(help, v) {
			t.Errorf("mage -h push does not explain %s", v)
		}
	}
	all := mage("-h", "build") + mage("-h", "test") + help
	for _, v := range Vars() {
		if !strings.Contains(all, v.Name) {
			t.Errorf("no mage help mentions %s", v.Name)
		}
	}
}
