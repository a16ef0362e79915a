package relay

import (
	"net"
	"syscall"
	"unsafe"
)

// tcpClose is the kernel's TCP_CLOSE state: where a socket goes when its
// peer reset it.
const tcpClose = 7

// socketDead reports whether the kernel has torn the connection down, which
// tells a reset socket from a healthy one after splice failed.
func socketDead(c *net.TCPConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	dead := false
	_ = raw.Control(func(fd uintptr) {
		// The kernel copies as much of struct tcp_info as asked for, and
		// tcpi_state is its first byte; GetsockoptInt asks for 4 bytes and
		// works on every Linux architecture (386 has no getsockopt
		// syscall number, only socketcall).
		v, err := syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO)
		head := int32(v) // the 4 bytes as the kernel wrote them
		dead = err == nil && *(*uint8)(unsafe.Pointer(&head)) == tcpClose
	})
	return dead
}
