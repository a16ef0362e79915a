package relay

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
)

// The FIN the relay passes on can fail (ENOTCONN) when its receiver was
// reset meanwhile: the reset, not the FIN, says how the session ended,
// once the direction that reads the reset socket reports it. Here the
// client's EOF meets an upstream reset just before, as a server that
// closed on COM_QUIT resets the TLS close_notify that followed it; its
// reader then sees the reset, which after the client's EOF is ReasonDone
// (Settle). The epoll path ignores the FIN's error the same way.
func TestFINToResetPeerIsNotTheEnd(t *testing.T) {
	client, _ := testkit.Pair(t, testkit.Listen(t))
	upstream, server := testkit.Pair(t, testkit.Listen(t))
	r := newCopyRun(client, upstream, 0)
	_ = server.SetLinger(0)
	_ = server.Close() // RST
	for deadline := time.Now().Add(10 * time.Second); !socketDead(upstream); {
		if time.Now().After(deadline) {
			t.Fatal("upstream reset by its peer not reported dead")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.finish(upstream, client, nil) // the client's EOF, passed on to the reset upstream
	if r.ending.Ended() {
		reason, err := r.ending.Result()
		t.Fatalf("the FIN to a reset upstream ended the relay: %q (%v); want the upstream's reader to end it", reason, err)
	}
	r.finish(client, upstream, os.NewSyscallError("read", syscall.ECONNRESET)) // that reader
	if reason, err := r.ending.Result(); reason != ReasonDone || err != nil {
		t.Errorf("Reason %q (Err %v), want %q: the reset followed the client's EOF", reason, err, ReasonDone)
	}
}
