//go:build unix

package proxy

import (
	"errors"
	"syscall"
)

// peek looks at fd without consuming or blocking: gone on EOF or an
// error (ECONNRESET, ETIMEDOUT, …), wait when nothing has arrived yet.
// Data, or an interrupted peek, is neither: the client is there.
func peek(fd int) (gone, wait bool) {
	var b [1]byte
	n, _, err := syscall.Recvfrom(fd, b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == nil:
		return n == 0, false
	case errors.Is(err, syscall.EAGAIN):
		return false, true
	case errors.Is(err, syscall.EINTR):
		return false, false
	default:
		return true, false
	}
}
