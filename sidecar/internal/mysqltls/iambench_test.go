package mysqltls_test

import (
	"bufio"
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// BenchmarkIAMRelay moves packets through one IAM session and back (the
// fake server echoes them): small queries, and packets of 1 and 8 MiB;
// and answers of many small rows, where the relay's cost per packet shows.
// It reports speed and allocations, to compare changes to the relay; it
// asserts nothing about either.
func BenchmarkIAMRelay(b *testing.B) {
	benchRelay(b, func(ca *testkit.CA) mysqltls.Target { return iamTarget(b, ca) }, loginConn)
}

// benchRelay is a relay benchmark through a session to target, logged in
// by login: bench sizes are the echoed packets' payloads.
func benchRelay(b *testing.B, target func(*testkit.CA) mysqltls.Target, login func(*testing.B, string) net.Conn) {
	for _, bc := range []struct {
		name string
		size int
		rows int // the answer's packets of size bytes, and an EOF; 0 = one
	}{{"query", 20, 0}, {"4KiB", 4 << 10, 0}, {"1MiB", 1 << 20, 0}, {"8MiB", 8 << 20, 0}, {"1000rows", 20, 1000}} {
		b.Run(bc.name, func(b *testing.B) {
			ca := testkit.NewCA(b, "test CA")
			srv := startFake(b, fakeOpts{cert: ca.Leaf(b, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName), rows: bc.rows})
			addr, _, _ := sidecar(b, srv, target(ca))
			a := login(b, addr)
			r := bufio.NewReader(a)
			payload := append([]byte{0x03}, bytes.Repeat([]byte{'x'}, bc.size-1)...)
			b.SetBytes(int64((2 + bc.rows) * bc.size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := mysqlwire.WritePacket(a, 0, payload); err != nil {
					b.Fatal(err)
				}
				for range max(bc.rows, 1) {
					p, err := mysqlwire.ReadPacket(r, 1<<25)
					if err != nil || len(p.Payload) != bc.size {
						b.Fatalf("echo: %d bytes, %v", len(p.Payload), err)
					}
				}
				if bc.rows > 0 {
					if p, err := mysqlwire.ReadPacket(r, 1<<25); err != nil || p.Payload[0] != mysqlwire.AuthSwitch {
						b.Fatalf("after the rows: %q, %v", p.Payload, err)
					}
				}
			}
		})
	}
}

// loginConn is an app's connection logged in through the sidecar at addr,
// for a benchmark: with IAM (no LOCAL_PASSWORD) or without, the app's
// side of the login is the same.
func loginConn(b *testing.B, addr string) net.Conn {
	b.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	if _, err := mysqlwire.ReadPacket(c, 1<<20); err != nil {
		b.Fatal(err)
	}
	if _, err := mysqlwire.WritePacket(c, 1, handshakeResponse(appCaps&^mysqlwire.ClientCompress)); err != nil {
		b.Fatal(err)
	}
	if ok, err := mysqlwire.ReadPacket(c, 1<<20); err != nil || ok.Payload[0] != mysqlwire.OK {
		b.Fatalf("login: %q, %v", ok.Payload, err)
	}
	return c
}
