package relay

import (
	"net"
	"syscall"
	"unsafe"
)

// The kernel's TCP states (include/net/tcp_states.h) that tell how far a
// peer has gone. A reset moves a socket to tcpClose.
const (
	tcpTimeWait  = 6
	tcpClose     = 7
	tcpCloseWait = 8
	tcpLastAck   = 9
	tcpClosing   = 11
)

// onFD runs f on c's descriptor; false if there is none.
func onFD(c *net.TCPConn, f func(fd int) bool) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	res := false
	_ = raw.Control(func(fd uintptr) { res = f(int(fd)) })
	return res
}

// tcpState is fd's TCP state, or 0 if the kernel does not say.
func tcpState(fd int) uint8 {
	// The kernel copies as much of struct tcp_info as asked for, and
	// tcpi_state is its first byte; GetsockoptInt asks for 4 bytes and
	// works on every Linux architecture (386 has no getsockopt syscall
	// number, only socketcall).
	v, err := syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_INFO)
	if err != nil {
		return 0
	}
	head := int32(v) // the 4 bytes as the kernel wrote them
	return *(*uint8)(unsafe.Pointer(&head))
}

// finIn reports whether a socket in state has its peer's FIN, read by the
// data path or not.
func finIn(state uint8) bool {
	switch state {
	case tcpCloseWait, tcpLastAck, tcpClosing, tcpTimeWait:
		return true
	}
	return false
}

// finArrived reports whether fd's peer has sent its FIN.
func finArrived(fd int) bool { return finIn(tcpState(fd)) }

// PeerEnded reports whether fd's peer has ended its side, by FIN or reset,
// whether or not the data path has read that yet: which peer ended first
// is what reached the sidecar first, not what its scheduling took up
// first.
func PeerEnded(fd int) bool {
	state := tcpState(fd)
	return finIn(state) || state == tcpClose
}

// PeerDone reports whether fd's peer has sent its FIN and every byte
// before it has been read: it has nothing more to say, though the data
// path may not have taken up its EOF yet (Settle).
func PeerDone(fd int) bool {
	if !finArrived(fd) { // also keeps the peek below from taking a reset's error
		return false
	}
	var b [1]byte
	n, _, err := syscall.Recvfrom(fd, b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err == nil && n == 0 // at EOF: nothing unread before the FIN
}

// PeerReset reports whether fd's peer has reset the connection (a socket
// this side has not shut down is in TCP_CLOSE only then), without reading:
// a read, even a peek, takes the reset's error, and the next read returns
// a bare EOF, as if the peer had closed cleanly.
func PeerReset(fd int) bool { return tcpState(fd) == tcpClose }

// resetErr is c's pending error if the kernel has torn c down (TCP_CLOSE),
// taking it; nil otherwise. A socket this side shut down also ends in
// TCP_CLOSE once its peer closes too, with no error: that is no reset.
// Only for a socket nothing else reads meanwhile (Stuck), since a read
// after this gets a bare EOF.
func resetErr(c *net.TCPConn) error {
	var errno syscall.Errno
	onFD(c, func(fd int) bool {
		if tcpState(fd) == tcpClose {
			if v, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ERROR); err == nil {
				errno = syscall.Errno(v)
			}
		}
		return false
	})
	if errno == 0 {
		return nil
	}
	return errno
}
