//go:build unix

package tmpdir

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A file CreateHeld could not lock (ENOLCK: an NFS lock daemon away, the
// kernel out of lock records) is held by nothing, yet a later sweep where
// locks work would take it: it gets a name no sweep removes.
func TestCreateHeldUnlockedIsNeverSwept(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const pattern = ".sidecar.tar.partial-*"
	f, err := createHeld(dir, pattern, func(*os.File) error { return syscall.ENOLCK })
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if removed, err := SweepFiles(dir, pattern); err != nil || len(removed) > 0 || !exists(f.Name()) {
		t.Errorf("SweepFiles removed %v (%v), the file of a copy still going (%s still there: %v)", removed, err, f.Name(), exists(f.Name()))
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in %s, want the one returned", len(entries), dir)
	}
}

// What SweepFiles listed as a regular file may be another by the time it
// opens it (a user sharing the directory): a FIFO, whose plain open would
// wait for a writer for ever, or a symlink. Either is left alone.
func TestSweepFileLeavesWhatIsNoFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, ".sidecar.tar.partial-1")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "sidecar.tar")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, ".sidecar.tar.partial-2")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, link} {
		done := make(chan bool, 1)
		go func() {
			ok, _ := sweepFile(path)
			done <- ok
		}()
		select {
		case ok := <-done:
			if _, err := os.Lstat(path); ok || err != nil {
				t.Errorf("sweepFile(%s) = %v (still there: %v), want it left", path, ok, err)
			}
		case <-time.After(30 * time.Second): // a hang guard, not a speed check
			t.Fatalf("sweepFile(%s) has not returned: it waits on the FIFO", path)
		}
	}
}
