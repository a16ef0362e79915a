package mysqltls_test

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// A failover moves the endpoint's name to another server, with its own
// key, certificate and ticket keys, while the sidecar holds a session of
// the old one under the same name (the cache's key). The new server cannot
// resume it: the login must fall back to a full handshake that verifies
// the new certificate, name included, and never reach the app as a refusal.
func TestSessionOfTheOldWriterAfterFailover(t *testing.T) {
	for _, tc := range []struct {
		mode   mysqltls.Mode
		maxTLS uint16
	}{
		{mysqltls.VerifyIdentity, tls.VersionTLS13}, {mysqltls.VerifyIdentity, tls.VersionTLS12},
		{mysqltls.VerifyCA, tls.VersionTLS13}, {mysqltls.VerifyCA, tls.VersionTLS12},
	} {
		maxTLS := tc.maxTLS
		t.Run(string(tc.mode)+"/"+tls.VersionName(maxTLS), func(t *testing.T) {
			t.Parallel()
			oldCA, newCA := testkit.NewCA(t, "old writer's CA"), testkit.NewCA(t, "new writer's CA")
			roots := oldCA.Pool.Clone()
			roots.AddCert(newCA.Cert)
			valid := func(ca *testkit.CA, names ...string) tls.Certificate {
				return ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), names...)
			}
			oldWriter := startFake(t, fakeOpts{cert: valid(oldCA, clusterName), tickets: true, maxTLS: maxTLS})
			newWriter := startFake(t, fakeOpts{cert: valid(newCA, clusterName), tickets: true, maxTLS: maxTLS})
			impostor := startFake(t, fakeOpts{cert: valid(newCA, "y.cluster-abc.us-east-1.rds.amazonaws.com"), tickets: true, maxTLS: maxTLS})
			var writer atomic.Pointer[fakeServer] // where the name points
			writer.Store(oldWriter)
			addr, s, _ := sidecar(t, oldWriter, mysqltls.Target{Mode: tc.mode, Roots: roots, ServerName: clusterName},
				func(c *proxy.Config) {
					c.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
						return (&net.Dialer{}).DialContext(ctx, network, writer.Load().addr())
					}
				})
			login := func() mysqlwire.Packet {
				t.Helper()
				a := dialApp(t, addr)
				defer func() { _ = a.c.Close() }()
				a.read() // greeting
				a.write(1, handshakeResponse(appCaps))
				p := a.read()
				if p.Payload[0] == mysqlwire.OK {
					a.write(0, []byte{comPing}) // its echo: the session's tickets have been read
					a.read()
				}
				return p
			}
			for range 2 {
				if p := login(); p.Payload[0] != mysqlwire.OK {
					t.Fatalf("login to the old writer got %q, want OK", p.Payload)
				}
			}
			writer.Store(newWriter)
			for range 2 {
				if p := login(); p.Payload[0] != mysqlwire.OK {
					t.Fatalf("login to the new writer got %q, want OK", p.Payload)
				}
			}
			mismatches := uint64(0)
			if tc.mode == mysqltls.VerifyIdentity {
				writer.Store(impostor) // the new writer's session must not let a certificate for another name in
				if p := login(); p.Payload[0] != mysqlwire.ErrPacketHdr || !strings.Contains(string(p.Payload), "not valid for") {
					t.Fatalf("login to a server whose certificate names another endpoint got %q, want the name_mismatch refusal", p.Payload)
				}
				mismatches = 1
			}
			for _, w := range []*fakeServer{oldWriter, newWriter} {
				w.mu.Lock()
				if len(w.resumed) != 2 || w.resumed[0] || !w.resumed[1] {
					t.Errorf("resumed = %v; want a full handshake first, then the session it made resumed", w.resumed)
				}
				w.mu.Unlock()
			}
			// Counted once the line is written, after the app was told.
			for deadline := time.Now().Add(5 * time.Second); refusals(s, mysqltls.ReasonNameMismatch) < mismatches && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			for _, c := range s.Snapshot().Forwards[0].TLSRefusals {
				want := uint64(0)
				if c.Label == mysqltls.ReasonNameMismatch {
					want = mismatches
				}
				if c.Value != want {
					t.Errorf("refusal %s = %d, want %d", c.Label, c.Value, want)
				}
			}
		})
	}
}

// A server that accepts TCP and never greets (a failover's half-open
// window) is waited for CONNECT_TIMEOUT, but never past the login's own
// bound: the refusal and the dial's wait for an address must not name a
// longer wait than the one that ran.
func TestGreetingWaitIsBoundedByTheLogin(t *testing.T) {
	for _, tc := range []struct{ set, want time.Duration }{
		{0, 5 * time.Second},
		{time.Second, time.Second},
		{mysqltls.LoginTimeout, mysqltls.LoginTimeout},
		{2 * time.Minute, mysqltls.LoginTimeout}, // CONNECT_TIMEOUT's largest
	} {
		if got := (&mysqltls.Target{HandshakeTimeout: tc.set}).HandshakeWait(); got != tc.want {
			t.Errorf("HandshakeTimeout %s: HandshakeWait() = %s, want %s", tc.set, got, tc.want)
		}
	}
}
