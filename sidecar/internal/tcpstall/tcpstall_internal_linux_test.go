//go:build linux && (amd64 || arm64)

package tcpstall

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
)

func TestSilent(t *testing.T) {
	const bound = 60 * time.Second
	ms := func(d time.Duration) uint32 { return uint32(d.Milliseconds()) }
	tests := []struct {
		name string
		ti   tcpInfo
		wnd  bool
		cut  bool
	}{
		{"unacknowledged, silent for the bound", tcpInfo{unacked: 1, lastAckRecv: ms(bound), lastDataRecv: ms(bound), sndWnd: 1 << 16}, true, true},
		{"unacknowledged, silent just under the bound", tcpInfo{unacked: 1, lastAckRecv: ms(bound - time.Millisecond), lastDataRecv: ms(time.Hour), sndWnd: 1 << 16}, true, false},
		{"unacknowledged, acks stale but data heard", tcpInfo{unacked: 1, lastAckRecv: ms(time.Hour), lastDataRecv: ms(time.Second), sndWnd: 1 << 16}, true, false},
		{"unsent and in flight, silent past the bound", tcpInfo{unacked: 3, notsentBytes: 1 << 20, lastAckRecv: ms(2 * bound), lastDataRecv: ms(2 * bound), sndWnd: 1 << 16}, true, true},
		{"closed window, silent past the bound: probes back off", tcpInfo{unacked: 1, notsentBytes: 1 << 20, lastAckRecv: ms(300 * time.Second), lastDataRecv: ms(time.Hour)}, true, false},
		{"closed window, silent for WindowSilence", tcpInfo{unacked: 1, notsentBytes: 1 << 20, lastAckRecv: ms(WindowSilence), lastDataRecv: ms(time.Hour)}, true, true},
		{"held back by a small window, nothing in flight", tcpInfo{notsentBytes: 100, lastAckRecv: ms(300 * time.Second), lastDataRecv: ms(time.Hour), sndWnd: 10}, true, false},
		{"old kernel, nothing in flight: held back by the window", tcpInfo{notsentBytes: 100, lastAckRecv: ms(300 * time.Second), lastDataRecv: ms(time.Hour)}, false, false},
		{"old kernel, in flight and silent for the bound", tcpInfo{unacked: 1, lastAckRecv: ms(bound), lastDataRecv: ms(bound)}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			why := silent(tt.ti, tt.wnd, bound)
			if (why != "") != tt.cut {
				t.Fatalf("silent = %q, want cut %v", why, tt.cut)
			}
			if tt.cut && !strings.Contains(why, "TCP_USER_TIMEOUT 1m0s") {
				t.Errorf("reason %q does not name the timeout", why)
			}
		})
	}
}

// withFD runs f on c's descriptor.
func withFD(t *testing.T, c *net.TCPConn, f func(fd int)) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(fd uintptr) { f(int(fd)) }); err != nil {
		t.Fatal(err)
	}
}

// readInfo reads what the kernel reports, at the offsets linux/tcp.h gives,
// and Check reads it right: a fresh connection is calm; a sender whose peer
// reads nothing has bytes unsent and sees a closed window, and is neither
// calm nor cut, since the peer answers.
func TestReadInfoAndCheck(t *testing.T) {
	ln := testkit.Listen(t)
	sender, receiver := testkit.Pair(t, ln)
	_ = receiver.SetReadBuffer(16 << 10)
	withFD(t, sender, func(fd int) {
		ti, wnd, e := readInfo(fd)
		if e != 0 || !wnd {
			t.Fatalf("readInfo: errno %v, window known %v (this kernel reports tcpi_snd_wnd)", e, wnd)
		}
		if ti.unacked != 0 || ti.notsentBytes != 0 || ti.sndWnd == 0 {
			t.Fatalf("fresh connection: %+v, want nothing waiting and an open window", ti)
		}
		if calm, err := Check(fd, time.Second); !calm || err != nil {
			t.Fatalf("Check on a fresh connection = %v, %v; want calm", calm, err)
		}
	})
	// Each write ends at its deadline, the peer reading nothing. On a
	// loaded machine one can end before it sent a byte, so they go on
	// until the window is closed.
	fill := make([]byte, 64<<20)
	var ti tcpInfo
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_ = sender.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := sender.Write(fill); !errors.Is(err, syscall.EAGAIN) && !isTimeout(err) {
			t.Fatalf("filling the window: %v, want a timeout", err)
		}
		withFD(t, sender, func(fd int) { ti, _, _ = readInfo(fd) })
		if ti.sndWnd == 0 && ti.notsentBytes > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer not reading: %+v, want unsent bytes and a closed window", ti)
		}
	}
	if ti.lastAckRecv > 5000 || ti.lastDataRecv < ti.lastAckRecv {
		t.Errorf("times %+v: want an acknowledgement heard within the test, more recent than any data", ti)
	}
	withFD(t, sender, func(fd int) {
		if calm, err := Check(fd, time.Second); calm || err != nil {
			t.Errorf("Check on a closed window = %v, %v; want neither calm nor cut", calm, err)
		}
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Watch takes the timeout from the kernel (or leaves a socket without one
// alone), and a calm connection is never cut.
func TestWatch(t *testing.T) {
	ln := testkit.Listen(t)
	for _, ms := range []int{0, 200} {
		c, _ := testkit.Pair(t, ln)
		withFD(t, c, func(fd int) {
			if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, tcpUserTimeout, ms); err != nil {
				t.Fatal(err)
			}
		})
		cut := make(chan error, 1)
		stop := Watch(c, func(err error) { cut <- err })
		withFD(t, c, func(fd int) {
			if got, _ := syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, tcpUserTimeout); got != 0 {
				t.Errorf("TCP_USER_TIMEOUT %d ms: %d ms left in the kernel after Watch, want 0", ms, got)
			}
		})
		select {
		case err := <-cut:
			t.Errorf("TCP_USER_TIMEOUT %d ms: a calm connection was cut: %v", ms, err)
		case <-time.After(time.Second): // five periods of a 200 ms timeout
		}
		stop()
	}
}
