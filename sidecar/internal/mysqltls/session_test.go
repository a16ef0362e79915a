package mysqltls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/relay"
	"github.com/example/sidecar/sidecar/internal/relay/relaytest"
)

// The portable data path of TLS sessions (two goroutines over the
// tls.Conn) passes the relay conformance suite that the byte relays pass,
// as the epoll engine's RelayCodec does.
func TestRelayCodecConformance(t *testing.T) {
	relaytest.RunCodec(t, mysqltls.RelayCodec)
}

// A session cut (the drain's deadline, here) while the server reads
// nothing ends at once. crypto/tls's Close would first send close_notify
// and wait up to 5 s for room to write it, past the drain's deadline. The
// pipe stands in for a server whose receive window is full: a write to it
// waits until it is read.
func TestCutWhileServerDoesNotRead(t *testing.T) {
	cert, pool := testkit.ServerTLS(t, "db.example.test")
	sidecarEnd, serverEnd := net.Pipe()
	t.Cleanup(func() { _ = serverEnd.Close() })
	ts := tls.Server(serverEnd, &tls.Config{Certificates: []tls.Certificate{cert}, SessionTicketsDisabled: true})
	served := make(chan error, 1)
	go func() { served <- ts.Handshake() }()
	tc := tls.Client(sidecarEnd, &tls.Config{RootCAs: pool, ServerName: "db.example.test"})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("server handshake: %v", err)
	}

	_, client := testkit.Pair(t, testkit.Listen(t))
	ctx, cut := context.WithCancel(context.Background())
	res := make(chan relay.Result, 1)
	go func() { res <- mysqltls.Relay(ctx, client, &mysqltls.Conn{Conn: tc}, 0) }()
	time.Sleep(50 * time.Millisecond) // both pumps wait in Read
	cut()
	select {
	case r := <-res:
		if r.Reason != relay.ReasonCanceled {
			t.Errorf("reason %v; want %v", r.Reason, relay.ReasonCanceled)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the session still runs 3 s after the cut: its end waits to write close_notify to a server that reads nothing")
	}
}

// A refusal says whether the app was sent it (Refusal.Told): the proxy
// counts an app that read its refusal and left as refused, and one that
// left before it as gone.
func TestRefusalSaysWhetherTheAppWasTold(t *testing.T) {
	noTLS := greeting(7, serverCaps&^mysqlwire.ClientSSL)
	tooMany := mysqlwire.ErrPacket(1040, "08004", "Too many connections")
	for _, tc := range []struct {
		name     string
		greeting []byte
		appLeft  bool // the login's context ends once the greeting is read: the app left
		reason   string
		told     bool
	}{
		{"no TLS", noTLS, false, mysqltls.ReasonServerNoTLS, true},
		{"no TLS, app left", noTLS, true, mysqltls.ReasonServerNoTLS, false},
		{"server's ERR", tooMany, false, mysqltls.ReasonServerError, true},
		{"server's ERR, app left", tooMany, true, mysqltls.ReasonServerError, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := testkit.Listen(t)
			app, client := testkit.Pair(t, ln)
			server, db := testkit.Pair(t, ln)
			if _, err := mysqlwire.WritePacket(db, 0, tc.greeting); err != nil {
				t.Fatal(err)
			}
			ctx, leave := context.WithCancel(context.Background())
			defer leave()
			var fromDB net.Conn = server
			if tc.appLeft {
				fromDB = &leaveAfter{Conn: server, n: len(tc.greeting) + 4, leave: leave}
			}
			target := &mysqltls.Target{Mode: mysqltls.VerifyCA, Roots: x509.NewCertPool(), RootsFrom: "test"}
			_, err := target.Handshake(ctx, client, fromDB)
			var r *mysqltls.Refusal
			if !errors.As(err, &r) || r.Reason != tc.reason || r.Told != tc.told {
				t.Fatalf("Handshake: %#v; want a %s refusal with Told %v", err, tc.reason, tc.told)
			}
			_ = client.Close()
			_ = app.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, _ := io.ReadAll(app)
			if sent := len(got) > 4 && got[4] == mysqlwire.ErrPacketHdr; sent != tc.told {
				t.Fatalf("the app read %q; Told says %v", got, r.Told)
			}
		})
	}
}

// leaveAfter ends the login's context once n bytes were read from it.
type leaveAfter struct {
	net.Conn
	n     int
	leave context.CancelFunc
}

func (c *leaveAfter) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	if c.n -= k; c.n <= 0 {
		c.leave()
	}
	return k, err
}
