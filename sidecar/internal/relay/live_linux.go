package relay

import (
	"io"
	"net"
	"os"
	"syscall"

	"github.com/example/sidecar/sidecar/internal/splicepipe"
)

// liveCopy moves src to dst with splice(2) through a pipe, zero copy like
// io.Copy on Linux, but returns to us after every chunk so each one is
// added to live once delivered (io.Copy's splice reports only at the end).
// Waiting for readiness goes through the runtime's netpoller (RawConn).
func liveCopy(dst, src *net.TCPConn, live counts) (int64, error) {
	srcRaw, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	dstRaw, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	// Each splice moves at most what the pipe holds (chunk), so the pipe is
	// always drained before the next read.
	pr, pw, chunk, err := splicepipe.New()
	if err != nil {
		// Out of descriptors, say: copy through a buffer rather than drop
		// the connection, as io.Copy does when its splice has no pipe.
		return io.Copy(&liveWriter{dst, live}, src)
	}
	defer syscall.Close(pr)
	defer syscall.Close(pw)

	var total int64
	for {
		n, err := spliceOnce(srcRaw.Read, -1, pw, chunk)
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, nil // EOF
		}
		for left := n; left > 0; {
			m, err := spliceOnce(dstRaw.Write, pr, -1, left)
			if err != nil {
				return total, err
			}
			if m == 0 {
				return total, os.NewSyscallError("splice", syscall.EPIPE)
			}
			left -= m
			total += int64(m)
			live.add(int64(m))
		}
	}
}

// spliceOnce runs one splice between the socket behind wait (its RawConn's
// Read or Write, which parks on the netpoller while the socket is not
// ready) and a pipe end; the socket's fd goes where -1 is given.
func spliceOnce(wait func(func(uintptr) bool) error, in, out, max int) (int, error) {
	var n int64
	var serr error
	err := wait(func(fd uintptr) bool {
		rin, rout := in, out
		if rin < 0 {
			rin = int(fd)
		} else {
			rout = int(fd)
		}
		for {
			m, e := syscall.Splice(rin, nil, rout, nil, max, splicepipe.Flags)
			n, serr = int64(m), e // int on some architectures, int64 on others
			if serr != syscall.EINTR {
				break
			}
		}
		return serr != syscall.EAGAIN
	})
	if err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, os.NewSyscallError("splice", serr)
	}
	return int(n), nil
}
