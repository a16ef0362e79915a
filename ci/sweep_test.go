package ci

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/example/sidecar/ci/secrets"
	"github.com/example/sidecar/ci/tmpdir"
	"github.com/example/sidecar/internal/testkit"
)

// leaveEnv makes the test binary (TestMain) a run that makes a temporary
// directory of each prefix it lists and exits without removing them, as a
// run stopped by mage -t or a kill does.
const leaveEnv = "CI_TEST_LEAVE_TEMP_DIRS"

func leaveTempDirs() {
	for _, p := range strings.Split(os.Getenv(leaveEnv), ",") {
		d, err := tmpdir.New(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(d.Path)
	}
	os.Exit(0)
}

// A run removes the directories (the ECR token's among them) that a run
// which ended without its cleanup left, saying so, before its first step.
func TestRunRemovesDirectoriesLeftByEndedRuns(t *testing.T) {
	t.Parallel()
	// A temporary directory of its own: every other run on the machine
	// (the parallel tests' Build and Push among them) sweeps the shared
	// one, and could remove the ended run's directories before this run.
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TMPDIR="+root, leaveEnv+"="+strings.Join([]string{secrets.DirPrefix, exportDirPrefix, vulnDirPrefix}, ","))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	left := strings.Fields(string(out))
	if len(left) != 3 {
		t.Fatalf("helper left %q, want 3 directories", left)
	}
	for _, d := range left {
		if filepath.Dir(d) != root {
			t.Fatalf("helper made %s, not in %s", d, root)
		}
	}
	t.Cleanup(func() {
		for _, d := range left {
			os.RemoveAll(d)
		}
	})
	log := &testkit.LockedBuffer{}
	r := &Runner{Log: log, tempRoot: root}
	if err := r.runStepList(context.Background(), "build", nil); err != nil {
		t.Fatal(err)
	}
	for _, d := range left {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s left in place (%v):\n%s", d, err, log)
		}
		if !strings.Contains(log.String(), d) {
			t.Errorf("the log does not name %s:\n%s", d, log)
		}
	}
	if !strings.Contains(log.String(), "temporary director(ies) left by runs that ended without their cleanup (mage -t, a kill)") {
		t.Errorf("the log does not say why:\n%s", log)
	}
}
