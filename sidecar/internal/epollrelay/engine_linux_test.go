//go:build linux && (amd64 || arm64)

package epollrelay_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/epollrelay"
	"github.com/example/sidecar/sidecar/internal/relay"
)

// engineConfigs are the engine shapes every behaviour test runs against.
var engineConfigs = []struct {
	name string
	opts epollrelay.Options
}{
	{"1loop", epollrelay.Options{}},
	{"2loops-smallbuf-unlocked", epollrelay.Options{Loops: 2, BufferSize: 1500, NoLockThread: true}},
	{"nosplice", epollrelay.Options{NoSplice: true}},
}

func forEachEngine(t *testing.T, fn func(t *testing.T, f relay.Func)) {
	for _, c := range engineConfigs {
		t.Run(c.name, func(t *testing.T) {
			e := newEngine(t, c.opts)
			fn(t, e.Relay)
		})
	}
}

func deadline(t *testing.T, c *net.TCPConn) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(safety)); err != nil {
		t.Fatal(err)
	}
}

// bound makes r's App and Server give up reading and writing after safety.
func bound(t *testing.T, r *relayed) {
	t.Helper()
	deadline(t, r.App)
	deadline(t, r.Server)
}

// passUp sets r's deadlines, writes msg at the App end and reads it at the
// Server end: once it returns, the relay has moved bytes for the pair.
func passUp(t *testing.T, r *relayed, msg []byte) {
	t.Helper()
	bound(t, r)
	if _, err := r.App.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r.Server, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
}

// startBounded starts f, with no idle timeout and nothing to cancel it,
// between an App and a Server whose reads and writes give up after safety.
func startBounded(t *testing.T, f relay.Func) *relayed {
	t.Helper()
	r := startRelay(t, testkit.Listen(t), f, context.Background(), 0)
	bound(t, r)
	return r
}

func TestPingPong(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f relay.Func) {
		r := startBounded(t, f)
		req, resp := make([]byte, 100), make([]byte, 300)
		var up, down int64
		for i := range 200 {
			msg := fmt.Appendf(nil, "query %d", i)
			if _, err := r.App.Write(msg); err != nil {
				t.Fatal(err)
			}
			n, err := io.ReadFull(r.Server, req[:len(msg)])
			if err != nil || !bytes.Equal(req[:n], msg) {
				t.Fatalf("server got %q, %v; want %q", req[:n], err, msg)
			}
			answer := bytes.Repeat(msg, 3)
			up, down = up+int64(len(msg)), down+int64(len(answer))
			if _, err := r.Server.Write(answer); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(r.App, resp[:len(answer)]); err != nil || !bytes.Equal(resp[:len(answer)], answer) {
				t.Fatalf("app got %q, %v; want %q", resp[:len(answer)], err, answer)
			}
		}
		// The app hangs up: the server sees EOF, hangs up too, and the
		// relay ends cleanly with every byte counted.
		r.App.Close()
		if n, err := r.Server.Read(req); err != io.EOF {
			t.Fatalf("server read %d, %v after app closed; want EOF", n, err)
		}
		r.Server.Close()
		res := r.wait(t)
		if res.Reason != relay.ReasonDone || res.ToUpstream != up || res.ToClient != down {
			t.Fatalf("result %+v, want eof with %d up and %d down", res, up, down)
		}
	})
}

func TestHalfClose(t *testing.T) {
	cases := []struct {
		name        string
		appFirst    bool
		first, then string
	}{
		{"app closes first", true, "SELECT 1", "1 row"},
		{"server closes first", false, "greeting and goodbye", "late request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachEngine(t, func(t *testing.T, f relay.Func) {
				r := startBounded(t, f)
				first, second := r.App, r.Server
				if !tc.appFirst {
					first, second = r.Server, r.App
				}
				// first sends and half-closes; second reads to EOF, answers
				// over the still-open direction, then closes too.
				if _, err := first.Write([]byte(tc.first)); err != nil {
					t.Fatal(err)
				}
				if err := first.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(second)
				if err != nil || string(got) != tc.first {
					t.Fatalf("got %q, %v; want %q then EOF", got, err, tc.first)
				}
				if _, err := second.Write([]byte(tc.then)); err != nil {
					t.Fatal(err)
				}
				if err := second.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				got, err = io.ReadAll(first)
				if err != nil || string(got) != tc.then {
					t.Fatalf("got %q, %v; want %q then EOF", got, err, tc.then)
				}
				up, down := int64(len(tc.first)), int64(len(tc.then))
				if !tc.appFirst {
					up, down = down, up
				}
				r.expectDone(t, up, down)
			})
		})
	}
}

func TestBulkBothWays(t *testing.T) {
	const size = 8 << 20
	forEachEngine(t, func(t *testing.T, f relay.Func) {
		r := startBounded(t, f)
		type outcome struct {
			n    int64
			sent [32]byte
			got  [32]byte
			err  error
		}
		transfer := func(w, rd *net.TCPConn, seed uint64, out chan<- outcome) {
			var o outcome
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				o.n, o.got, err = readAllHash(rd)
				if err != nil {
					o.err = err
				}
			}()
			sum, err := sendRandom(w, size, seed)
			o.sent = sum
			if err == nil {
				err = w.CloseWrite()
			}
			wg.Wait()
			if o.err == nil {
				o.err = err
			}
			out <- o
		}
		up, down := make(chan outcome, 1), make(chan outcome, 1)
		go transfer(r.App, r.Server, 1, up)
		go transfer(r.Server, r.App, 2, down)
		for name, ch := range map[string]chan outcome{"app→server": up, "server→app": down} {
			o := <-ch
			if o.err != nil || o.n != size || o.sent != o.got {
				t.Errorf("%s: %d bytes, err %v, checksum match %v", name, o.n, o.err, o.sent == o.got)
			}
		}
		r.expectDone(t, size, size)
	})
}

// A stalled reader fills its socket buffers; the engine must park that
// direction without blocking the loop, so other pairs keep flowing.
func TestBackpressureStalledReader(t *testing.T) {
	const size = 16 << 20
	forEachEngine(t, func(t *testing.T, f relay.Func) {
		stalled, other := startBounded(t, f), startBounded(t, f)
		sent := make(chan [32]byte, 1)
		sendErr := make(chan error, 1)
		go func() {
			sum, err := sendRandom(stalled.Server, size, 7)
			sent <- sum
			sendErr <- errors.Join(err, stalled.Server.CloseWrite())
		}()
		// Let the server fill every buffer on the way to the stalled app.
		time.Sleep(200 * time.Millisecond)
		buf := make([]byte, 64)
		for i := range 100 {
			msg := fmt.Appendf(nil, "ping %d", i)
			if _, err := other.App.Write(msg); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(other.Server, buf[:len(msg)]); err != nil {
				t.Fatalf("other pair stuck behind a stalled one: %v", err)
			}
			if _, err := other.Server.Write(msg); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(other.App, buf[:len(msg)]); err != nil {
				t.Fatalf("other pair stuck behind a stalled one: %v", err)
			}
		}
		n, got, err := readAllHash(stalled.App)
		if err != nil || n != size {
			t.Fatalf("stalled app read %d bytes, %v; want %d", n, err, size)
		}
		if want := <-sent; got != want {
			t.Fatal("checksum mismatch after backpressure")
		}
		if err := <-sendErr; err != nil {
			t.Fatal(err)
		}
		stalled.App.CloseWrite()
		if res := stalled.wait(t); res.Reason != relay.ReasonDone || res.ToClient != size {
			t.Fatalf("result %+v", res)
		}
	})
}

func TestIdleTimeout(t *testing.T) {
	// Generous: the busy pair, paced at 20ms, must survive scheduling
	// stalls of nearly 2s on a loaded machine. The engines run in parallel
	// to keep the wall time down.
	const idle, pace = 2 * time.Second, 20 * time.Millisecond
	forEachEngine(t, func(t *testing.T, f relay.Func) {
		t.Parallel()
		ln := testkit.Listen(t)
		quiet := startRelay(t, ln, f, context.Background(), idle)
		busy := startRelay(t, ln, f, context.Background(), idle)
		noTimeout := startRelay(t, ln, f, context.Background(), 0)
		bound(t, busy)
		// busy moves a byte every pace for well past idle; it must survive that.
		start := time.Now()
		for time.Since(start) < idle+idle/4 {
			if _, err := busy.App.Write([]byte{1}); err != nil {
				t.Fatalf("busy pair cut while active: %v", err)
			}
			if _, err := io.ReadFull(busy.Server, make([]byte, 1)); err != nil {
				t.Fatalf("busy pair cut while active: %v", err)
			}
			time.Sleep(pace)
		}
		if res := quiet.wait(t); res.Reason != relay.ReasonIdle {
			t.Fatalf("quiet pair: %+v, want reason %q", res, relay.ReasonIdle)
		}
		select {
		case res := <-busy.Result:
			t.Fatalf("busy pair ended while active: %+v", res)
		default:
		}
		if res := busy.wait(t); res.Reason != relay.ReasonIdle || res.ToUpstream == 0 {
			t.Fatalf("busy pair: %+v, want reason %q after traffic", res, relay.ReasonIdle)
		}
		// Both sides of an idled pair see the connection closed.
		deadline(t, quiet.App)
		if n, err := quiet.App.Read(make([]byte, 1)); err == nil {
			t.Fatalf("app read %d bytes after idle close, want EOF", n)
		}
		select {
		case res := <-noTimeout.Result:
			t.Fatalf("pair without idle timeout ended: %+v", res)
		default:
		}
	})
}

func TestCancel(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f relay.Func) {
		ln := testkit.Listen(t)
		ctx, cancel := context.WithCancel(context.Background())
		r := startRelay(t, ln, f, ctx, 0)
		passUp(t, r, []byte("hello"))
		cancel()
		res := r.wait(t)
		if res.Reason != relay.ReasonCanceled || res.ToUpstream != 5 {
			t.Fatalf("result %+v, want canceled after 5 bytes", res)
		}
		for name, c := range map[string]*net.TCPConn{"app": r.App, "server": r.Server} {
			if n, err := c.Read(make([]byte, 1)); err == nil {
				t.Errorf("%s read %d bytes after cancel, want EOF or reset", name, n)
			}
		}
	})
}

func TestCancelBeforeStart(t *testing.T) {
	forEachEngine(t, func(t *testing.T, f relay.Func) {
		ln := testkit.Listen(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := startRelay(t, ln, f, ctx, 0)
		if res := r.wait(t); res.Reason != relay.ReasonCanceled {
			t.Fatalf("result %+v, want canceled", res)
		}
	})
}

// A reset on one side ends that pair promptly with the right side blamed
// and leaves other pairs untouched.
func TestPeerReset(t *testing.T) {
	cases := []struct {
		name   string
		reason relay.Reason
	}{
		{"upstream resets", relay.ReasonUpstreamError},
		{"client resets", relay.ReasonClientError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachEngine(t, func(t *testing.T, f relay.Func) {
				r, other := startBounded(t, f), startBounded(t, f)
				resetter, survivor := r.Server, r.App
				if tc.reason == relay.ReasonClientError {
					resetter, survivor = r.App, r.Server
					// A query first: an app that resets without sending a
					// byte has left (relay.ReasonClientGone).
					if _, err := r.App.Write([]byte("q")); err != nil {
						t.Fatal(err)
					}
					if _, err := io.ReadFull(r.Server, make([]byte, 1)); err != nil {
						t.Fatal(err)
					}
				}
				// Mid-stream: the survivor is sending when the peer resets.
				if _, err := survivor.Write(make([]byte, 1000)); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(resetter, make([]byte, 1000)); err != nil {
					t.Fatal(err)
				}
				resetter.SetLinger(0)
				resetter.Close()
				// The survivor sees the close promptly, without sending more.
				if n, err := survivor.Read(make([]byte, 1)); err == nil {
					t.Fatalf("survivor read %d bytes after peer reset, want EOF or reset", n)
				}
				res := r.wait(t)
				if res.Reason != tc.reason || res.Err == nil {
					t.Fatalf("result %+v, want %q with an error", res, tc.reason)
				}
				if !errors.Is(res.Err, syscall.ECONNRESET) && !errors.Is(res.Err, syscall.EPIPE) {
					t.Errorf("error %v, want a reset", res.Err)
				}
				if _, err := other.App.Write([]byte("still here")); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(other.Server, make([]byte, 10)); err != nil {
					t.Fatalf("other pair broken by a reset elsewhere: %v", err)
				}
			})
		})
	}
}

// 1,000 pairs move random data both ways at once; every byte arrives, in
// order, and no fd outlives its relay.
func TestManyConcurrent(t *testing.T) {
	const pairs = 1000
	const size = 16 << 10
	forEachEngine(t, func(t *testing.T, f relay.Func) {
		ln := testkit.Listen(t)
		before := openFDs(t)
		rs := make([]*relayed, pairs)
		for i := range rs {
			rs[i] = startRelay(t, ln, f, context.Background(), 0)
		}
		errs := make(chan error, 2*pairs)
		var wg sync.WaitGroup
		for i, r := range rs {
			bound(t, r)
			wg.Add(2)
			go checkedTransfer(&wg, r.App, r.Server, size, uint64(2*i), errs)
			go checkedTransfer(&wg, r.Server, r.App, size+i, uint64(2*i+1), errs)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for i, r := range rs {
			res := r.wait(t)
			want := relay.Result{ToUpstream: size, ToClient: int64(size + i), Reason: relay.ReasonDone}
			if res != want {
				t.Errorf("pair %d: %+v, want %+v", i, res, want)
			}
			r.App.Close()
			r.Server.Close()
		}
		waitFDs(t, before)
	})
}

// checkedTransfer sends n random bytes from w to rd, half-closes, and
// checks rd got exactly them.
func checkedTransfer(wg *sync.WaitGroup, w, rd *net.TCPConn, n int, seed uint64, errs chan<- error) {
	defer wg.Done()
	got := make(chan error, 1)
	var sum [32]byte
	sumReady := make(chan struct{})
	go func() {
		m, h, err := readAllHash(rd)
		<-sumReady
		switch {
		case err != nil:
			got <- fmt.Errorf("read: %w", err)
		case m != int64(n) || h != sum:
			got <- fmt.Errorf("got %d bytes (checksum match %v), want %d", m, h == sum, n)
		default:
			got <- nil
		}
	}()
	var err error
	sum, err = sendRandom(w, n, seed)
	close(sumReady)
	if err == nil {
		err = w.CloseWrite()
	}
	if err != nil {
		errs <- fmt.Errorf("send: %w", err)
	}
	if err := <-got; err != nil {
		errs <- err
	}
}

func TestCloseEndsRelaysAndRefusesNew(t *testing.T) {
	ln := testkit.Listen(t)
	before := openFDs(t)
	e, err := epollrelay.New(epollrelay.Options{Loops: 2})
	if err != nil {
		t.Fatal(err)
	}
	rs := []*relayed{
		startRelay(t, ln, e.Relay, context.Background(), 0),
		startRelay(t, ln, e.Relay, context.Background(), time.Hour),
	}
	// Make sure both are registered before Close.
	for _, r := range rs {
		passUp(t, r, []byte("x"))
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if res := r.wait(t); res.Reason != relay.ReasonCanceled || res.Err != nil {
			t.Errorf("result %+v, want canceled by close", res)
		}
	}
	late := startRelay(t, ln, e.Relay, context.Background(), 0)
	if res := late.wait(t); res.Reason != relay.ReasonCanceled || res.Err != nil {
		t.Errorf("relay after Close: %+v, want refused", res)
	}
	if n, err := late.App.Read(make([]byte, 1)); err == nil {
		t.Errorf("refused pair still open: read %d bytes", n)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, r := range append(rs, late) {
		r.App.Close()
		r.Server.Close()
	}
	waitFDs(t, before)
}

// Out of file descriptors, the engine cannot duplicate a socket; the pair
// goes to the fallback data path instead of failing.
func TestFallbackWhenOutOfFDs(t *testing.T) {
	ln := testkit.Listen(t)
	used := make(chan struct{}, 1)
	fallback := func(ctx context.Context, c, u *net.TCPConn, idle time.Duration) relay.Result {
		used <- struct{}{}
		return relay.Copy(ctx, c, u, idle)
	}
	e := newEngine(t, epollrelay.Options{Fallback: fallback})
	app, client := testkit.Pair(t, ln)
	upstream, server := testkit.Pair(t, ln)
	defer app.Close()
	defer server.Close()

	restore := testkit.NoNewFDs(t)
	res := make(chan relay.Result, 1)
	go runRelay(e.Relay, context.Background(), client, upstream, 0, res)
	var took error
	select {
	case <-used:
	case r := <-res:
		took = fmt.Errorf("engine relayed without the fallback: %+v", r)
	case <-time.After(safety):
		took = errors.New("relay did not start")
	}
	restore()
	if took != nil {
		t.Fatal(took)
	}
	deadline(t, app)
	deadline(t, server)
	if _, err := app.Write([]byte("via fallback")); err != nil {
		t.Fatal(err)
	}
	app.CloseWrite()
	got, err := io.ReadAll(server)
	if err != nil || string(got) != "via fallback" {
		t.Fatalf("server got %q, %v", got, err)
	}
	server.CloseWrite()
	select {
	case r := <-res:
		if r.Reason != relay.ReasonDone {
			t.Fatalf("result %+v", r)
		}
	case <-time.After(safety):
		t.Fatal("fallback relay did not end")
	}
}

// A connection that goes bulk (splice), back to small messages (read and
// send), and bulk again keeps every byte in order; back to small messages,
// it holds no pipe.
func TestBulkThenSmallThenBulk(t *testing.T) {
	const bulkSize = 4 << 20
	forEachEngine(t, func(t *testing.T, f relay.Func) {
		ln := testkit.Listen(t)
		before := openFDs(t)
		r := startRelay(t, ln, f, context.Background(), 0)
		bound(t, r)
		passUp(t, r, []byte("taken over"))
		idle := openFDs(t) // the relay holds the pair's sockets
		var up, down int64 = int64(len("taken over")), 0
		bulk := func(w, rd *net.TCPConn, seed uint64) {
			t.Helper()
			got := make(chan error, 1)
			want := make(chan [32]byte, 1)
			go func() {
				h := sha256.New()
				_, err := io.CopyN(h, rd, bulkSize)
				if err == nil && [32]byte(h.Sum(nil)) != <-want {
					err = errors.New("checksum mismatch")
				}
				got <- err
			}()
			sum, err := sendRandom(w, bulkSize, seed)
			want <- sum
			if err != nil {
				t.Fatal(err)
			}
			if err := <-got; err != nil {
				t.Fatalf("bulk: %v", err)
			}
		}
		bulk(r.App, r.Server, 1)
		up += bulkSize
		buf := make([]byte, 64)
		for i := range 50 {
			msg := fmt.Appendf(nil, "small %d", i)
			if _, err := r.App.Write(msg); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(r.Server, buf[:len(msg)]); err != nil || !bytes.Equal(buf[:len(msg)], msg) {
				t.Fatalf("server got %q, %v; want %q", buf[:len(msg)], err, msg)
			}
			if _, err := r.Server.Write(msg); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(r.App, buf[:len(msg)]); err != nil || !bytes.Equal(buf[:len(msg)], msg) {
				t.Fatalf("app got %q, %v; want %q", buf[:len(msg)], err, msg)
			}
			up, down = up+int64(len(msg)), down+int64(len(msg))
		}
		waitFDs(t, idle) // the bulk direction's pipe is given back
		bulk(r.Server, r.App, 2)
		bulk(r.App, r.Server, 3)
		up, down = up+bulkSize, down+bulkSize
		r.App.CloseWrite()
		r.Server.CloseWrite()
		r.expectDone(t, up, down)
		r.App.Close()
		r.Server.Close()
		waitFDs(t, before) // pipes included
	})
}
