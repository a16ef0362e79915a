//go:build linux

package ci

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/example/sidecar/ci/tmpdir"
)

// OCI_TARBALL on another filesystem than the export is a copy; the file
// must come out as a rename leaves it: same content, same permissions
// (CreateTemp's 0600 made it unreadable to the CI job's other users).
func TestMoveFileAcrossFilesystems(t *testing.T) {
	src := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(src, []byte("layout"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640} {
		if err := os.Chmod(src, mode); err != nil {
			t.Fatal(err)
		}
		other, err := os.MkdirTemp("/dev/shm", "movefile-")
		if err != nil {
			t.Skipf("no /dev/shm to copy to: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(other) })
		if sameDevice(t, src, other) {
			t.Skipf("%s and %s are one filesystem: a rename, no copy", src, other)
		}
		from := filepath.Join(filepath.Dir(src), "copy-"+mode.String())
		if err := os.Link(src, from); err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(other, "sidecar.tar")
		if err := moveFile(context.Background(), from, to); err != nil {
			t.Fatalf("moveFile: %v", err)
		}
		st, err := os.Stat(to)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(to); string(got) != "layout" || st.Mode().Perm() != mode {
			t.Errorf("copied %q with mode %v, want %q with %v", got, st.Mode().Perm(), "layout", mode)
		}
		if left, _ := filepath.Glob(filepath.Join(other, ".*")); len(left) != 0 {
			t.Errorf("left behind: %v", left)
		}
	}
}

func sameDevice(t *testing.T, a, b string) bool {
	t.Helper()
	var sa, sb syscall.Stat_t
	if err := syscall.Stat(a, &sa); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(b, &sb); err != nil {
		t.Fatal(err)
	}
	return sa.Dev == sb.Dev
}

// A copy to OCI_TARBALL that the run's context stops (Ctrl-C) ends within
// a chunk, saying so, and leaves nothing in the directory: no file under
// the asked-for name, no temporary file beside it.
func TestWriteAtomicInterrupted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sidecar.tar")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The image is three chunks; the run is stopped as the first is read.
	image := &cancelAfterFirstRead{r: io.LimitReader(zeros{}, 3*copyChunk), cancel: cancel}
	err := writeAtomic(ctx, path, 0o644, image)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "copy to "+path+" interrupted") {
		t.Errorf("err = %v, want the copy to %s interrupted, a context.Canceled", err, path)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left in %s: %v", dir, left)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type cancelAfterFirstRead struct {
	r      io.Reader
	cancel func()
}

func (c *cancelAfterFirstRead) Read(p []byte) (int, error) {
	defer c.cancel()
	return c.r.Read(p)
}

// A run's copy to OCI_TARBALL holds its partial file until it takes the
// name: another run's sweep during the copy leaves it (and the copy
// completes).
func TestWriteAtomicHoldsItsPartialFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sidecar.tar")
	var swept []string
	var sweepErr error
	image := &onFirstRead{r: io.LimitReader(zeros{}, 2*copyChunk), fn: func() {
		swept, sweepErr = tmpdir.SweepFiles(dir, partialPattern(path))
	}}
	if err := writeAtomic(context.Background(), path, 0o644, image); err != nil {
		t.Fatalf("writeAtomic with a sweep during the copy: %v", err)
	}
	if len(swept) != 0 || sweepErr != nil {
		t.Errorf("a sweep during the copy removed %v (%v)", swept, sweepErr)
	}
	if st, err := os.Stat(path); err != nil || st.Size() != 2*copyChunk {
		t.Errorf("%s: %v, want %d bytes", path, err, 2*copyChunk)
	}
}

type onFirstRead struct {
	r  io.Reader
	fn func()
}

func (o *onFirstRead) Read(p []byte) (int, error) {
	if o.fn != nil {
		o.fn()
		o.fn = nil
	}
	return o.r.Read(p)
}
