package tcpstall

import (
	"net"
	"syscall"
	"time"
)

// tcpUserTimeout is TCP_USER_TIMEOUT (linux/tcp.h), which package syscall
// defines only for some architectures.
const tcpUserTimeout = 0x12

// Set bounds how long data sent on c may stay unacknowledged before the
// connection is dropped. Keepalive alone never fires while sent data waits
// for an ACK (the kernel retransmits instead, for about 15 minutes), which
// is just when an app waits on a query to a database host that vanished.
// Data paths take the bound over from the kernel (Take), so a live peer
// that stops reading is not cut.
func Set(c *net.TCPConn, d time.Duration) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(d.Milliseconds()))
	}); err != nil {
		return err
	}
	return serr
}
