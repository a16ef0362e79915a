package mysqltls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
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
	tc := tls.Client(sidecarEnd, &tls.Config{RootCAs: pool, ServerName: "db.example.test"})
	testkit.Handshake(t, tc, ts)

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

// An app that leaves as soon as it reads its OK ends the login's context
// just as the login succeeds. Handshake's cut, which sets past deadlines,
// must not land on the session after Handshake cleared them: the server's
// side would then fail with a timeout, counted as an upstream error where
// the app's reset is a client error. lateCut holds the cut's server
// deadline until Handshake has returned, as a busy machine may.
func TestLoginCutAsItSucceedsLeavesTheSessionOpen(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)})
	dbConn, err := net.DialTimeout("tcp", srv.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dbConn.Close() }()
	app, client := testkit.Pair(t, testkit.Listen(t))
	_ = app.SetDeadline(time.Now().Add(10 * time.Second))
	ctx, leave := context.WithCancel(context.Background())
	defer leave()
	returned := make(chan struct{})
	server := &lateCut{Conn: dbConn, returned: returned, set: make(chan struct{})}
	appDone := make(chan error, 1)
	go func() {
		if _, err := mysqlwire.ReadPacket(app, 1<<20); err != nil {
			appDone <- err
			return
		}
		if _, err := mysqlwire.WritePacket(app, 1, handshakeResponse(appCaps)); err != nil {
			appDone <- err
			return
		}
		ok, err := mysqlwire.ReadPacket(app, 1<<20)
		if err == nil && ok.Payload[0] != mysqlwire.OK {
			err = errors.New("no OK")
		}
		appDone <- err
	}()
	target := &mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName, Sessions: tls.NewLRUClientSessionCache(0)}
	tc, err := target.Handshake(ctx, &leaveOnOK{Conn: client, leave: leave}, server)
	close(returned)
	if err != nil {
		t.Fatalf("Handshake: %v", err)
	}
	if err := <-appDone; err != nil {
		t.Fatalf("the app's login: %v", err)
	}
	select {
	case <-server.set:
	case <-time.After(5 * time.Second):
		t.Fatal("the login's cut never set its deadline")
	}
	if _, err := mysqlwire.WritePacket(tc, 0, []byte{comPing}); err != nil {
		t.Fatalf("the session after the login: %v", err)
	}
	if _, err := mysqlwire.ReadPacket(tc, 1<<20); err != nil {
		t.Fatalf("the session after the login: %v", err)
	}
}

// leaveOnOK ends the login's context once an OK packet was written to the
// app, as the proxy's watch does when the app reads it and leaves.
type leaveOnOK struct {
	net.Conn
	leave context.CancelFunc
}

func (c *leaveOnOK) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if len(p) > 4 && p[4] == mysqlwire.OK {
		c.leave()
	}
	return n, err
}

// lateCut delays a past deadline (the login's cut) until Handshake has
// returned, or for at most 200 ms when Handshake waits for the cut.
type lateCut struct {
	net.Conn
	returned chan struct{}
	set      chan struct{}
	once     sync.Once
}

func (c *lateCut) SetDeadline(d time.Time) error {
	if d.IsZero() || d.After(time.Unix(2, 0)) {
		return c.Conn.SetDeadline(d)
	}
	select {
	case <-c.returned:
	case <-time.After(200 * time.Millisecond):
	}
	err := c.Conn.SetDeadline(d)
	c.once.Do(func() { close(c.set) })
	return err
}
