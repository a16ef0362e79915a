//go:build unix

package testkit

import (
	"syscall"
	"testing"
)

// A test that ends before it calls restore (a t.Fatal while the limit is
// low) still gets the limit back: left low, every later test in the
// process fails to open a socket, hiding the first failure.
func TestNoNewFDsRestoresWhenTheTestEnds(t *testing.T) {
	var before, after syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &before); err != nil {
		t.Fatal(err)
	}
	t.Run("ends before restoring", func(t *testing.T) {
		_ = NoNewFDs(t) // restore is not called, as after a t.Fatal
	})
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &after); err != nil {
		t.Fatal(err)
	}
	if after.Cur != before.Cur {
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &before)
		t.Errorf("open-files limit %d after the test ended, want %d back", after.Cur, before.Cur)
	}
}

// Within the window no descriptor can be made, and restore allows them again.
func TestNoNewFDs(t *testing.T) {
	restore := NoNewFDs(t)
	fd, err := syscall.Dup(0)
	restore()
	if err == nil {
		_ = syscall.Close(fd)
		t.Fatal("a descriptor was made under NoNewFDs")
	}
	if err != syscall.EMFILE {
		t.Fatalf("dup under NoNewFDs: %v, want EMFILE", err)
	}
	fd, err = syscall.Dup(0)
	if err != nil {
		t.Fatalf("dup after restore: %v", err)
	}
	_ = syscall.Close(fd)
}
