package relaytest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
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
	t.Run("CloseNotifyWithoutFINToSlowClient", func(t *testing.T) { testCloseNotifyWithoutFIN(t, f) })
	t.Run("KeyUpdateAfterClientHalfClose", func(t *testing.T) { testKeyUpdateAfterHalfClose(t, f) })
}

// testCloseNotifyWithoutFIN: the database ends its stream with close_notify
// and keeps TCP open, as TLS allows, while the app reads slowly (the
// relay's sends to it go partial): the app gets every byte, then EOF.
func testCloseNotifyWithoutFIN(t *testing.T, f relay.CodecFunc) {
	app, client := smallBufferPair(t)
	serverCfg, clientCfg := tlsConfigs(t)
	sealed, codec, ts, err := tlsHop(t, serverCfg, clientCfg)
	if err != nil {
		t.Fatal(err)
	}
	payload := RandomBytes(t, 1<<20+1600) // not a multiple of a relay's buffer
	go func() {
		_, _ = ts.Write(payload)
		_ = ts.CloseWrite() // close_notify; no FIN
	}()
	res := make(chan relay.Result, 1)
	go func() { res <- f(context.Background(), client, sealed, codec, 0) }()
	time.Sleep(200 * time.Millisecond) // the relay fills the app's small buffers
	got := make([]byte, 0, len(payload))
	buf := make([]byte, 1024)
	for {
		// Each read, not the whole slow read, is bounded: 1,000 reads with
		// a pause between them outlast any total on a loaded runner.
		_ = app.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := app.Read(buf)
		got = append(got, buf[:n]...)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("app read after %d of %d bytes: %v (the close_notify never reached the app as EOF)", len(got), len(payload), err)
		}
		time.Sleep(100 * time.Microsecond)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("app got %d bytes, not the %d sent", len(got), len(payload))
	}
	_ = app.CloseWrite()
	select {
	case r := <-res:
		if r.Reason != relay.ReasonDone || r.ToClient != int64(len(payload)) {
			t.Errorf("result %+v; want done with %d bytes to the client", r, len(payload))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not end after both sides closed")
	}
}

// viaTLS returns a relay.Func that puts a TLS hop on the upstream side:
// the relay's upstream socket carries TLS (client side, through a
// tlscodec.Codec), and a terminator turns it back into the plaintext the
// test's upstream end reads and writes.
func viaTLS(t *testing.T, f relay.CodecFunc) relay.Func {
	serverCfg, clientCfg := tlsConfigs(t)
	return func(ctx context.Context, client, upstream *net.TCPConn, idle time.Duration) relay.Result {
		sealed, codec, ts, err := tlsHop(t, serverCfg, clientCfg)
		if err != nil {
			t.Error(err) // not Fatal: the relay may run off the test's goroutine
		}
		go terminate(ts, ts.NetConn().(*net.TCPConn), upstream)
		if d := userTimeoutOf(upstream); d > 0 { // the TLS hop stands in for the upstream socket
			setUserTimeout(t, sealed, d)
			setUserTimeout(t, upstream, 0)
		}
		return f(ctx, client, sealed, codec, idle)
	}
}

// tlsHop is a TLS connection over a fresh socket pair, handshake done: the
// client end (sealed) through a codec, as the sidecar holds it, and the
// server end as the database's.
func tlsHop(t testing.TB, serverCfg, clientCfg *tls.Config) (sealed *net.TCPConn, codec *tlscodec.Codec, ts *tls.Conn, err error) {
	sealed, terminated := Pair(t)
	transport := tlscodec.NewTransport(sealed)
	tc := tls.Client(transport, clientCfg)
	ts = tls.Server(terminated, serverCfg)
	errc := make(chan error, 1)
	go func() { errc <- ts.Handshake() }()
	if err = errors.Join(tc.Handshake(), <-errc); err != nil {
		err = fmt.Errorf("TLS handshake: %w", err) // the ends are still returned, to be closed
	}
	return sealed, tlscodec.New(tc, transport), ts, err
}

// terminate relays between the TLS server side and the plaintext upstream
// end, passing a half-close on as close_notify plus FIN (and back as a
// half-close), and a reset as a reset, also one that comes while a write
// to the relay waits (resetPasser).
func terminate(ts *tls.Conn, raw, plain *net.TCPConn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // plaintext upstream to the relay
		defer wg.Done()
		_, err := io.Copy(resetPasser{ts, plain, raw}, plain)
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

// resetPasser is terminate's writer to the relay. While a write of it
// waits (the relay does not read), nothing reads the upstream end, so it
// looks for that end's reset itself and resets raw, as a database's
// socket is reset.
type resetPasser struct {
	w          io.Writer
	plain, raw *net.TCPConn
}

func (p resetPasser) Write(b []byte) (int, error) {
	stop := make(chan struct{})
	defer close(stop)
	go p.watch(stop)
	return p.w.Write(b)
}

func (p resetPasser) watch(stop <-chan struct{}) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if resetPending(p.plain) {
			_ = p.raw.SetLinger(0)
			_ = p.raw.Close()
			return
		}
	}
}

// resetPending is relay.ResetPending for c: it leaves the error to c's
// reader.
func resetPending(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	pending := false
	_ = rc.Control(func(fd uintptr) { pending = relay.ResetPending(int(fd)) })
	return pending
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
