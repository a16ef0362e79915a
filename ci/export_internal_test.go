//go:build linux

package ci

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
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
		if err := moveFile(from, to); err != nil {
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
