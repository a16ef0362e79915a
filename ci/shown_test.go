package ci

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/example/sidecar/ci/vulncheck/vulndbtest"
)

// An accepted value with a credential pasted with its key (a path
// holding password=…, an image named …-token:…) is masked wherever a step
// prints it, as its refusal would show it: in the step lines and in the
// errors that quote it. Each value is one config.Load accepts.
func TestAcceptedValuesShownMasked(t *testing.T) {
	t.Parallel()
	const secret = "S3CRET"
	for _, tc := range []struct {
		name  string
		env   func(t *testing.T, dir string) map[string]string
		setup func(t *testing.T, fe *fakeEngine, dir string)
		run   func(ctx context.Context, fe *fakeEngine) error
		shown string // in the log or the error: the value as masked
	}{
		{name: "OCI_TARBALL written",
			env: func(_ *testing.T, dir string) map[string]string {
				return map[string]string{"OCI_TARBALL": filepath.Join(dir, "password="+secret+".tar"), "LOCAL_IMAGE": "none"}
			},
			run: func(ctx context.Context, fe *fakeEngine) error { return fe.runner.Build(ctx) }, shown: "password=xxxxx"},
		{name: "OCI_TARBALL not written",
			env: func(_ *testing.T, dir string) map[string]string {
				return map[string]string{"OCI_TARBALL": filepath.Join(dir, "gone", "password="+secret+".tar"), "LOCAL_IMAGE": "none"}
			},
			setup: func(t *testing.T, _ *fakeEngine, dir string) {
				if err := os.Remove(filepath.Join(dir, "gone")); err != nil { // after Load accepted it
					t.Fatal(err)
				}
			},
			run: func(ctx context.Context, fe *fakeEngine) error { return fe.runner.Build(ctx) }, shown: "password=xxxxx"},
		{name: "LOCAL_IMAGE loaded",
			env: func(*testing.T, string) map[string]string {
				return map[string]string{"LOCAL_IMAGE": "sidecar-token:" + secret}
			},
			run: func(ctx context.Context, fe *fakeEngine) error { return fe.runner.Build(ctx) }, shown: "sidecar-token:xxxxx"},
		{name: "LOCAL_IMAGE without Docker",
			env: func(*testing.T, string) map[string]string {
				return map[string]string{"LOCAL_IMAGE": "sidecar-token:" + secret}
			},
			setup: func(_ *testing.T, fe *fakeEngine, _ string) {
				fe.runner.pingDocker = func(context.Context) error { return errors.New("connection refused") }
			},
			run: func(ctx context.Context, fe *fakeEngine) error { return fe.runner.Build(ctx) }, shown: "sidecar-token:xxxxx"},
		{name: "MYSQL_IMAGE",
			env: func(*testing.T, string) map[string]string {
				return map[string]string{"MYSQL_IMAGE": "mysql-token:" + secret, "LOCAL_IMAGE": "none"}
			},
			run: func(ctx context.Context, fe *fakeEngine) error { return fe.runner.Test(ctx) }, shown: "mysql-token:xxxxx"},
		{name: "GO_IMAGE pinned",
			env: func(*testing.T, string) map[string]string {
				return map[string]string{"GO_IMAGE": "golang-token:" + secret, "LOCAL_IMAGE": "none"}
			},
			run: func(ctx context.Context, fe *fakeEngine) error { return fe.runner.Build(ctx) }, shown: "GO_IMAGE golang-token:xxxxx is "},
		{name: "GOVULNDB probed",
			env: func(t *testing.T, dir string) map[string]string {
				db := strings.TrimPrefix(vulndbtest.Write(t), "file://")
				if err := os.Symlink(db, filepath.Join(dir, "token="+secret)); err != nil {
					t.Fatal(err)
				}
				return map[string]string{"GOVULNDB": "file://" + filepath.Join(dir, "token="+secret)}
			},
			run: func(ctx context.Context, fe *fakeEngine) error { return fe.runner.probeVulnDB(ctx) }, shown: "token=xxxxx"},
		{name: "GOVULNDB missing",
			env: func(_ *testing.T, dir string) map[string]string {
				return map[string]string{"GOVULNDB": "file://" + filepath.Join(dir, "token="+secret, "db")}
			},
			run: func(ctx context.Context, fe *fakeEngine) error { return fe.runner.probeVulnDB(ctx) }, shown: "token=xxxxx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "gone"), 0o755); err != nil {
				t.Fatal(err)
			}
			fe := newEngine(t, tc.env(t, dir), nil)
			if tc.setup != nil {
				tc.setup(t, fe, dir)
			}
			err := tc.run(testCtx(t), fe)
			out := fe.log.String() + fe.out.String()
			if err != nil {
				out += "\n" + err.Error()
			}
			if strings.Contains(out, secret) || !strings.Contains(out, tc.shown) {
				t.Errorf("want %s shown as %q, without %s; printed:\n%s", tc.name, tc.shown, secret, out)
			}
		})
	}
}
