package relay

import (
	"net"
	"os"
	"sync"
	"syscall"

	"github.com/example/sidecar/sidecar/internal/splicepipe"
)

// bufSize is the largest read of a direction that copies through user
// space; a read that fills it marks bulk data, which is spliced.
const bufSize = 32 << 10

// bufs holds the read buffers: a direction takes one only once its socket
// has bytes to read, so idle connections hold none.
var bufs = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// liveCopy moves src to dst, adding each chunk to live once delivered (io.Copy
// reports only at the end). Small messages (queries, most results) are read
// into a pooled buffer and written on. A read that fills the buffer means
// bulk data: the direction then splices (zero copy) through a pipe of its
// own, until a splice moves a small chunk, when the pipe is closed again.
//
// Descriptors: a relayed connection holds its two sockets, plus a pipe (two
// descriptors) only while a direction carries bulk data: 2 for an idle or
// chatty database connection, 6 at most. A pipe per direction for the
// connection's whole life would make it 6 always.
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
	var total int64
	for {
		n, full, err := copyChunk(srcRaw, dst, live)
		total += n
		if err != nil || (n == 0 && !full) {
			return total, err // EOF when err is nil
		}
		if !full {
			continue
		}
		m, eof, err := spliceBurst(srcRaw, dstRaw, live)
		total += m
		if err != nil || eof {
			return total, err
		}
	}
}

// copyChunk reads what src has, once, into a pooled buffer and writes it
// to dst. n == 0 and !full is EOF; full says the read filled the buffer.
func copyChunk(srcRaw syscall.RawConn, dst *net.TCPConn, live counts) (n int64, full bool, err error) {
	var bp *[]byte
	var got int
	var rerr error
	err = srcRaw.Read(func(fd uintptr) bool {
		if bp == nil {
			bp = bufs.Get().(*[]byte)
		}
		for {
			got, rerr = syscall.Read(int(fd), *bp)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			bufs.Put(bp) // nothing yet: wait without holding a buffer
			bp = nil
			return false
		}
		return true
	})
	if bp != nil {
		defer bufs.Put(bp)
	}
	if err != nil {
		return 0, false, err
	}
	if rerr != nil {
		return 0, false, os.NewSyscallError("read", rerr)
	}
	if got == 0 {
		return 0, false, nil
	}
	live.begin()
	m, err := dst.Write((*bp)[:got])
	live.done()
	live.add(int64(m))
	return int64(m), got == bufSize && err == nil, err
}

// spliceBurst moves bulk data from src to dst through a new pipe until a
// splice moves less than a quarter of the buffer size or of the pipe's,
// whichever is smaller (the burst is over),
// then closes the pipe. If no pipe is to be had (out of descriptors), it
// moves nothing: the caller keeps copying.
func spliceBurst(srcRaw, dstRaw syscall.RawConn, live counts) (m int64, eof bool, err error) {
	pr, pw, chunk, err := splicepipe.New()
	if err != nil {
		return 0, false, nil
	}
	defer syscall.Close(pr)
	defer syscall.Close(pw)
	return splicePipe(srcRaw, dstRaw, pr, pw, chunk, live)
}

// splicePipe is spliceBurst's loop through the pipe pr, pw, which holds
// chunk bytes.
func splicePipe(srcRaw, dstRaw syscall.RawConn, pr, pw, chunk int, live counts) (m int64, eof bool, err error) {
	for {
		// Each splice moves at most what the pipe holds (chunk), so the
		// pipe is always drained before the next read.
		n, err := spliceOnce(srcRaw.Read, -1, pw, chunk)
		if err != nil || n == 0 {
			return m, n == 0 && err == nil, err
		}
		for left := n; left > 0; {
			live.begin()
			k, err := spliceOnce(dstRaw.Write, pr, -1, left)
			live.done()
			if err != nil {
				return m, false, err
			}
			if k == 0 {
				return m, false, os.NewSyscallError("splice", syscall.EPIPE)
			}
			left -= k
			m += int64(k)
			live.add(int64(k))
		}
		// Small is judged against what the pipe holds too: past
		// fs.pipe-user-pages-soft the kernel gives 8 KiB pipes (two page
		// slots), whose splices move two segments' worth, under a quarter
		// of the buffer, while bulk data flows.
		if n < min(bufSize, chunk)/4 {
			return m, false, nil
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
