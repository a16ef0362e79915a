package tmpdir

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// helperEnv makes the test binary a run that makes a directory of the
// prefix it names, prints its path and then exits (without removing it,
// as mage -t's exit does) or waits to be killed.
const helperEnv = "TMPDIR_TEST_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		prefix, mode, _ := strings.Cut(spec, ",")
		d, err := New(prefix)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(d.Path)
		if mode == "wait" {
			select {} // until killed
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// leftBy runs a helper process that makes a directory of prefix; with
// wait, it is still running (and killed when the test ends).
func leftBy(t *testing.T, prefix string, wait bool) (dir string, kill func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	mode := "exit"
	if wait {
		mode = "wait"
	}
	cmd.Env = append(os.Environ(), helperEnv+"="+prefix+","+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	dir = strings.TrimSpace(line)
	kill = func() { cmd.Process.Kill(); cmd.Wait() }
	t.Cleanup(func() { kill(); os.RemoveAll(dir) })
	if !wait {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	return dir, kill
}

func testPrefix(t *testing.T) string {
	b := make([]byte, 6)
	rand.Read(b)
	return "sidecar-tmpdir-test-" + hex.EncodeToString(b) + "-"
}

func exists(dir string) bool { _, err := os.Stat(dir); return err == nil }

// A run's directories outlive it when it ends without its cleanup; the
// next run's Sweep removes those, and only those: never a directory of a
// run still going, in this process or another.
func TestSweep(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("no file locks: Sweep leaves every directory")
	}
	for _, tc := range []struct {
		name   string
		make   func(t *testing.T, prefix string) (dir string, end func())
		remove bool
	}{
		{"left by a run that exited", func(t *testing.T, p string) (string, func()) { d, _ := leftBy(t, p, false); return d, nil }, true},
		{"held by a run that is killed", func(t *testing.T, p string) (string, func()) { return leftBy(t, p, true) }, true},
		{"held by this process", func(t *testing.T, p string) (string, func()) {
			d, err := New(p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Remove() })
			return d.Path, nil
		}, false},
		// Being made (not yet locked), or made without a lock.
		{"without an owner file", func(t *testing.T, p string) (string, func()) {
			d, err := os.MkdirTemp("", p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(d) })
			return d, nil
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prefix := testPrefix(t)
			dir, end := tc.make(t, prefix)
			if !strings.HasPrefix(filepath.Base(dir), prefix) || !exists(dir) {
				t.Fatalf("made %q, want an existing directory named %s*", dir, prefix)
			}
			if end != nil {
				// Alive, in another process: never removed.
				if removed, err := Sweep("", prefix); err != nil || len(removed) > 0 || !exists(dir) {
					t.Fatalf("Sweep with the owner running = %v, %v", removed, err)
				}
				end()
			}
			removed, err := Sweep("", prefix)
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Contains(removed, dir) && !exists(dir); got != tc.remove || len(removed) > 1 {
				t.Errorf("Sweep removed %v (directory still there: %v), want %s removed: %v", removed, exists(dir), dir, tc.remove)
			}
		})
	}
}

func TestNewIsPrivateAndRemoved(t *testing.T) {
	t.Parallel()
	d, err := New(testPrefix(t))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(d.Path)
	if err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Errorf("directory %s: %v, mode %v; want private", d.Path, err, st.Mode())
	}
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	if exists(d.Path) {
		t.Errorf("directory %s left behind", d.Path)
	}
}
