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
		var info syscall.TCPInfo
		size := uint32(syscall.SizeofTCPInfo)
		_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&size)), 0)
		dead = errno == 0 && info.State == tcpClose
	})
	return dead
}
