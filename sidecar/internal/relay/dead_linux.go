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

// ResetPending reports whether fd's connection has been torn down
// (TCP_CLOSE) with an error pending, without taking the error: poll
// reports POLLERR while the socket holds one, where SO_ERROR, like a
// read, would take it and leave a reader of the socket a bare EOF. A
// socket this side shut down also ends in TCP_CLOSE once its peer closes
// too, with no error: that is no reset.
func ResetPending(fd int) bool {
	if tcpState(fd) != tcpClose {
		return false
	}
	pfd := pollFd{fd: int32(fd)} // no events asked: POLLERR comes regardless
	var zero syscall.Timespec    // poll once, without waiting
	for {
		// ppoll: arm64 has no poll syscall.
		n, _, e := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
		switch {
		case e == syscall.EINTR:
			continue
		case e != 0 || n == 0:
			return false
		}
		return pfd.revents&pollErr != 0
	}
}

// pollFd is struct pollfd; pollErr is POLLERR.
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

const pollErr = 0x8

// resetErr is ECONNRESET if c's connection has been torn down with an
// error pending (ResetPending), nil otherwise. The error itself stays for
// whatever reads c, which may be another goroutine (an IAM session's
// pumps share each socket); unread, it is named as its most common cause,
// a reset (a retransmission or keepalive timeout, ETIMEDOUT, is named so
// too).
func resetErr(c *net.TCPConn) error {
	if onFD(c, ResetPending) {
		return syscall.ECONNRESET
	}
	return nil
}
