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
	"sync"
	"sync/atomic"
	"testing"
)

// helperEnv makes the test binary a run that makes a directory of the
// prefix it names, prints its path and then exits (without removing it,
// as mage -t's exit does) or waits to be killed.
const helperEnv = "TMPDIR_TEST_HELPER"

// helperFileEnv makes the test binary a run that makes a held file
// (CreateHeld) in the directory it names, prints its path and then exits
// or waits to be killed, as helperEnv's does.
const helperFileEnv = "TMPDIR_TEST_FILE_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperFileEnv); spec != "" {
		dir, mode, _ := strings.Cut(spec, ",")
		f, err := CreateHeld(dir, ".sidecar.tar.partial-*")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(f.Name())
		if mode == "wait" {
			answer()
		}
		os.Exit(0)
	}
	if spec := os.Getenv(helperEnv); spec != "" {
		prefix, mode, _ := strings.Cut(spec, ",")
		d, err := New(prefix)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(d.Path)
		if mode == "wait" {
			answer()
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// answer keeps a waiting helper alive until killed, answering each line
// of its input with one, so the test can tell it still runs. (A bare
// select {} is a deadlock the runtime ends at once, dropping the lock.)
func answer() {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Println("alive")
	}
	select {} // input closed: the test is done with it
}

// leftBy runs a helper process that makes a directory of prefix; with
// wait, it is still running (and killed when the test ends).
func leftBy(t *testing.T, prefix string, wait bool) (dir string, kill func()) {
	t.Helper()
	return helper(t, helperEnv, prefix, wait)
}

// helper runs the helper process env selects with arg, returning the
// path it printed.
func helper(t *testing.T, env, arg string, wait bool) (dir string, kill func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	mode := "exit"
	if wait {
		mode = "wait"
	}
	cmd.Env = append(os.Environ(), env+"="+arg+","+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	dir = strings.TrimSpace(line)
	killed := false
	kill = func() {
		if wait && !killed {
			// Still running, so it held its lock all along.
			fmt.Fprintln(in, "?")
			if reply, err := r.ReadString('\n'); reply != "alive\n" {
				t.Errorf("the helper ended before it was killed (%q, %v): its lock was not held all along", reply, err)
			}
		}
		killed = true
		cmd.Process.Kill()
		cmd.Wait()
	}
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

// Sweep reads dir as a name, not a pattern: TMPDIR=/tmp/run[1] is not
// /tmp/run1, and TMPDIR=/tmp/a[b is a directory like any other.
func TestSweepDirWithGlobCharacters(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("no file locks: Sweep leaves every directory")
	}
	prefix := testPrefix(t)
	base := t.TempDir()
	// What a run that ended leaves: a directory with an owner file no
	// process holds.
	ended := func(dir string) string {
		d := filepath.Join(dir, prefix+"x")
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, ownerFile), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return d
	}
	other := ended(filepath.Join(base, "run1"))
	if err := os.Mkdir(filepath.Join(base, "run[1]"), 0o700); err != nil {
		t.Fatal(err)
	}
	if removed, err := Sweep(filepath.Join(base, "run[1]"), prefix); err != nil || len(removed) > 0 || !exists(other) {
		t.Errorf("Sweep(%s) = %v, %v; want nothing removed from %s", filepath.Join(base, "run[1]"), removed, err, filepath.Dir(other))
	}
	left := ended(filepath.Join(base, "a[b"))
	if removed, err := Sweep(filepath.Join(base, "a[b"), prefix); err != nil || !slices.Equal(removed, []string{left}) || exists(left) {
		t.Errorf("Sweep(%s) = %v, %v; want %s removed", filepath.Dir(left), removed, err, left)
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

// A copy's temporary file outlives its run when a kill or mage -t ends it
// mid-copy; the next run's SweepFiles removes those, and only those: never
// the file of a copy still going, in this process or another, nor another
// target's or a file that is not a copy's.
func TestSweepFiles(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("no file locks: SweepFiles leaves every file")
	}
	const pattern = ".sidecar.tar.partial-*"
	// file makes an empty file of name, held by no one.
	file := func(name string) func(t *testing.T, dir string) (string, func()) {
		return func(t *testing.T, dir string) (string, func()) {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return p, nil
		}
	}
	for _, tc := range []struct {
		name   string
		make   func(t *testing.T, dir string) (path string, end func())
		remove bool
	}{
		{"left by a run that exited", func(t *testing.T, dir string) (string, func()) {
			p, _ := helper(t, helperFileEnv, dir, false)
			return p, nil
		}, true},
		{"held by a run that is killed", func(t *testing.T, dir string) (string, func()) { return helper(t, helperFileEnv, dir, true) }, true},
		{"held by this process", func(t *testing.T, dir string) (string, func()) {
			f, err := CreateHeld(dir, pattern)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f.Name(), nil
		}, false},
		{"another target's", func(t *testing.T, dir string) (string, func()) {
			f, err := os.CreateTemp(dir, ".other.tar.partial-*")
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			return f.Name(), nil
		}, false},
		// Named like a copy's, but os.CreateTemp puts digits for the *: a
		// user's file, or the copy of a target named sidecar.tar.partial-1.tar.
		{"a user's file of that name", file(".sidecar.tar.partial-notes"), false},
		{"a copy to sidecar.tar.partial-1.tar", file(".sidecar.tar.partial-1.tar.partial-123"), false},
		{"the target itself", file("sidecar.tar"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path, end := tc.make(t, dir)
			if filepath.Dir(path) != dir || !exists(path) {
				t.Fatalf("made %q, want an existing file in %s", path, dir)
			}
			if end != nil {
				// Alive, in another process: never removed.
				if removed, err := SweepFiles(dir, pattern); err != nil || len(removed) > 0 || !exists(path) {
					t.Fatalf("SweepFiles with the holder running = %v, %v", removed, err)
				}
				end()
			}
			removed, err := SweepFiles(dir, pattern)
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Contains(removed, path) && !exists(path); got != tc.remove || len(removed) > 1 {
				t.Errorf("SweepFiles removed %v (file still there: %v), want %s removed: %v", removed, exists(path), path, tc.remove)
			}
		})
	}
}

// A file CreateHeld returns is held and still at its name, though a
// sweep runs all the while: one that took it between its creation and
// its lock made CreateHeld make another.
func TestCreateHeldWhileSweeping(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("no file locks")
	}
	dir := t.TempDir()
	const pattern = ".sidecar.tar.partial-*"
	var stop atomic.Bool
	var wg sync.WaitGroup
	var swept atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				removed, _ := SweepFiles(dir, pattern)
				swept.Add(int64(len(removed)))
			}
		}()
	}
	defer func() { stop.Store(true); wg.Wait() }()
	for range 500 {
		f, err := CreateHeld(dir, pattern)
		if err != nil {
			t.Fatal(err)
		}
		if !stillNamed(f) {
			t.Fatalf("CreateHeld returned %s, which a sweep removed", f.Name())
		}
		// Done with it, as writeAtomic is: renamed (here: removed) while held.
		os.Remove(f.Name())
		f.Close()
	}
	t.Logf("%d files swept in their window", swept.Load())
}
