package mysqltls_test

import (
	"slices"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// The database's ERR to a login (a wrong user, passed on as the app reads
// it without the sidecar) gives the MAX_CONNECTIONS slot back as it is
// written. The connection must end with it: it was relayed on with no
// slot, past the limit, for as long as an app kept its socket open.
func TestDatabaseRefusedLoginEndsTheConnection(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	acct := &fakeAccount{user: "someone-else", password: "pw", plugin: "caching_sha2_password", greet: "caching_sha2_password"}
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName), account: acct})
	target := mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, RootsFrom: "the test CA", ServerName: clusterName}
	addr, s, logs := sidecar(t, srv, target, func(c *proxy.Config) { c.MaxConnections = 1 })
	a := dialApp(t, addr) // kept open until the test ends
	a.read()              // the greeting
	a.write(1, handshakeResponse(appCaps&^mysqlwire.ClientCompress))
	if p := a.read(); !slices.Equal(p.Payload[:1], []byte{mysqlwire.ErrPacketHdr}) {
		t.Fatalf("login answered %q; want the database's ERR", p.Payload)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		fw := s.Snapshot().Forwards[0]
		if fw.Active == 0 && slices.Contains(fw.ConnectionsClosed, proxy.Count{Label: "eof", Value: 1}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("active %d, closed %v: the refused connection is still served, its slot given back\n%s", fw.Active, fw.ConnectionsClosed, logs)
		}
	}
	if p := dialApp(t, addr).read(); p.Payload[0] != 10 { // protocol version 10: a greeting
		t.Fatalf("the next app read %q; want a greeting, the one slot free", p.Payload)
	}
}

// An oversized login is read away (up to readAwayMax while bytes keep
// coming) before its ERR, which gives the MAX_CONNECTIONS slot back: the
// ERR went first, so for those seconds the connection, the database's
// included, was open beside the limit, and an app could hold any number
// of them so. While one app still sends its packet, the next is turned
// away at MAX_CONNECTIONS=1.
func TestOversizedLoginHoldsItsSlotWhileReadAway(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)})
	target := mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, RootsFrom: "the test CA", ServerName: clusterName}
	addr, _, _ := sidecar(t, srv, target, func(c *proxy.Config) { c.MaxConnections = 1 })
	a := dialApp(t, addr)
	a.read() // the greeting
	n := mysqltls.MaxLoginPacket + 1
	if _, err := a.c.Write(append([]byte{byte(n), byte(n >> 8), byte(n >> 16), 1}, make([]byte, 100)...)); err != nil {
		t.Fatal(err)
	}
	trickleWhileTurnedAway(t, a, addr, "its oversized login")
	a.expectRefusal(2, "login packet is over")
}

// trickleWhileTurnedAway sends the rest of a's oversized packet a byte
// at a time, well within readAwayQuiet, for 1.5 s, while other apps that
// connect meanwhile must read 1040: a's connection keeps its slot, at
// MAX_CONNECTIONS=1, as long as the sidecar reads its packet away.
func trickleWhileTurnedAway(t *testing.T, a *app, addr, sending string) {
	t.Helper()
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := a.c.Write([]byte{0}); err != nil {
					return
				}
			}
		}
	}()
	defer func() { close(stop); <-stopped }()
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		b := dialApp(t, addr)
		p := b.read()
		_ = b.c.Close()
		if !hasCode(p.Payload, 1040) {
			t.Fatalf("while the first app sent %s, the next read %q; want 1040 at MAX_CONNECTIONS=1", sending, p.Payload)
		}
	}
}
