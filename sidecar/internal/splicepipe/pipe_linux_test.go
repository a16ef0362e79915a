package splicepipe

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// New's pipe is what the splicers rely on: non-blocking (a splice into a
// full pipe returns EAGAIN instead of hanging the loop), close-on-exec, and
// as large as it reports.
func TestNew(t *testing.T) {
	r, w, size, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(r)
	defer syscall.Close(w)
	if size < defaultSize || size > Size {
		t.Errorf("size %d, want between %d and %d", size, defaultSize, Size)
	}
	got, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(w), syscall.F_GETPIPE_SZ, 0)
	if e != 0 {
		t.Fatal(e)
	}
	if int(got) != size {
		t.Errorf("pipe holds %d bytes, New reported %d", got, size)
	}
	for name, fd := range map[string]int{"read end": r, "write end": w} {
		fl, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFL, 0)
		if e != 0 {
			t.Fatal(e)
		}
		if fl&syscall.O_NONBLOCK == 0 {
			t.Errorf("%s is blocking", name)
		}
		fdfl, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
		if e != 0 {
			t.Fatal(e)
		}
		if fdfl&syscall.FD_CLOEXEC == 0 {
			t.Errorf("%s is not close-on-exec", name)
		}
	}
	// Filled to size, the pipe takes no more and says so at once.
	buf := make([]byte, size)
	if n, err := syscall.Write(w, buf); err != nil || n != size {
		t.Fatalf("fill: %d, %v; want %d", n, err, size)
	}
	if _, err := syscall.Write(w, buf[:1]); err != syscall.EAGAIN {
		t.Errorf("write to a full pipe: %v, want EAGAIN", err)
	}
}

// Past fs.pipe-user-pages-soft (64 MiB of pipes per user by default), the
// kernel refuses to grow an unprivileged user's new pipes and they hold
// 8 KiB: New must report what they hold, not what it assumes. Run in a
// child as a user of its own, since root is exempt.
func TestNewPastTheUserPipeLimit(t *testing.T) {
	if os.Getenv("SPLICEPIPE_CHILD") == "1" {
		var fds []int
		defer func() {
			for _, fd := range fds {
				syscall.Close(fd)
			}
		}()
		small := 0
		for i := range 100 {
			r, w, size, err := New()
			if err != nil {
				t.Fatal(err)
			}
			fds = append(fds, r, w)
			got, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(w), syscall.F_GETPIPE_SZ, 0)
			if e != 0 {
				t.Fatal(e)
			}
			if int(got) != size {
				t.Fatalf("pipe %d holds %d bytes, New reported %d", i, got, size)
			}
			if size < Size {
				small++
			}
		}
		if small == 0 {
			t.Fatal("every pipe got its full size: the user's pipe limit was never reached")
		}
		return
	}
	if os.Getuid() != 0 {
		t.Skip("needs root, to run a child as a user of its own")
	}
	// A copy the other user may run: the build's directory is root's alone.
	dir, err := os.MkdirTemp("", "splicepipe") // t.TempDir's parent is root's alone too
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	bin := filepath.Join(dir, "splicepipe.test")
	b, err := os.ReadFile(os.Args[0])
	if err == nil {
		err = os.WriteFile(bin, b, 0o755)
	}
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestNewPastTheUserPipeLimit$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SPLICEPIPE_CHILD=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 54321, Gid: 54321}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
