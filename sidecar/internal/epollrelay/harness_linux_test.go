//go:build linux && (amd64 || arm64)

package epollrelay_test

import (
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/epollrelay"
	"github.com/example/sidecar/sidecar/internal/relay"
)

// safety is how long any single step may take before a test gives up; it
// is a net against hangs, not a performance assertion.
const safety = 60 * time.Second

func newEngine(t testing.TB, opts epollrelay.Options) *epollrelay.Engine {
	t.Helper()
	e, err := epollrelay.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// relayed is one client↔upstream pair with the relay running between
// them: App plays the application, Server the database.
type relayed struct {
	App, Server *net.TCPConn
	Result      chan relay.Result
}

// startRelay builds app→(client, upstream)→server and runs f on the middle.
func startRelay(t testing.TB, ln *net.TCPListener, f relay.Func, ctx context.Context, idle time.Duration) *relayed {
	t.Helper()
	app, client := testkit.Pair(t, ln)
	upstream, server := testkit.Pair(t, ln)
	r := &relayed{App: app, Server: server, Result: make(chan relay.Result, 1)}
	t.Cleanup(func() { app.Close(); server.Close() })
	go runRelay(f, ctx, client, upstream, idle, r.Result)
	return r
}

func runRelay(f relay.Func, ctx context.Context, client, upstream *net.TCPConn, idle time.Duration, out chan<- relay.Result) {
	out <- f(ctx, client, upstream, idle)
}

func (r *relayed) wait(t testing.TB) relay.Result {
	t.Helper()
	select {
	case res := <-r.Result:
		return res
	case <-time.After(safety):
		t.Fatalf("relay did not end within %v", safety)
		return relay.Result{}
	}
}

// expectDone waits for the relay and fails the test unless it ended
// cleanly (both sides sent EOF, no error) having moved up bytes to the
// server and down bytes to the app.
func (r *relayed) expectDone(t testing.TB, up, down int64) {
	t.Helper()
	res := r.wait(t)
	if want := (relay.Result{ToUpstream: up, ToClient: down, Reason: relay.ReasonDone}); res != want {
		t.Fatalf("result %+v, want %+v", res, want)
	}
}

// sendRandom writes n random bytes from seed to w and returns their hash.
func sendRandom(w io.Writer, n int, seed uint64) ([32]byte, error) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	h := sha256.New()
	buf := make([]byte, 32<<10)
	for n > 0 {
		chunk := buf[:min(n, len(buf))]
		for i := range chunk {
			chunk[i] = byte(rng.Uint32())
		}
		h.Write(chunk)
		if _, err := w.Write(chunk); err != nil {
			return [32]byte{}, err
		}
		n -= len(chunk)
	}
	return [32]byte(h.Sum(nil)), nil
}

// readAllHash reads r to EOF and returns the byte count and hash.
func readAllHash(r io.Reader) (int64, [32]byte, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return n, [32]byte(h.Sum(nil)), err
}

// openFDs counts this process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("count fds: %v", err)
	}
	return len(ents)
}

// waitFDs waits (bounded) until the fd count is back to want: closes done
// by the runtime after a relay returns may lag a little.
func waitFDs(t testing.TB, want int) {
	t.Helper()
	deadline := time.Now().Add(safety)
	for {
		got := openFDs(t)
		if got <= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fd leak: %d open, want %d", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
