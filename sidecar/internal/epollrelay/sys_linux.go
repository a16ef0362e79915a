//go:build linux && (amd64 || arm64)

package epollrelay

import (
	"net"
	"syscall"
	"unsafe"

	"github.com/example/sidecar/sidecar/internal/splicepipe"
)

// Raw wrappers for the calls the event loop makes on every message. All fds
// here are non-blocking, so RawSyscall is safe and skips the runtime's
// entersyscall/exitsyscall bookkeeping on the hot path.

const (
	efdCloexec  = 0x80000 // EFD_CLOEXEC (== O_CLOEXEC)
	efdNonblock = 0x800   // EFD_NONBLOCK (== O_NONBLOCK)
	msgNosignal = 0x4000  // MSG_NOSIGNAL: EPIPE instead of SIGPIPE
)

func sysRead(fd int, p []byte) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(r), e
}

// sysSend writes with MSG_NOSIGNAL so a reset peer yields EPIPE, never a signal.
func sysSend(fd int, p []byte) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), msgNosignal, 0, 0)
	return int(r), e
}

func sysShutdownWrite(fd int) {
	syscall.RawSyscall(syscall.SYS_SHUTDOWN, uintptr(fd), syscall.SHUT_WR, 0)
}

func epollCtl(epfd, op, fd int, events uint32, gen uint32) syscall.Errno {
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd), Pad: int32(gen)}
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(&ev)), 0, 0)
	return e
}

func newEventfd() (int, error) {
	r, _, e := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, efdCloexec|efdNonblock, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func eventfdSignal(fd int) {
	one := uint64(1)
	syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&one)), 8)
}

func eventfdDrain(fd int) {
	var v uint64
	syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&v)), 8)
}

// soError reads and clears the socket's pending error.
func soError(fd int) syscall.Errno {
	v, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
	if err != nil {
		return err.(syscall.Errno)
	}
	return syscall.Errno(v)
}

// dupConn duplicates c's socket as a close-on-exec, non-blocking fd the
// engine owns; c itself stays open and usable until the caller closes it.
func dupConn(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	err = rc.Control(func(fd uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = e
			return
		}
		nfd = int(r)
	})
	if err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	if err := syscall.SetNonblock(nfd, true); err != nil {
		syscall.Close(nfd)
		return -1, err
	}
	return nfd, nil
}

// sysSplice moves up to n bytes between a socket and a pipe inside the
// kernel, without blocking.
func sysSplice(in, out, n int) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), splicepipe.Flags)
	return int(r), e
}
