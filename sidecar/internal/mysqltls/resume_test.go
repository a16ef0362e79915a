package mysqltls_test

import (
	"crypto/tls"
	"crypto/x509"
	"slices"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// A CA rotation: the server moved to a certificate from the new CA, and
// the old CA has since expired while the sidecar still holds a session of
// the old certificate. The next login must not resume into a chain that
// no longer verifies (a refusal blaming a certificate the server no
// longer sends), but verify the server's current one, in either mode.
func TestSessionOfAnExpiredChainIsNotResumed(t *testing.T) {
	for _, tc := range []struct {
		mode   mysqltls.Mode
		maxTLS uint16 // the server's newest version
	}{
		{mysqltls.VerifyCA, tls.VersionTLS13},
		{mysqltls.VerifyCA, tls.VersionTLS12},
		{mysqltls.VerifyIdentity, tls.VersionTLS13},
		{mysqltls.VerifyIdentity, tls.VersionTLS12},
	} {
		t.Run(string(tc.mode)+"/"+tls.VersionName(tc.maxTLS), func(t *testing.T) {
			t.Parallel()
			oldCAUntil := time.Now().Add(3 * time.Second) // a margin for the first login on a busy machine
			oldCA, oldLeaf := shortLivedCA(t, oldCAUntil, clusterName)
			newCA := testkit.NewCA(t, "new CA")
			roots := newCA.Pool.Clone()
			roots.AddCert(oldCA)
			srv := startFake(t, fakeOpts{cert: oldLeaf, tickets: true, maxTLS: tc.maxTLS})
			addr, s, _ := sidecar(t, srv, mysqltls.Target{Mode: tc.mode, Roots: roots, ServerName: clusterName})

			login := func() {
				t.Helper()
				a := dialApp(t, addr)
				a.read() // greeting
				a.write(1, handshakeResponse(appCaps))
				if p := a.read(); p.Payload[0] != mysqlwire.OK {
					t.Fatalf("login got %q, want OK", p.Payload)
				}
				// A command's echo: the session's tickets have been read.
				a.write(0, []byte{comPing})
				a.read()
				_ = a.c.Close()
			}
			login()
			srv.setCert(newCA.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName))
			time.Sleep(time.Until(oldCAUntil) + 100*time.Millisecond) // x509 reads the clock: the old CA must have expired
			login()
			login() // the current chain's session is resumed as before

			srv.mu.Lock()
			resumed := append([]bool(nil), srv.resumed...)
			srv.mu.Unlock()
			if want := []bool{false, false, true}; !slices.Equal(resumed, want) {
				t.Errorf("resumed = %v, want %v: the second login verifies the server's current certificate in full", resumed, want)
			}
			for _, c := range s.Snapshot().Forwards[0].TLSRefusals {
				if c.Value != 0 {
					t.Errorf("refusal %s = %d", c.Label, c.Value)
				}
			}
		})
	}
}

// shortLivedCA is a CA valid until notAfter and a certificate for names it
// issued, valid for an hour: a leaf that outlives its issuer.
func shortLivedCA(t *testing.T, notAfter time.Time, names ...string) (*x509.Certificate, tls.Certificate) {
	t.Helper()
	ca := testkit.NewCAUntil(t, "old CA", notAfter)
	return ca.Cert, ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), names...)
}
