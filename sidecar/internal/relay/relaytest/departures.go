package relaytest

import (
	"context"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/example/sidecar/sidecar/internal/relay"
)

// sessions is how many sessions a case about the order of two peers'
// ends runs: the order the relay sees them in is up to its scheduling, so
// every order must turn up, and each must be classified alike.
const sessions = 200

// errTooMany is a MySQL ERR packet as a server sends it in place of its
// greeting and then closes (1040, Too many connections).
var errTooMany = []byte("\x17\x00\x00\x00\xff\x10\x04Too many connections")

// A client that leaves without sending a byte has left, whatever the
// server did meanwhile: the greeting may have reached the client, reached
// its socket after it closed (a reset or broken pipe on the write), or not
// yet been read from the upstream. ReasonClientGone each time.
func testSilentClientLeaves(t *testing.T, f relay.Func, readGreeting, reset bool) {
	greeting := []byte("greeting")
	for i := range sessions {
		r := Start(t, f, 0)
		if _, err := r.Upstream.Write(greeting); err != nil {
			t.Fatal(err)
		}
		if readGreeting {
			_ = r.Client.SetReadDeadline(time.Now().Add(safety))
			if _, err := io.ReadFull(r.Client, make([]byte, len(greeting))); err != nil {
				t.Fatalf("session %d: greeting: %v", i, err)
			}
		}
		if reset {
			_ = r.Client.SetLinger(0)
		}
		_ = r.Client.Close()
		res := r.Wait(t)
		if res.Reason != relay.ReasonClientGone || res.ToUpstream != 0 || res.Err != nil {
			t.Fatalf("session %d: result %+v; want reason %q, nothing to the upstream, no error", i, res, relay.ReasonClientGone)
		}
		_ = r.Upstream.Close()
	}
}

// A server that refuses the connection in place of its greeting (ERR
// 1040 Too many connections, 1129 Host is blocked) and closes ended the
// session, not the client that read the refusal and then left: eof when
// the client closes, client_error when it resets; never client_gone,
// however soon after the refusal the client leaves.
func testServerRefusesFirst(t *testing.T, f relay.Func, reset bool) {
	want := relay.ReasonDone
	if reset {
		want = relay.ReasonClientError
	}
	for i := range sessions {
		r := Start(t, f, 0)
		if _, err := r.Upstream.Write(errTooMany); err != nil {
			t.Fatal(err)
		}
		_ = r.Upstream.Close()
		_ = r.Client.SetReadDeadline(time.Now().Add(safety))
		if _, err := io.ReadFull(r.Client, make([]byte, len(errTooMany))); err != nil {
			t.Fatalf("session %d: the refusal: %v", i, err)
		}
		if reset {
			_ = r.Client.SetLinger(0)
		}
		_ = r.Client.Close() // at once: the relay may not have passed the server's FIN on yet
		res := r.Wait(t)
		if res.Reason != want || res.ToClient != int64(len(errTooMany)) {
			t.Fatalf("session %d: result %+v; want reason %q and the %d bytes of the refusal", i, res, want, len(errTooMany))
		}
	}
}

// endedBefore is how many sessions testServerEndedBeforeTheRelay runs: a
// data path whose goroutines race (relay.Copy) takes the two ends in
// either order.
const endedBefore = 20

// A server that closed (refusing at once) and a client that left after
// it, both before the relay takes up either: the server ended the
// session, not the client, though a data path may read the client's end
// first (the epoll loop registers the client's socket first, so its
// event comes first in the same epoll_wait). Only the kernel can tell the
// server's FIN had come (relay.PeerEnded): eof when the client closed,
// client_error when it reset, never client_gone.
func testServerEndedBeforeTheRelay(t *testing.T, f relay.Func, reset bool) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux tells a data path of a FIN it has not read (relay.PeerEnded)")
	}
	want := relay.ReasonDone
	if reset {
		want = relay.ReasonClientError
	}
	for i := range endedBefore {
		client, relayClient := Pair(t)
		relayUpstream, upstream := Pair(t)
		_ = upstream.Close()
		waitUntil(t, "the server's FIN", func() bool { return relay.ConnEnded(relayUpstream) })
		if reset {
			_ = client.SetLinger(0)
		}
		_ = client.Close()
		waitUntil(t, "the client's end", func() bool { return relay.ConnEnded(relayClient) })
		done := make(chan relay.Result, 1)
		go runRelay(context.Background(), f, relayClient, relayUpstream, 0, done)
		r := Rig{done: done}
		if res := r.Wait(t); res.Reason != want || res.ToUpstream != 0 || res.ToClient != 0 {
			t.Fatalf("session %d: result %+v; want reason %q and no bytes", i, res, want)
		}
	}
}

// The app sends COM_QUIT and closes; the server reads the COM_QUIT and
// closes with bytes unread (a TLS close_notify the app sent after it),
// which resets. The app's FIN reached the sidecar before the reset, but
// the relay may take up either first: the FIN it passes on then fails
// (ENOTCONN), or the reset is read before the FIN. The app was done each
// time: ReasonDone (relay.Settle).
func testUpstreamResetsOnQuit(t *testing.T, f relay.Func) {
	quit := []byte{1, 0, 0, 0, 1}
	for i := range sessions {
		r := Start(t, f, 0)
		if _, err := r.Client.Write(quit); err != nil {
			t.Fatal(err)
		}
		_ = r.Client.CloseWrite()
		_ = r.Upstream.SetReadDeadline(time.Now().Add(safety))
		if _, err := io.ReadFull(r.Upstream, make([]byte, len(quit))); err != nil {
			t.Fatalf("session %d: COM_QUIT: %v", i, err)
		}
		_ = r.Upstream.SetLinger(0)
		_ = r.Upstream.Close()
		res := r.Wait(t)
		if res.Reason != relay.ReasonDone || res.Err != nil || res.ToUpstream != int64(len(quit)) {
			t.Fatalf("session %d: result %+v; want reason %q, the %d bytes of COM_QUIT and no error", i, res, relay.ReasonDone, len(quit))
		}
		_ = r.Client.Close()
	}
}
