package relaytest

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/relay"
	"github.com/example/sidecar/sidecar/internal/tlscodec"
)

// RunCodec runs the suite against a relay.CodecFunc, the data path of TLS
// sessions: between the relay and the test's upstream end sits a TLS
// server that passes every byte, half-close and reset on, so each test
// holds the same plaintext ends as for a relay.Func. The tests of a client
// leaving before a byte moved (ReasonClientGone) do not apply: a codec's
// relay starts after the login.
func RunCodec(t *testing.T, f relay.CodecFunc) {
	run(t, viaTLS(t, f), false)
}

// viaTLS returns a relay.Func that puts a TLS hop on the upstream side:
// the relay's upstream socket carries TLS (client side, through a
// tlscodec.Codec), and a terminator turns it back into the plaintext the
// test's upstream end reads and writes.
func viaTLS(t *testing.T, f relay.CodecFunc) relay.Func {
	serverCfg, clientCfg := tlsConfigs(t)
	return func(ctx context.Context, client, upstream *net.TCPConn, idle time.Duration) relay.Result {
		sealed, terminated := Pair(t)
		transport := tlscodec.NewTransport(sealed)
		tc := tls.Client(transport, clientCfg)
		ts := tls.Server(terminated, serverCfg)
		errc := make(chan error, 1)
		go func() { errc <- ts.Handshake() }()
		if err := tc.Handshake(); err != nil {
			t.Errorf("TLS handshake: %v", err)
		}
		if err := <-errc; err != nil {
			t.Errorf("TLS handshake (server): %v", err)
		}
		go terminate(ts, terminated, upstream)
		if d := userTimeoutOf(upstream); d > 0 { // the TLS hop stands in for the upstream socket
			setUserTimeout(t, sealed, d)
			setUserTimeout(t, upstream, 0)
		}
		return f(ctx, client, sealed, tlscodec.New(tc, transport), idle)
	}
}

// terminate relays between the TLS server side and the plaintext upstream
// end, passing a half-close on as close_notify plus FIN (and back as a
// half-close), and a reset as a reset.
func terminate(ts *tls.Conn, raw, plain *net.TCPConn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // plaintext upstream to the relay
		defer wg.Done()
		_, err := io.Copy(ts, plain)
		if err != nil {
			_ = raw.SetLinger(0) // a reset stays a reset
			_ = raw.Close()
			return
		}
		_ = ts.CloseWrite()
		_ = raw.CloseWrite()
	}()
	go func() { // the relay to the plaintext upstream
		defer wg.Done()
		_, err := io.Copy(plain, ts)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			_ = plain.SetLinger(0)
			_ = plain.Close()
			return
		}
		_ = plain.CloseWrite()
	}()
	wg.Wait()
	_ = raw.Close()
	_ = plain.Close()
}

// tlsConfigs returns the configurations of both TLS ends, the client's
// with a session cache as the sidecar's.
func tlsConfigs(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	cert, roots := testkit.ServerTLS(t, "relaytest")
	server = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{RootCAs: roots, ServerName: "relaytest", MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(16)}
	return server, client
}
