package relaytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/relay"
)

// Rig is one relay under test: the test plays the client (Client) and the
// upstream server (Upstream); the relay runs between them.
type Rig struct {
	Client   *net.TCPConn // the application's end
	Upstream *net.TCPConn // the database's end
	Cancel   context.CancelFunc
	done     chan relay.Result
}

// Start connects two loopback TCP pairs and runs f between them in a new
// goroutine. The rig's connections are closed when the test ends.
func Start(t testing.TB, f relay.Func, idle time.Duration) *Rig {
	t.Helper()
	return StartContext(t, context.Background(), f, idle)
}

// StartContext is Start with a parent context for the relay.
func StartContext(t testing.TB, parent context.Context, f relay.Func, idle time.Duration) *Rig {
	t.Helper()
	return start(t, parent, f, idle, Pair)
}

// start is StartContext with the client's connection made by clientPair.
func start(t testing.TB, parent context.Context, f relay.Func, idle time.Duration, clientPair func(testing.TB) (*net.TCPConn, *net.TCPConn)) *Rig {
	t.Helper()
	client, relayClient := clientPair(t)
	relayUpstream, upstream := Pair(t)
	ctx, cancel := context.WithCancel(parent)
	r := &Rig{Client: client, Upstream: upstream, Cancel: cancel, done: make(chan relay.Result, 1)}
	go runRelay(ctx, f, relayClient, relayUpstream, idle, r.done)
	t.Cleanup(func() {
		cancel()
		_ = client.Close()
		_ = upstream.Close()
	})
	return r
}

func runRelay(ctx context.Context, f relay.Func, client, upstream *net.TCPConn, idle time.Duration, done chan<- relay.Result) {
	done <- f(ctx, client, upstream, idle)
}

// Wait returns the relay's result, failing the test if it does not return
// within the safety bound.
func (r *Rig) Wait(t testing.TB) relay.Result {
	t.Helper()
	select {
	case res := <-r.done:
		return res
	case <-time.After(safety):
		t.Fatalf("relay did not return within %v", safety)
		return relay.Result{}
	}
}

// Pair returns both ends of a fresh loopback TCP connection, closed when
// the test ends.
func Pair(t testing.TB) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln := testkit.Listen(t)
	defer ln.Close() // now: suites open many pairs
	return testkit.Pair(t, ln)
}

// smallBufferPair is Pair with 4 KiB socket buffers, set before the
// connection is made (shrinking them later makes Linux drop segments and
// back off): the dialed end receives slowly and the accepted end's sends
// block early.
func smallBufferPair(t testing.TB) (dialed, accepted *net.TCPConn) {
	t.Helper()
	small := func(opt int) func(string, string, syscall.RawConn) error {
		return func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) { serr = testkit.SetsockoptInt(fd, syscall.SOL_SOCKET, opt, 4096) })
			return errors.Join(err, serr)
		}
	}
	lc := net.ListenConfig{Control: small(syscall.SO_SNDBUF)} // inherited by the accepted socket
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	d := net.Dialer{Control: small(syscall.SO_RCVBUF)}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	dialed = c.(*net.TCPConn)
	t.Cleanup(func() { _ = dialed.Close() })
	a, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	accepted = a.(*net.TCPConn)
	t.Cleanup(func() { _ = accepted.Close() })
	return dialed, accepted
}

// RandomBytes returns n random bytes.
func RandomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// readExactly reads c until EOF and fails the test unless that ends
// cleanly with exactly want; who names c in the failure.
func readExactly(t testing.TB, c *net.TCPConn, who string, want []byte) {
	t.Helper()
	got, err := readAllWithin(c)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s read %d bytes, err %v; want %d bytes then EOF", who, len(got), err, len(want))
	}
}

// readAllWithin reads c until EOF or error, bounded by the safety deadline.
// It returns what was read and the error that ended it (nil for EOF).
func readAllWithin(c *net.TCPConn) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(safety))
	b, err := io.ReadAll(c)
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return b, fmt.Errorf("no EOF within %v: %w", safety, err)
	}
	return b, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func checkResult(t *testing.T, res relay.Result, reason relay.Reason, toUp, toCl int64) {
	t.Helper()
	if res.Reason != reason {
		t.Errorf("Reason = %q (Err %v), want %q", res.Reason, res.Err, reason)
	}
	if toUp >= 0 && res.ToUpstream != toUp {
		t.Errorf("ToUpstream = %d, want %d", res.ToUpstream, toUp)
	}
	if toCl >= 0 && res.ToClient != toCl {
		t.Errorf("ToClient = %d, want %d", res.ToClient, toCl)
	}
	switch reason {
	case relay.ReasonClientError, relay.ReasonUpstreamError:
		if res.Err == nil {
			t.Errorf("Reason %q with nil Err", res.Reason)
		}
	default:
		if res.Err != nil {
			t.Errorf("Reason %q with Err %v, want nil", res.Reason, res.Err)
		}
	}
}

// send writes b on from and reads it back, intact, on to.
func send(from, to *net.TCPConn, b []byte) error {
	errc := make(chan error, 1)
	go writeTo(from, b, errc)
	got := make([]byte, len(b))
	if _, err := io.ReadFull(to, got); err != nil {
		return err
	}
	if err := <-errc; err != nil {
		return err
	}
	if !bytes.Equal(got, b) {
		return errors.New("bytes differ")
	}
	return nil
}

func writeTo(c *net.TCPConn, b []byte, errc chan<- error) {
	_, err := c.Write(b)
	errc <- err
}
