package splicepipe

import (
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
