package mysqltls_test

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// idleHeap opens n sessions through a sidecar to target, each logged in
// by login and carrying a query both ways, and returns the heap they hold
// once idle, per session: the sidecar's, the fake server's and the app's
// sides together (one process), so an upper bound on the sidecar's own.
// Then the sessions carry a query each again, and one a packet of
// MaxPayload bytes (two frames): an idle direction reads again as it did.
func idleHeap(t *testing.T, n int, target func(*testkit.CA) mysqltls.Target, login func(*testing.T, string) (*app, mysqlwire.Packet)) uint64 {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)})
	addr, _, _ := sidecar(t, srv, target(ca))
	open := func() *app {
		a, ok := login(t, addr)
		if ok.Payload[0] != mysqlwire.OK {
			t.Fatalf("login: %q", ok.Payload)
		}
		a.write(0, []byte("\x03SELECT 1"))
		a.read()
		return a
	}
	open() // the first login: the token, the TLS session and pools are made once
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	apps := make([]*app, 0, n)
	for range n {
		apps = append(apps, open())
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	for i, a := range apps {
		q := []byte(fmt.Sprintf("\x03SELECT %d", i))
		if i == 0 {
			q = append([]byte{0x03}, bytes.Repeat([]byte{'x'}, mysqlwire.MaxPayload-1)...)
		}
		a.write(0, q)
		if p := a.read(); p.Seq != 1 || !bytes.Equal(p.Payload, q) {
			t.Fatalf("session %d after idling: seq %d, %d bytes back, want seq 1 and the %d sent", i, p.Seq, len(p.Payload), len(q))
		}
	}
	if after.HeapAlloc < before.HeapAlloc {
		return 0
	}
	return (after.HeapAlloc - before.HeapAlloc) / uint64(n)
}

// An idle IAM session held four 32 KiB relay buffers, one to read and
// one to write each way: about 150 KB of heap with TLS and the fake's
// side, 148 MiB at the default MAX_CONNECTIONS. It holds them only while
// a direction carries data. docs/performance.md states the bound.
func TestIdleIAMSessionHeap(t *testing.T) {
	const n, limit = 100, 48 << 10
	per := idleHeap(t, n, func(ca *testkit.CA) mysqltls.Target { return iamTarget(t, ca) }, iamLogin)
	t.Logf("heap per idle IAM session (sidecar, fake server and app): %d bytes", per)
	if per > limit {
		t.Errorf("an idle IAM session holds %d bytes of heap; want at most %d", per, limit)
	}
	doc, err := os.ReadFile("../../../docs/performance.md")
	if want := fmt.Sprintf("The test fails over %d KiB.", limit>>10); err != nil || !bytes.Contains(doc, []byte(want)) {
		t.Errorf("docs/performance.md does not say %q (%v)", want, err)
	}
}
