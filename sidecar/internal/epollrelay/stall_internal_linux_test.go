//go:build linux && (amd64 || arm64)

package epollrelay

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
)

func TestSilentPeer(t *testing.T) {
	const bound = 60 * time.Second
	ms := func(d time.Duration) uint32 { return uint32(d.Milliseconds()) }
	tests := []struct {
		name string
		ti   tcpInfo
		wnd  bool
		cut  bool
	}{
		{"nothing waiting, long silent: keepalive's to judge", tcpInfo{lastAckRecv: ms(time.Hour), lastDataRecv: ms(time.Hour), sndWnd: 1 << 16}, true, false},
		{"unacknowledged, silent for the bound", tcpInfo{unacked: 1, lastAckRecv: ms(bound), lastDataRecv: ms(bound), sndWnd: 1 << 16}, true, true},
		{"unacknowledged, silent just under the bound", tcpInfo{unacked: 1, lastAckRecv: ms(bound - time.Millisecond), lastDataRecv: ms(time.Hour), sndWnd: 1 << 16}, true, false},
		{"unacknowledged, acks stale but data heard", tcpInfo{unacked: 1, lastAckRecv: ms(time.Hour), lastDataRecv: ms(time.Second), sndWnd: 1 << 16}, true, false},
		{"unsent and in flight, silent past the bound", tcpInfo{unacked: 3, notsentBytes: 1 << 20, lastAckRecv: ms(2 * bound), lastDataRecv: ms(2 * bound), sndWnd: 1 << 16}, true, true},
		{"closed window, silent past the bound: probes back off", tcpInfo{unacked: 1, notsentBytes: 1 << 20, lastAckRecv: ms(300 * time.Second), lastDataRecv: ms(time.Hour)}, true, false},
		{"closed window, silent for 360 s", tcpInfo{unacked: 1, notsentBytes: 1 << 20, lastAckRecv: ms(windowSilenceLimit), lastDataRecv: ms(time.Hour)}, true, true},
		{"held back by a small window, nothing in flight", tcpInfo{notsentBytes: 100, lastAckRecv: ms(200 * time.Second), lastDataRecv: ms(time.Hour), sndWnd: 10}, true, false},
		{"old kernel, nothing in flight: held back by the window", tcpInfo{notsentBytes: 100, lastAckRecv: ms(200 * time.Second), lastDataRecv: ms(time.Hour)}, false, false},
		{"old kernel, in flight and silent for the bound", tcpInfo{unacked: 1, lastAckRecv: ms(bound), lastDataRecv: ms(bound)}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			why := silentPeer(tt.ti, tt.wnd, bound)
			if (why != "") != tt.cut {
				t.Fatalf("silentPeer = %q, want cut %v", why, tt.cut)
			}
			if tt.cut && !strings.Contains(why, "TCP_USER_TIMEOUT 1m0s") {
				t.Errorf("reason %q does not name the timeout", why)
			}
		})
	}
}

// readTCPInfo reads what the kernel reports, at the offsets linux/tcp.h
// gives: a sender whose peer reads nothing has bytes unsent and sees a
// closed window; one whose bytes were read has nothing waiting.
func TestReadTCPInfo(t *testing.T) {
	ln := testkit.Listen(t)
	sender, receiver := testkit.Pair(t, ln)
	_ = receiver.SetReadBuffer(16 << 10)
	fd, err := dupConn(sender)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	ti, wnd, e := readTCPInfo(fd)
	if e != 0 || !wnd {
		t.Fatalf("readTCPInfo: errno %v, window known %v (this kernel reports tcpi_snd_wnd)", e, wnd)
	}
	if ti.unacked != 0 || ti.notsentBytes != 0 || ti.sndWnd == 0 {
		t.Fatalf("fresh connection: %+v, want nothing waiting and an open window", ti)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, e := sysSend(fd, chunk); e == syscall.EAGAIN {
			break
		} else if e != 0 {
			t.Fatalf("send: %v", e)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ti, _, _ = readTCPInfo(fd)
		if ti.sndWnd == 0 && ti.notsentBytes > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer not reading: %+v, want unsent bytes and a closed window", ti)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ti.lastAckRecv > 5000 || ti.lastDataRecv < ti.lastAckRecv {
		t.Errorf("times %+v: want an acknowledgement heard within the test, before any data", ti)
	}
}
