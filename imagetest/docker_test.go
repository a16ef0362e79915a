package imagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testenv"
)

// docker runs the Docker CLI. Debian's docker.io client (/usr/bin/docker)
// matches the daemon we start; another client earlier on PATH may not.
type docker struct{ bin string }

// requireDocker returns a client whose daemon answers, or skips the test
// (fails it in CI) saying what is missing. With -short it skips: every
// test here builds or runs images, which takes about a minute in all.
func requireDocker(t *testing.T) docker {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: builds and runs the image in Docker (about a minute); the full run (go test ./..., as CI runs it) covers it")
	}
	bin := "/usr/bin/docker"
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("docker"); err != nil {
			testenv.Unavailable(t, "Docker: no docker client (install Debian's docker.io package)")
		}
	}
	d := docker{bin: bin}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := d.output(ctx, "info", "--format", "{{.ServerVersion}}"); err != nil {
		testenv.Unavailable(t, "Docker: the daemon does not answer (%v); start it with "+
			"`dockerd --bridge=none --iptables=false --ip-masq=false &`", err)
	}
	return d
}

func (d docker) command(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, d.bin, args...)
	c.Env = append(os.Environ(), "DOCKER_BUILDKIT=1")
	c.WaitDelay = 5 * time.Second
	return c
}

// output runs docker and returns its stdout; the error carries the command
// line and stderr.
func (d docker) output(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	c := d.command(ctx, args...)
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// must runs docker with a generous safety timeout and fails the test on error.
func (d docker) must(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := d.output(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// exitCode runs docker and returns its exit status with combined output;
// err is set only when docker could not be run at all.
func (d docker) exitCode(ctx context.Context, args ...string) (int, string, error) {
	c := d.command(ctx, args...)
	out, err := c.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out), nil
	}
	if err != nil {
		return -1, string(out), fmt.Errorf("docker %s: %w", strings.Join(args, " "), err)
	}
	return 0, string(out), nil
}

// containerName returns a unique name so parallel tests and runs never clash.
func containerName(t testing.TB) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	n := strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(t.Name()))
	return "sidecar-imagetest-" + n + "-" + hex.EncodeToString(b)
}

// removeOnCleanup removes the container when the test ends, first logging
// its output if the test failed.
func (d docker) removeOnCleanup(t testing.TB, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if t.Failed() {
			if logs, err := d.combined(ctx, "logs", name); err == nil {
				t.Logf("docker logs %s:\n%s", name, logs)
			}
		}
		_, _ = d.output(ctx, "rm", "-f", "-v", name)
	})
}

func (d docker) combined(ctx context.Context, args ...string) (string, error) {
	out, err := d.command(ctx, args...).CombinedOutput()
	return string(out), err
}

// inspect reads one Go-template field of a container or image.
func (d docker) inspect(t testing.TB, format, name string) string {
	t.Helper()
	return d.must(t, "inspect", "--format", format, name)
}

func itoa(n int) string { return strconv.Itoa(n) }
