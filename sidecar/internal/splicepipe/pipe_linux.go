package splicepipe

import "syscall"

// Size is the capacity New asks for: like Go's own splice path, big enough
// that one splice moves up to 1 MiB (pages are only held while used).
const Size = 1 << 20

// defaultSize is what a pipe holds when the kernel refuses Size and will
// not say what it holds.
const defaultSize = 64 << 10

// Flags are the splice flags for moving through the pipe:
// SPLICE_F_MOVE | SPLICE_F_NONBLOCK, so no call ever blocks on the pipe.
const Flags = 0x1 | 0x2

// New returns a non-blocking, close-on-exec pipe (read end, write end) and
// its capacity: each splice into it should move at most size bytes, so the
// pipe is drained before the next read. The caller closes both ends.
func New() (r, w, size int, err error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		return -1, -1, 0, err
	}
	// Refused above fs.pipe-max-size, or once the user's pipes pass
	// fs.pipe-user-pages-soft, when new pipes hold only 8 KiB: ask.
	n, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(p[1]), syscall.F_SETPIPE_SZ, Size)
	if e != 0 {
		n, _, e = syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(p[1]), syscall.F_GETPIPE_SZ, 0)
	}
	size = defaultSize
	if e == 0 && n > 0 {
		size = int(n)
	}
	return p[0], p[1], size, nil
}
