//go:build linux && (amd64 || arm64)

package epollrelay

import (
	"fmt"
	"syscall"
	"time"
	"unsafe"
)

// The engine enforces an upstream socket's TCP_USER_TIMEOUT itself: set in
// the kernel, it also cuts a database that is alive but has stopped reading
// (a zero window: LOAD DATA LOCAL INFILE while the server waits on a lock),
// since Linux 5.11 counts it from the first window probe even when every
// probe is answered. The loop cuts only a peer that has gone silent.

// tcpUserTimeout is TCP_USER_TIMEOUT (linux/tcp.h), which package syscall
// defines only for some architectures.
const tcpUserTimeout = 0x12

// windowSilenceLimit is how long a peer that has closed its window may go
// unheard before it is taken for gone: window probes back off to one
// every TCP_RTO_MAX (120 s), and only their answers are heard meanwhile,
// so three times that lets one probe or answer be lost. (The kernel's own
// limit, tcp_rtx_probe0_timed_out, is twice.)
const windowSilenceLimit = 360 * time.Second

// tcpInfo is the head of the kernel's struct tcp_info (linux/tcp.h), up to
// tcpi_snd_wnd (Linux 5.4); package syscall's TCPInfo stops before
// tcpi_notsent_bytes. Only the fields the stall check reads are named.
type tcpInfo struct {
	_            [24]byte // state … rcv_mss
	unacked      uint32   // segments sent and not acknowledged
	_            [16]byte // sacked … fackets
	_            uint32   // last_data_sent
	_            uint32   // last_ack_sent
	lastDataRecv uint32   // ms since data was last received
	lastAckRecv  uint32   // ms since an acknowledgement was last received
	_            [84]byte // pmtu … segs_in
	notsentBytes uint32   // bytes written and not yet sent (Linux 4.6)
	_            [80]byte // min_rtt … rcv_ooopack
	sndWnd       uint32   // the peer's advertised window, bytes (Linux 5.4)
}

// tcpInfoSndWndEnd is how many bytes the kernel must fill for sndWnd to be known.
const tcpInfoSndWndEnd = int(unsafe.Offsetof(tcpInfo{}.sndWnd)) + 4

// readTCPInfo reads fd's tcp_info; wnd is false on kernels too old to
// report the peer's window.
func readTCPInfo(fd int) (ti tcpInfo, wnd bool, errno syscall.Errno) {
	n := uint32(unsafe.Sizeof(ti))
	_, _, e := syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&ti)), uintptr(unsafe.Pointer(&n)), 0)
	return ti, int(n) >= tcpInfoSndWndEnd, e
}

// takeUserTimeout reads fd's TCP_USER_TIMEOUT and, if one is set, clears
// it so that the loop enforces it instead. It returns 0 when none is set or
// the kernel refuses either call (the kernel then keeps enforcing its own).
func takeUserTimeout(fd int) time.Duration {
	ms, err := syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, tcpUserTimeout)
	if err != nil || ms <= 0 {
		return 0
	}
	if syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, tcpUserTimeout, 0) != nil {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

// silentPeer reports why a socket whose user timeout is bound has a gone
// peer, or "" while it has not: data is waiting to be sent or acknowledged,
// and nothing (no acknowledgement, no data) has been heard for bound, or,
// when the peer's closed window holds the data back, for
// windowSilenceLimit. A socket with nothing waiting is keepalive's to judge.
func silentPeer(ti tcpInfo, wnd bool, bound time.Duration) string {
	if ti.unacked == 0 && ti.notsentBytes == 0 {
		return ""
	}
	limit := bound
	// Data waiting with none in flight is held back by the window, whatever
	// its size: the kernel probes it, backing off, as for a closed one.
	if (wnd && ti.sndWnd == 0) || (ti.unacked == 0 && ti.notsentBytes > 0) {
		limit = max(bound, windowSilenceLimit)
	}
	heard := time.Duration(min(ti.lastAckRecv, ti.lastDataRecv)) * time.Millisecond
	if heard < limit {
		return ""
	}
	return fmt.Sprintf("nothing heard for %s with data waiting to be sent or acknowledged (TCP_USER_TIMEOUT %s, enforced by the event loop)",
		heard.Round(time.Millisecond), bound)
}

// stallPeriod is how often pairs with a user timeout are checked: a silent
// peer is cut between bound and bound*9/8 after it was last heard.
func stallPeriod(bound int64) int64 {
	return max(bound/8, int64(100*time.Millisecond))
}

// checkStall cuts p if its upstream has gone silent. Pairs whose upstream
// was read within half the bound are not asked (a peer heard then cannot
// have been silent for the bound; bytes sent to it prove nothing), nor are
// pairs found with nothing waiting whose upstream has not been sent
// anything since.
func (l *loop) checkStall(p *pair) {
	if l.now-p.u.heard < p.stall/2 || (p.last == p.calmAt && p.toU.eof == p.calmEOF) {
		return
	}
	ti, wnd, e := readTCPInfo(p.u.fd)
	if e != 0 {
		return // the socket's own error ends the pair through epoll
	}
	if ti.unacked == 0 && ti.notsentBytes == 0 {
		p.calmAt, p.calmEOF = p.last, p.toU.eof
		return
	}
	if why := silentPeer(ti, wnd, time.Duration(p.stall)); why != "" {
		l.finish(p, p.u.side, fmt.Errorf("upstream: %s: %w", why, syscall.ETIMEDOUT))
	}
}
