//go:build linux && (amd64 || arm64)

package tcpstall

import (
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Supported says this build enforces timeouts itself; where it does not,
// Take leaves them to the kernel.
const Supported = true

// tcpInfo is the head of the kernel's struct tcp_info (linux/tcp.h), up to
// tcpi_snd_wnd (Linux 5.4); package syscall's TCPInfo stops before
// tcpi_notsent_bytes. Only the fields the check reads are named.
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

// sndWndEnd is how many bytes the kernel must fill for sndWnd to be known.
const sndWndEnd = int(unsafe.Offsetof(tcpInfo{}.sndWnd)) + 4

// readInfo reads fd's tcp_info; wnd is false on kernels too old to report
// the peer's window. A raw call: event loops make it on their own thread.
func readInfo(fd int) (ti tcpInfo, wnd bool, errno syscall.Errno) {
	n := uint32(unsafe.Sizeof(ti))
	_, _, e := syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&ti)), uintptr(unsafe.Pointer(&n)), 0)
	return ti, int(n) >= sndWndEnd, e
}

// Take reads fd's TCP_USER_TIMEOUT and, if one is set, clears it, so that
// the caller enforces it instead (with Check or Watch). It returns 0 when
// none is set or the kernel refuses either call; the kernel then keeps
// enforcing its own.
func Take(fd int) time.Duration {
	ms, err := syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, tcpUserTimeout)
	if err != nil || ms <= 0 {
		return 0
	}
	if syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, tcpUserTimeout, 0) != nil {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

// Check judges fd once against a user timeout of bound. calm is true when
// nothing waits to be sent or acknowledged (nothing can stall until more
// is written); err is non-nil, wrapping ETIMEDOUT, when the peer has gone
// silent. A socket the kernel cannot describe is neither.
func Check(fd int, bound time.Duration) (calm bool, err error) {
	ti, wnd, e := readInfo(fd)
	if e != 0 {
		return false, nil // the socket's own error ends the connection
	}
	if ti.unacked == 0 && ti.notsentBytes == 0 {
		return true, nil
	}
	if why := silent(ti, wnd, bound); why != "" {
		return false, fmt.Errorf("%s: %w", why, syscall.ETIMEDOUT)
	}
	return false, nil
}

// silent reports why a socket with data waiting has a gone peer, or ""
// while it has not: nothing heard for bound, or for WindowSilence when the
// peer's window holds the data back.
func silent(ti tcpInfo, wnd bool, bound time.Duration) string {
	limit := bound
	// Data waiting with none in flight is held back by the window, whatever
	// its size: the kernel probes it, backing off, as for a closed one.
	if (wnd && ti.sndWnd == 0) || (ti.unacked == 0 && ti.notsentBytes > 0) {
		limit = max(bound, WindowSilence)
	}
	heard := time.Duration(min(ti.lastAckRecv, ti.lastDataRecv)) * time.Millisecond
	if heard < limit {
		return ""
	}
	return fmt.Sprintf("nothing heard for %s with data waiting to be sent or acknowledged (TCP_USER_TIMEOUT %s, enforced by the sidecar)",
		heard.Round(time.Millisecond), bound)
}

// Watch takes c's user timeout (Take) and checks c every Period until
// stop is called or c is closed, calling cut once if its peer goes silent.
// Without a user timeout it does nothing.
func Watch(c *net.TCPConn, cut func(error)) (stop func()) {
	rc, err := c.SyscallConn()
	if err != nil {
		return func() {}
	}
	var bound time.Duration
	if rc.Control(func(fd uintptr) { bound = Take(int(fd)) }) != nil || bound <= 0 {
		return func() {}
	}
	w := &watch{rc: rc, bound: bound, cut: cut}
	w.mu.Lock()
	w.t = time.AfterFunc(Period(bound), w.tick)
	w.mu.Unlock()
	return w.stop
}

// watch is one Watch: a timer that rearms itself until stopped.
type watch struct {
	rc    syscall.RawConn
	bound time.Duration
	cut   func(error)

	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func (w *watch) tick() {
	var err error
	if w.rc.Control(func(fd uintptr) { _, err = Check(int(fd), w.bound) }) != nil {
		return // closed: the connection has ended
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if err != nil {
		w.stopped = true
		go w.cut(err) // not under mu: cut may call stop
		return
	}
	w.t.Reset(Period(w.bound))
}

func (w *watch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.t.Stop()
}
