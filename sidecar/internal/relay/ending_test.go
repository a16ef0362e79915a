package relay_test

import (
	"errors"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/relay"
)

// An Ending keeps the first reason, turns two clean ends into ReasonDone,
// lets a client that is done make an upstream reset ReasonDone, applies its
// Adjust before that, keeps an error only where Result.Err says, and
// closes once, for the reason that won.
func TestEnding(t *testing.T) {
	reset := os.NewSyscallError("read", syscall.ECONNRESET)
	nomem := os.NewSyscallError("splice", syscall.ENOMEM)
	refused := errors.New("refused a command")
	end := func(r relay.Reason, err error) step {
		return func(_ *testing.T, e *relay.Ending, _ *net.TCPConn) { e.End(r, err) }
	}
	settle := func(r relay.Reason, err error) step {
		return func(_ *testing.T, e *relay.Ending, _ *net.TCPConn) { e.Settle(r, err) }
	}
	half := func(_ *testing.T, e *relay.Ending, _ *net.TCPConn) { e.HalfClosed() }
	clientDone := func(_ *testing.T, e *relay.Ending, _ *net.TCPConn) { e.ClientDone() }
	// The app closes: its FIN reaches the client socket, unread (ConnDone).
	clientFIN := func(t *testing.T, e *relay.Ending, app *net.TCPConn) {
		_ = app.Close()
		for deadline := time.Now().Add(10 * time.Second); !relay.ConnDone(e.Client); {
			if time.Now().After(deadline) {
				t.Fatal("the app's FIN never showed on the client socket")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	gone := func(r relay.Reason, err error) (relay.Reason, error) {
		if r == relay.ReasonClientError && relay.PeerLeft(err) {
			return relay.ReasonClientGone, nil
		}
		return r, err
	}
	for _, tc := range []struct {
		name       string
		adjust     func(relay.Reason, error) (relay.Reason, error)
		linuxOnly  bool // needs the kernel's TCP state (ConnDone)
		steps      []step
		wantEnded  bool
		wantReason relay.Reason
		wantErr    error
		wantCloses int
	}{
		{name: "nothing yet", wantReason: ""},
		{name: "first reason wins", steps: []step{end(relay.ReasonIdle, nil), end(relay.ReasonClientError, reset), half, half},
			wantEnded: true, wantReason: relay.ReasonIdle, wantCloses: 1},
		{name: "one clean end is not the end", steps: []step{half}},
		{name: "two clean ends are done", steps: []step{half, half},
			wantEnded: true, wantReason: relay.ReasonDone},
		{name: "a cut after two clean ends", steps: []step{half, half, end(relay.ReasonCanceled, nil)},
			wantEnded: true, wantReason: relay.ReasonDone},
		{name: "upstream reset", steps: []step{end(relay.ReasonUpstreamError, reset)},
			wantEnded: true, wantReason: relay.ReasonUpstreamError, wantErr: reset, wantCloses: 1},
		{name: "upstream reset after the client's EOF", steps: []step{clientDone, end(relay.ReasonUpstreamError, reset)},
			wantEnded: true, wantReason: relay.ReasonDone, wantCloses: 1},
		{name: "upstream reset after the client's FIN arrived", linuxOnly: true, steps: []step{clientFIN, end(relay.ReasonUpstreamError, reset)},
			wantEnded: true, wantReason: relay.ReasonDone, wantCloses: 1},
		{name: "own failure after the client's EOF", steps: []step{clientDone, end(relay.ReasonUpstreamError, nomem)},
			wantEnded: true, wantReason: relay.ReasonUpstreamError, wantErr: nomem, wantCloses: 1},
		{name: "adjust applied", adjust: gone, steps: []step{end(relay.ReasonClientError, reset)},
			wantEnded: true, wantReason: relay.ReasonClientGone, wantCloses: 1},
		{name: "adjust leaves others", adjust: gone, steps: []step{end(relay.ReasonClientError, nomem)},
			wantEnded: true, wantReason: relay.ReasonClientError, wantErr: nomem, wantCloses: 1},
		{name: "adjust not applied after the end", adjust: gone, steps: []step{end(relay.ReasonIdle, nil), end(relay.ReasonClientError, reset)},
			wantEnded: true, wantReason: relay.ReasonIdle, wantCloses: 1},
		{name: "client error kept", steps: []step{end(relay.ReasonClientError, nomem)},
			wantEnded: true, wantReason: relay.ReasonClientError, wantErr: nomem, wantCloses: 1},
		{name: "a refusal that ended the session kept", steps: []step{end(relay.ReasonDone, refused)},
			wantEnded: true, wantReason: relay.ReasonDone, wantErr: refused, wantCloses: 1},
		{name: "no error beside idle", steps: []step{end(relay.ReasonIdle, refused)},
			wantEnded: true, wantReason: relay.ReasonIdle, wantCloses: 1},
		{name: "no error beside a cut", steps: []step{end(relay.ReasonCanceled, refused)},
			wantEnded: true, wantReason: relay.ReasonCanceled, wantCloses: 1},
		{name: "settle does not close", steps: []step{settle(relay.ReasonClientError, nomem), end(relay.ReasonIdle, nil)},
			wantEnded: true, wantReason: relay.ReasonClientError, wantErr: nomem},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.linuxOnly && runtime.GOOS != "linux" {
				t.Skip("ConnDone asks the Linux kernel")
			}
			client, app := testkit.Pair(t, testkit.Listen(t))
			closes := 0
			e := &relay.Ending{Client: client, Adjust: tc.adjust, Close: func() { closes++ }}
			for _, step := range tc.steps {
				step(t, e, app)
			}
			reason, err := e.Result()
			if e.Ended() != tc.wantEnded || reason != tc.wantReason || err != tc.wantErr {
				t.Errorf("Ended %v, Result (%q, %v); want %v, (%q, %v)", e.Ended(), reason, err, tc.wantEnded, tc.wantReason, tc.wantErr)
			}
			if closes != tc.wantCloses {
				t.Errorf("Close called %d times, want %d", closes, tc.wantCloses)
			}
		})
	}
}

// step is one thing that happens to an Ending; app is the client's peer.
type step func(t *testing.T, e *relay.Ending, app *net.TCPConn)

// Settle reports whether it recorded the reason: only the first call does.
func TestEndingSettleReportsFirst(t *testing.T) {
	client, _ := testkit.Pair(t, testkit.Listen(t))
	var e relay.Ending
	e.Client = client
	if !e.Settle(relay.ReasonIdle, nil) {
		t.Error("the first Settle reported it recorded nothing")
	}
	if e.Settle(relay.ReasonCanceled, nil) {
		t.Error("a second Settle reported it recorded its reason")
	}
}
