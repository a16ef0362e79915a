//go:build unix

package mysqltls

import (
	"io"
	"net"
	"os"
	"syscall"
)

// tcpReady reads what c's socket has, without waiting: RawConn's Read
// waits only when its function asks to.
func tcpReady(c *net.TCPConn) readyFunc {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	return func(p []byte) (int, error) {
		var n int
		var rerr error
		err := raw.Read(func(fd uintptr) bool {
			for {
				n, rerr = syscall.Read(int(fd), p)
				if rerr != syscall.EINTR {
					return true
				}
			}
		})
		switch {
		case err != nil:
			return 0, err
		case rerr == syscall.EAGAIN:
			return 0, nil
		case rerr != nil:
			return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}
