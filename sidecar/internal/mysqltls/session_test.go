package mysqltls_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
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
