//go:build unix

package ci

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
)

// Ctrl-C while a target waits (here for an engine session that accepts
// and never answers) exits 130 saying so, not 3 ("Dagger engine
// unavailable") or 2, which would send the user to fix what was fine.
//
// It runs the mage binary `go tool mage` runs (`go tool -n mage`), not
// `go tool` itself: the go command forwards the signal to mage as well,
// and when that copy arrives after the target has exited, mage has
// stopped catching SIGINT (RunCompiled's signal.Stop) and dies of it;
// `go tool` then exits 0, as SetExitStatus ignores the -1 of a signalled
// tool (cmd/go/internal/tool, Go 1.26). That race is the toolchain's.
func testCtrlC(ctx context.Context, t *testing.T, root, cache string) {
	accepted := make(chan net.Conn, 8)
	ln := testkit.Serve(t, func(c net.Conn) { accepted <- c }) // held open, never answered
	t.Cleanup(func() {
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	})
	find := exec.CommandContext(ctx, "go", "tool", "-n", "mage")
	find.Dir = root
	mage, err := find.Output()
	if err != nil {
		t.Fatalf("go tool -n mage: %v", err)
	}
	cmd := exec.CommandContext(ctx, strings.TrimSpace(string(mage)), "build")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "MAGEFILE_CACHE="+cache, "LOCAL_IMAGE=none", "DAGGER_SESSION_TOKEN=x",
		"DAGGER_SESSION_PORT="+strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C signals the terminal's process group
	var out testkit.LockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-accepted:
		accepted <- c
	case <-ctx.Done():
		t.Fatalf("mage build never reached the engine session:\n%s", out.String())
	}
	time.Sleep(500 * time.Millisecond) // waiting on the session's answer
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitInterrupted || !strings.Contains(out.String(), "Error: interrupted (Ctrl-C): ") {
		t.Fatalf("exit: %v, want code %d saying it was interrupted:\n%s", err, ExitInterrupted, out.String())
	}
}
