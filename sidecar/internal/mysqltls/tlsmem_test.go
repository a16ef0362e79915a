package mysqltls_test

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// plainTarget is verified TLS without IAM, with the pool config gives
// every forward.
func plainTarget(ca *testkit.CA) mysqltls.Target {
	return mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, RootsFrom: "the test CA", ServerName: clusterName,
		Buffers: mysqltls.NewBuffers()}
}

// plainLogin sends the app's login, passed on as it is, and returns the
// server's answer.
func plainLogin(t *testing.T, addr string) (*app, mysqlwire.Packet) {
	t.Helper()
	a := dialApp(t, addr)
	a.read() // the greeting
	a.write(1, handshakeResponse(appCaps&^mysqlwire.ClientCompress))
	return a, a.read()
}

// An idle TLS session on the portable data path (mysqltls.Relay) held a
// 32 KiB read buffer each way, about 80 KB of heap with TLS and the fake's
// side. It holds them only while a direction carries data: each session
// first carries a packet of 4 KiB, which borrows them both ways.
// docs/performance.md states the bound.
func TestIdleTLSSessionHeap(t *testing.T) {
	const n, limit = 100, 48 << 10
	login := func(t *testing.T, addr string) (*app, mysqlwire.Packet) {
		a, ok := plainLogin(t, addr)
		if len(ok.Payload) > 0 && ok.Payload[0] == mysqlwire.OK {
			q := append([]byte{0x03}, bytes.Repeat([]byte{'x'}, 4<<10)...)
			a.write(0, q)
			if p := a.read(); !bytes.Equal(p.Payload, q) {
				t.Fatalf("a packet of %d bytes came back as %d", len(q), len(p.Payload))
			}
		}
		return a, ok
	}
	per := idleHeap(t, n, plainTarget, login)
	t.Logf("heap per idle TLS session (sidecar, fake server and app): %d bytes", per)
	if per > limit {
		t.Errorf("an idle TLS session holds %d bytes of heap; want at most %d", per, limit)
	}
	doc, err := os.ReadFile("../../../docs/performance.md")
	if want := fmt.Sprintf("`TestIdleTLSSessionHeap` fails over %d KiB.", limit>>10); err != nil || !bytes.Contains(doc, []byte(want)) {
		t.Errorf("docs/performance.md does not say %q (%v)", want, err)
	}
}
