package relaytest

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/internal/testopenssl"
	"github.com/example/sidecar/sidecar/internal/relay"
	"github.com/example/sidecar/sidecar/internal/tlscodec"
)

// testKeyUpdateAfterHalfClose: the app half-closes (the relay sends
// close_notify and shuts the write half), then the database sends a TLS
// 1.3 KeyUpdate that asks for one back, and more rows: the app gets them
// all, and the pair ends as done when the database closes. The event loop
// queued crypto/tls's reply for a write half already shut and ended the
// pair at the next send; over a tls.Conn, the reply's write failed on the
// deadline closeNotify leaves, so crypto/tls kept its old read key and the
// next row failed as a bad record MAC.
func testKeyUpdateAfterHalfClose(t *testing.T, f relay.CodecFunc) {
	srv := testopenssl.Start(t)
	ln := testkit.Listen(t)
	sealed, h := startHop(t, ln, srv)
	transport := tlscodec.NewTransport(sealed)
	tc := tls.Client(transport, &tls.Config{RootCAs: srv.Roots, ServerName: "db", MinVersion: tls.VersionTLS13})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	srv.WaitFor(t, "CIPHER is") // the server has the client's Finished
	h.hold.Store(true)

	app, client := testkit.Pair(t, ln)
	_ = app.SetDeadline(time.Now().Add(safety))
	res := make(chan relay.Result, 1)
	go func() { res <- f(context.Background(), client, sealed, tlscodec.New(tc, transport), 0) }()
	reads := func(want string) {
		t.Helper()
		got := make([]byte, len(want))
		if n, err := io.ReadFull(app, got); err != nil || string(got) != want {
			t.Fatalf("app read %q, %v; want %q", got[:n], err, want)
		}
	}
	srv.Say(t, "before")
	reads("before\n")
	if err := app.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.eof: // the close_notify and FIN went out
	case <-time.After(safety):
		t.Fatal("the relay did not pass the app's half-close on")
	}
	n := h.passed.Load()
	srv.Say(t, "K") // a KeyUpdate with update_requested
	for wait := time.Now().Add(safety); h.passed.Load() == n; time.Sleep(time.Millisecond) {
		if time.Now().After(wait) { // s_server must read its next line apart
			t.Fatal("the server sent no KeyUpdate")
		}
	}
	srv.Say(t, "after")
	reads("after\n")
	srv.Say(t, "more")
	reads("more\n")
	srv.Say(t, "Q") // s_server closes the connection
	if b, err := io.ReadAll(app); err != nil || len(b) > 0 {
		t.Fatalf("app read %q, %v; want EOF", b, err)
	}
	select {
	case r := <-res:
		if r.Reason != relay.ReasonDone || r.Err != nil || r.ToClient != int64(len("before\nafter\nmore\n")) {
			t.Errorf("result %+v; want done with every row to the client", r)
		}
	case <-time.After(safety):
		t.Fatal("the relay did not end after both sides closed")
	}
}

// hop sits between the relay's upstream socket and s_server. It passes
// the server's bytes on; the relay's too until hold, then it keeps them
// from the server, as when the server sends before the close_notify
// arrives (s_server ends the connection on it), and closes eof at the
// relay's FIN.
type hop struct {
	hold   atomic.Bool
	passed atomic.Int64 // server bytes passed on
	eof    chan struct{}
}

func startHop(t *testing.T, ln *net.TCPListener, srv *testopenssl.Server) (sealed *net.TCPConn, h *hop) {
	t.Helper()
	sealed, near := testkit.Pair(t, ln)
	nc, err := net.DialTimeout("tcp", srv.Addr, safety)
	if err != nil {
		t.Fatal(err)
	}
	far := nc.(*net.TCPConn)
	t.Cleanup(func() { far.Close() })
	h = &hop{eof: make(chan struct{})}
	go func() {
		buf := make([]byte, 16<<10)
		for {
			n, err := far.Read(buf)
			if n > 0 {
				if _, werr := near.Write(buf[:n]); werr != nil {
					return
				}
				h.passed.Add(int64(n))
			}
			if err != nil {
				_ = near.CloseWrite()
				return
			}
		}
	}()
	go func() {
		defer close(h.eof)
		buf := make([]byte, 16<<10)
		for {
			n, err := near.Read(buf)
			if n > 0 && !h.hold.Load() {
				if _, werr := far.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return sealed, h
}
