package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/relay"
)

// The default dialer's last check before connect(): a dial for a client
// that has left makes no connection at all; one for a client that is
// still there, or for none, goes ahead.
func TestDialerRefusesForDepartedClient(t *testing.T) {
	for _, tc := range []struct {
		name    string
		leave   func(*net.TCPConn) // nil: the client stays
		noValue bool               // the dial context carries no client
		want    error
	}{
		{name: "client stays"},
		{name: "client closed", leave: func(c *net.TCPConn) { _ = c.Close() }, want: errClientGone},
		{name: "client reset", leave: func(c *net.TCPConn) { _ = c.SetLinger(0); _ = c.Close() }, want: errClientGone},
		{name: "no client in the context", leave: func(c *net.TCPConn) { _ = c.Close() }, noValue: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := testkit.Listen(t)
			app, client := testkit.Pair(t, ln)
			if tc.leave != nil {
				tc.leave(app)
				deadline := time.Now().Add(10 * time.Second)
				for !clientGone(client) && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
			}
			ctx := context.Background()
			if !tc.noValue {
				ctx = withClient(ctx, client)
			}
			upstream := testkit.Listen(t)
			d := net.Dialer{ControlContext: refuseIfClientGone}
			c, err := d.DialContext(ctx, "tcp", upstream.Addr().String())
			if c != nil {
				_ = c.Close()
			}
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Errorf("dial: %v, want %v", err, tc.want)
			}
		})
	}
}

// A login that failed is the app's departure or a cut only when the app
// was not sent a refusal: one that read its ERR and left at once, before
// the login returned, was refused.
func TestFailedLogin(t *testing.T) {
	told := &mysqltls.Refusal{Reason: mysqltls.ReasonServerError, Told: true}
	untold := &mysqltls.Refusal{Reason: mysqltls.ReasonNoGreeting} // afterCut kept its ERR from the app
	leftMidLogin := &mysqltls.Refusal{Reason: mysqltls.ReasonIO}   // appLeft
	leftSilent := &mysqltls.Refusal{Reason: mysqltls.ReasonIO, Silent: true}
	for _, tc := range []struct {
		name      string
		err       error
		gone, cut bool
		want      relay.Reason
	}{
		{"told, then gone", told, true, false, relay.ReasonDone},
		{"told, then cut", fmt.Errorf("login: %w", told), false, true, relay.ReasonDone},
		{"told", told, false, false, relay.ReasonDone},
		{"gone before told", untold, true, false, relay.ReasonClientGone},
		{"gone, also cut", untold, true, true, relay.ReasonClientGone},
		{"cut before told", untold, false, true, relay.ReasonCanceled},
		{"not told, neither", untold, false, false, relay.ReasonDone},
		{"not a refusal, gone", io.EOF, true, false, relay.ReasonClientGone},
		// The watch cuts the read of the app's login as the app leaves: the
		// login then fails as the app's, as it does when it sees it first.
		{"left after its greeting, seen by the watch", leftMidLogin, true, false, relay.ReasonDone},
		{"left after its greeting, seen by the login", leftMidLogin, false, false, relay.ReasonDone},
		{"cut while the app logged in", leftMidLogin, false, true, relay.ReasonCanceled},
		// An app that sent no byte of its login has left, whichever saw it.
		{"left silent, seen by the watch", leftSilent, true, false, relay.ReasonClientGone},
		{"left silent, seen by the login", leftSilent, false, false, relay.ReasonClientGone},
		{"left silent, also cut", leftSilent, true, true, relay.ReasonClientGone},
		{"cut while the app was silent", leftSilent, false, true, relay.ReasonCanceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := failedLogin(tc.err, tc.gone, tc.cut); got != tc.want {
				t.Errorf("failedLogin(%v, gone %v, cut %v) = %v, want %v", tc.err, tc.gone, tc.cut, got, tc.want)
			}
		})
	}
}
