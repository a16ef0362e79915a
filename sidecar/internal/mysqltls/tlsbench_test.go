package mysqltls_test

import (
	"net"
	"testing"

	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// BenchmarkTLSRelay is BenchmarkIAMRelay without IAM: a session relayed
// byte for byte (mysqltls.Relay, the portable data path's), with the pool
// config gives every forward.
func BenchmarkTLSRelay(b *testing.B) {
	benchRelay(b, plainTarget, plainLoginConn)
}

// plainLoginConn is an app's connection logged in through the sidecar at
// addr without IAM, for a benchmark.
func plainLoginConn(b *testing.B, addr string) net.Conn {
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
