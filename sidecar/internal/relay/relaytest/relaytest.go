// Package relaytest is the conformance suite every relay.Func must pass: the
// portable data path and the epoll one are held to the same behaviour.
//
//	func TestConformance(t *testing.T) { relaytest.Run(t, myrelay.Func) }
//
// Every test runs the relay between real loopback TCP connections. Timeouts
// here are generous safety nets, never measurements.
package relaytest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/example/sidecar/sidecar/internal/relay"
	"github.com/example/sidecar/sidecar/internal/tcpstall"
)

// safety bounds every wait in the suite; reaching it is a failure (a hang).
const safety = 30 * time.Second

// Run runs the whole suite against f as subtests.
func Run(t *testing.T, f relay.Func) {
	run(t, f, true)
}

// run runs the suite against f; the tests of a client that leaves before
// a byte moved only if beforeLogin (the relay is what the client first
// meets).
func run(t *testing.T, f relay.Func, beforeLogin bool) {
	type test struct {
		name string
		fn   func(*testing.T, relay.Func)
	}
	tests := []test{
		{"HalfCloseClientFirst", testHalfCloseClientFirst},
		{"HalfCloseUpstreamFirst", testHalfCloseUpstreamFirst},
		{"BulkBothWays", func(t *testing.T, f relay.Func) { testBulk(t, f, 0) }},
		{"BulkBothWaysWithIdleTimeoutSet", func(t *testing.T, f relay.Func) { testBulk(t, f, time.Minute) }},
		{"StalledUpstreamKeepsItsConnection", testStalledUpstream},
		{"IdleTimeout", testIdleTimeout},
		{"TrafficOneWayKeepsBothAlive", testTrafficKeepsAlive},
		{"ContextCancel", testContextCancel},
		{"ContextAlreadyDone", testContextAlreadyDone},
		{"CancelAfterCleanEnd", testCancelAfterCleanEnd},
		{"UpstreamResetMidStream", func(t *testing.T, f relay.Func) { testPeerReset(t, f, true) }},
		{"ClientResetMidStream", func(t *testing.T, f relay.Func) { testPeerReset(t, f, false) }},
		{"UpstreamResetAfterClientClosed", testResetAfterClientClosed},
		{"UpstreamResetsOnQuit", testUpstreamResetsOnQuit},
		{"ClientResetWhileUpstreamStreams", testResetWhileStreaming},
		{"ClientResetWhileUpstreamNotReading", func(t *testing.T, f relay.Func) { testResetWhileUpstreamNotReading(t, f, 0) }},
		{"ClientResetWhileUpstreamNotReadingWithIdleTimeoutSet", func(t *testing.T, f relay.Func) { testResetWhileUpstreamNotReading(t, f, time.Hour) }},
		{"UpstreamResetWhileClientNotReading", testResetWhileClientNotReading},
		{"ManyConcurrent", testManyConcurrent},
		{"StalledClientDoesNotSlowOthers", testStalledClient},
		{"BurstToSlowClientThenQuiet", testBurstThenQuiet},
		{"LiveCounters", func(t *testing.T, f relay.Func) { testLiveCounters(t, f, 0) }},
		{"LiveCountersWithIdleTimeoutSet", func(t *testing.T, f relay.Func) { testLiveCounters(t, f, time.Minute) }},
		{"CountsOnlyDeliveredBytes", testCountsOnlyDelivered},
	}
	if beforeLogin { // the relay is what the client first meets: it may leave without a byte (ReasonClientGone)
		tests = append(tests, []test{
			{"ClientLeavesBeforeGreeting", func(t *testing.T, f relay.Func) { testClientLeaves(t, f, false) }},
			{"ClientResetsBeforeGreeting", func(t *testing.T, f relay.Func) { testClientLeaves(t, f, true) }},
			{"SilentClientClosesAsUpstreamGreets", func(t *testing.T, f relay.Func) { testSilentClientLeaves(t, f, false, false) }},
			{"SilentClientResetsAsUpstreamGreets", func(t *testing.T, f relay.Func) { testSilentClientLeaves(t, f, false, true) }},
			{"SilentClientClosesAfterGreeting", func(t *testing.T, f relay.Func) { testSilentClientLeaves(t, f, true, false) }},
			{"SilentClientResetsAfterGreeting", func(t *testing.T, f relay.Func) { testSilentClientLeaves(t, f, true, true) }},
			{"ServerRefusesThenClientCloses", func(t *testing.T, f relay.Func) { testServerRefusesFirst(t, f, false) }},
			{"ServerRefusesThenClientResets", func(t *testing.T, f relay.Func) { testServerRefusesFirst(t, f, true) }},
			{"ServerClosedThenClientClosedBeforeTheRelay", func(t *testing.T, f relay.Func) { testServerEndedBeforeTheRelay(t, f, false) }},
			{"ServerClosedThenClientResetBeforeTheRelay", func(t *testing.T, f relay.Func) { testServerEndedBeforeTheRelay(t, f, true) }},
			{"FloodOfDepartingClients", func(t *testing.T, f relay.Func) { testFlood(t, f, false) }},
			{"FloodWhileUpstreamSlowToAccept", func(t *testing.T, f relay.Func) { testFlood(t, f, true) }},
		}...)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, f) })
	}
}

// The client sends a request and half-closes; the upstream sees EOF and only
// then answers (like a protocol that waits for the end of the request).
func testHalfCloseClientFirst(t *testing.T, f relay.Func) {
	r := Start(t, f, 0)
	req, resp := RandomBytes(t, 100_000), RandomBytes(t, 50_000)
	if _, err := r.Client.Write(req); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	readExactly(t, r.Upstream, "upstream", req)
	// The client's half-close must not have closed the other direction.
	if _, err := r.Upstream.Write(resp); err != nil {
		t.Fatalf("upstream write after client half-close: %v", err)
	}
	_ = r.Upstream.CloseWrite()
	readExactly(t, r.Client, "client", resp)
	checkResult(t, r.Wait(t), relay.ReasonDone, int64(len(req)), int64(len(resp)))
}

// The upstream sends a greeting and half-closes; the client keeps sending.
func testHalfCloseUpstreamFirst(t *testing.T, f relay.Func) {
	r := Start(t, f, 0)
	greet, req := RandomBytes(t, 70_000), RandomBytes(t, 30_000)
	if _, err := r.Upstream.Write(greet); err != nil {
		t.Fatal(err)
	}
	_ = r.Upstream.CloseWrite()
	readExactly(t, r.Client, "client", greet)
	if _, err := r.Client.Write(req); err != nil {
		t.Fatalf("client write after upstream half-close: %v", err)
	}
	_ = r.Client.CloseWrite()
	readExactly(t, r.Upstream, "upstream", req)
	checkResult(t, r.Wait(t), relay.ReasonDone, int64(len(req)), int64(len(greet)))
}

// Several megabytes each way at once, compared by checksum.
func testBulk(t *testing.T, f relay.Func, idle time.Duration) {
	r := Start(t, f, idle)
	const size = 16 << 20
	errs := make(chan error, 4)
	sum := func(b []byte) [32]byte { return sha256.Sum256(b) }
	up, down := RandomBytes(t, size), RandomBytes(t, size)
	go sendAndHalfClose(r.Client, up, errs)
	go sendAndHalfClose(r.Upstream, down, errs)
	go expectSum(r.Upstream, sum(up), size, "upstream", errs)
	go expectSum(r.Client, sum(down), size, "client", errs)
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	checkResult(t, r.Wait(t), relay.ReasonDone, size, size)
}

// The upstream stops reading (a zero window: a database running LOAD DATA
// LOCAL INFILE while it waits on a lock) for longer than its socket's
// TCP_USER_TIMEOUT, then reads again: the connection is kept and every
// byte arrives. Left to the kernel, the timeout cut it: Linux counts a
// closed window from its first probe, answered or not (package tcpstall).
func testStalledUpstream(t *testing.T, f relay.Func) {
	if !tcpstall.Supported {
		t.Skip("this build leaves TCP_USER_TIMEOUT to the kernel (package tcpstall)")
	}
	const userTimeout = 500 * time.Millisecond
	r := Start(t, func(ctx context.Context, client, upstream *net.TCPConn, idle time.Duration) relay.Result {
		setUserTimeout(t, upstream, userTimeout)
		return f(ctx, client, upstream, idle)
	}, 0)
	_ = r.Upstream.SetReadBuffer(64 << 10)
	const size = 64 << 20 // more than every buffer on the way holds
	up := RandomBytes(t, size)
	errs := make(chan error, 2)
	go sendAndHalfClose(r.Client, up, errs)
	time.Sleep(4 * userTimeout)
	go expectSum(r.Upstream, sha256.Sum256(up), size, "upstream", errs)
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	_ = r.Upstream.CloseWrite()
	checkResult(t, r.Wait(t), relay.ReasonDone, size, 0)
}

func sendAndHalfClose(c *net.TCPConn, b []byte, errs chan<- error) {
	_ = c.SetWriteDeadline(time.Now().Add(safety))
	if _, err := c.Write(b); err != nil {
		errs <- fmt.Errorf("write: %w", err)
		return
	}
	errs <- c.CloseWrite()
}

func expectSum(c *net.TCPConn, want [32]byte, size int, who string, errs chan<- error) {
	_ = c.SetReadDeadline(time.Now().Add(safety))
	h := sha256.New()
	n, err := io.Copy(h, c)
	switch {
	case err != nil:
		errs <- fmt.Errorf("%s read after %d bytes: %w", who, n, err)
	case n != int64(size):
		errs <- fmt.Errorf("%s read %d bytes, want %d", who, n, size)
	case !bytes.Equal(h.Sum(nil), want[:]):
		errs <- fmt.Errorf("%s: checksum mismatch over %d bytes", who, n)
	default:
		errs <- nil
	}
}

// With no traffic for idle, the relay closes both sides.
func testIdleTimeout(t *testing.T, f relay.Func) {
	const idle = 300 * time.Millisecond
	began := time.Now()
	r := Start(t, f, idle)
	res := r.Wait(t)
	if elapsed := time.Since(began); elapsed < idle {
		t.Errorf("relay ended after %v, before the idle timeout %v", elapsed, idle)
	}
	checkResult(t, res, relay.ReasonIdle, 0, 0)
	for who, c := range map[string]*net.TCPConn{"client": r.Client, "upstream": r.Upstream} {
		if _, err := readAllWithin(c); err != nil && isTimeout(err) {
			t.Errorf("%s not closed after idle timeout: %v", who, err)
		}
	}
}

// Traffic in one direction only resets the idle clock for both: the quiet
// direction must not time out while the other one moves bytes.
func testTrafficKeepsAlive(t *testing.T, f relay.Func) {
	// A byte every 20ms against a 2s idle timeout: a scheduling stall of
	// nearly 2s on a loaded machine still leaves the clock reset in time.
	// Traffic runs past idle, so a relay that ignores it would cut it.
	const idle, pace = 2 * time.Second, 20 * time.Millisecond
	r := Start(t, f, idle)
	var sent []byte
	for start, i := time.Now(), 0; time.Since(start) < idle+idle/4; i++ {
		b := []byte{byte(i)}
		if _, err := r.Client.Write(b); err != nil {
			t.Fatalf("write %d after %v: %v", i, time.Since(start), err)
		}
		sent = append(sent, b...)
		time.Sleep(pace)
	}
	_ = r.Client.CloseWrite()
	got, err := readAllWithin(r.Upstream)
	if err != nil || !bytes.Equal(got, sent) {
		t.Fatalf("upstream got %v, err %v; want %v then EOF", got, err, sent)
	}
	_ = r.Upstream.CloseWrite()
	if _, err := readAllWithin(r.Client); err != nil {
		t.Fatalf("client: %v", err)
	}
	checkResult(t, r.Wait(t), relay.ReasonDone, int64(len(sent)), 0)
}

// Canceling the context closes both sides promptly, mid-transfer.
func testContextCancel(t *testing.T, f relay.Func) {
	r := Start(t, f, 0)
	msg := RandomBytes(t, 1000)
	if _, err := r.Client.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	_ = r.Upstream.SetReadDeadline(time.Now().Add(safety))
	if _, err := io.ReadFull(r.Upstream, got); err != nil {
		t.Fatal(err)
	}
	r.Cancel()
	checkResult(t, r.Wait(t), relay.ReasonCanceled, int64(len(msg)), 0)
	for who, c := range map[string]*net.TCPConn{"client": r.Client, "upstream": r.Upstream} {
		if _, err := readAllWithin(c); err != nil && isTimeout(err) {
			t.Errorf("%s not closed after cancel: %v", who, err)
		}
	}
}

// A context that is already done ends the relay at once.
func testContextAlreadyDone(t *testing.T, f relay.Func) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := StartContext(t, ctx, f, 0)
	checkResult(t, r.Wait(t), relay.ReasonCanceled, 0, 0)
}

// A cut (the drain deadline) that comes once both directions have ended
// cleanly, as each peer's EOF shows, finds the session over: ReasonDone,
// not ReasonCanceled. The cut lands as the relay returns, a window the
// relay's own scheduling decides, so many sessions run, in both orders.
func testCancelAfterCleanEnd(t *testing.T, f relay.Func) {
	for i := range 200 {
		r := Start(t, f, 0)
		first, last := r.Client, r.Upstream // the side that half-closes first
		if i%2 == 1 {
			first, last = last, first
		}
		msg := []byte("bye")
		if err := send(first, last, msg); err != nil {
			t.Fatal(err)
		}
		_ = first.CloseWrite()
		if b, err := readAllWithin(last); err != nil || len(b) != 0 {
			t.Fatalf("session %d: read %q, %v after the peer's half-close; want EOF", i, b, err)
		}
		_ = last.CloseWrite()
		if b, err := readAllWithin(first); err != nil || len(b) != 0 {
			t.Fatalf("session %d: read %q, %v after the peer's half-close; want EOF", i, b, err)
		}
		r.Cancel() // both directions have ended: too late to cut the session
		res := r.Wait(t)
		if res.Reason != relay.ReasonDone {
			t.Fatalf("session %d, ended cleanly before the cut: Reason = %q (Err %v), want %q", i, res.Reason, res.Err, relay.ReasonDone)
		}
		_ = r.Client.Close()
		_ = r.Upstream.Close()
	}
}

// One peer resets after some data: the other peer sees the close promptly,
// the result blames the peer that reset, and the counts are exact, in the
// Result and live (the Counters behind sidecar_bytes_total) alike.
func testPeerReset(t *testing.T, f relay.Func, upstreamResets bool) {
	var c relay.Counters
	r := StartContext(t, relay.WithCounters(context.Background(), &c), f, 0)
	resetter, survivor, reason := r.Upstream, r.Client, relay.ReasonUpstreamError
	if !upstreamResets {
		resetter, survivor, reason = r.Client, r.Upstream, relay.ReasonClientError
	}
	msg := RandomBytes(t, 64_000)
	if _, err := resetter.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	_ = survivor.SetReadDeadline(time.Now().Add(safety))
	if _, err := io.ReadFull(survivor, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("survivor read: %v", err)
	}
	_ = resetter.SetLinger(0) // close with RST
	_ = resetter.Close()
	if _, err := readAllWithin(survivor); err != nil && isTimeout(err) {
		t.Fatalf("survivor not closed after peer reset: %v", err)
	}
	toUp, toCl := int64(0), int64(len(msg))
	if !upstreamResets {
		toUp, toCl = toCl, toUp
	}
	checkResult(t, r.Wait(t), reason, toUp, toCl)
	if c.ToUpstream.Load() != toUp || c.ToClient.Load() != toCl {
		t.Errorf("live counters after the reset: %d up, %d down; want %d and %d", c.ToUpstream.Load(), c.ToClient.Load(), toUp, toCl)
	}
}

// The client sends its last bytes and closes its side (an app's COM_QUIT
// and close); the upstream reads them, then resets, as a database that
// closed on COM_QUIT answers a TLS close_notify: the app was done, so the
// relay ends as ReasonDone (relay.Settle).
func testResetAfterClientClosed(t *testing.T, f relay.Func) {
	r := Start(t, f, 0)
	quit := []byte{1, 0, 0, 0, 1} // COM_QUIT
	if _, err := r.Client.Write(quit); err != nil {
		t.Fatal(err)
	}
	_ = r.Client.CloseWrite()
	_ = r.Upstream.SetReadDeadline(time.Now().Add(safety))
	got, err := io.ReadAll(r.Upstream) // to the client's EOF
	if err != nil || !bytes.Equal(got, quit) {
		t.Fatalf("upstream read %q, %v; want %q then EOF", got, err, quit)
	}
	_ = r.Upstream.SetLinger(0) // close with RST
	_ = r.Upstream.Close()
	checkResult(t, r.Wait(t), relay.ReasonDone, int64(len(quit)), 0)
}

// The client sends a query; the upstream streams its result; the client
// resets. The relay's failure is a write to the client: still the client's
// fault.
func testResetWhileStreaming(t *testing.T, f relay.Func) {
	r := Start(t, f, 0)
	query := []byte{1, 0, 0, 0, 3} // a client that sent nothing would be gone (testSilentClientLeaves)
	if err := send(r.Client, r.Upstream, query); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go streamUntil(r.Upstream, stop, &wg)
	buf := make([]byte, 64<<10)
	_ = r.Client.SetReadDeadline(time.Now().Add(safety))
	if _, err := io.ReadFull(r.Client, buf); err != nil {
		t.Fatal(err)
	}
	_ = r.Client.SetLinger(0)
	_ = r.Client.Close()
	res := r.Wait(t)
	close(stop)
	wg.Wait()
	checkResult(t, res, relay.ReasonClientError, int64(len(query)), -1)
	if res.ToClient < int64(len(buf)) {
		t.Errorf("ToClient = %d, want at least the %d bytes the client read", res.ToClient, len(buf))
	}
}

// The upstream stops reading (a database waiting on a lock) while the
// client sends, until the relay, unable to pass more on, stops reading the
// client too; then the client resets (its query timed out). The relay
// reads neither side, yet must end the session at once, blamed on the
// client, and close the upstream: not hold the connection, its
// MAX_CONNECTIONS slot and the database's session until the database
// reads again.
func testResetWhileUpstreamNotReading(t *testing.T, f relay.Func, idle time.Duration) {
	r := Start(t, f, idle)
	fillUntilBlocked(t, r.Client)
	_ = r.Client.SetLinger(0) // close with RST
	_ = r.Client.Close()
	// Waited for before the upstream reads a byte: reading would unblock the relay.
	checkResult(t, r.Wait(t), relay.ReasonClientError, -1, 0)
	if _, err := readAllWithin(r.Upstream); err != nil && isTimeout(err) {
		t.Errorf("upstream not closed after the client reset: %v", err)
	}
}

// The mirror image: the client stops reading a result, the upstream's
// sends back up until the relay stops reading it, then the upstream
// resets (the session was killed). Blamed on the upstream, at once.
func testResetWhileClientNotReading(t *testing.T, f relay.Func) {
	r := Start(t, f, 0)
	query := []byte{1, 0, 0, 0, 3}
	if err := send(r.Client, r.Upstream, query); err != nil {
		t.Fatal(err)
	}
	fillUntilBlocked(t, r.Upstream)
	_ = r.Upstream.SetLinger(0) // close with RST
	_ = r.Upstream.Close()
	checkResult(t, r.Wait(t), relay.ReasonUpstreamError, int64(len(query)), -1)
	if _, err := readAllWithin(r.Client); err != nil && isTimeout(err) {
		t.Errorf("client not closed after the upstream reset: %v", err)
	}
}

// fillUntilBlocked writes to c until a write makes no progress for half a
// second: every buffer between c and a peer that does not read is full.
// Were the relay only slow, not blocked, the test would still pass.
func fillUntilBlocked(t *testing.T, c *net.TCPConn) {
	t.Helper()
	chunk := make([]byte, 256<<10)
	for total := 0; ; {
		_ = c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Write(chunk)
		total += n
		switch {
		case isTimeout(err) && n == 0:
			_ = c.SetWriteDeadline(time.Time{})
			return
		case err != nil && !isTimeout(err):
			t.Fatalf("client write after %d bytes: %v", total, err)
		case total > 1<<30:
			t.Fatalf("the relay took %d bytes from the client with the upstream not reading", total)
		}
	}
}

func streamUntil(c *net.TCPConn, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	chunk := make([]byte, 32<<10)
	for {
		select {
		case <-stop:
			return
		default:
		}
		_ = c.SetWriteDeadline(time.Now().Add(safety))
		if _, err := c.Write(chunk); err != nil {
			return
		}
	}
}

// Many relays at once, each moving random data both ways.
func testManyConcurrent(t *testing.T, f relay.Func) {
	exchangeMany(t, f, 200, 256<<10)
}

// exchangeMany runs n relays at once, each moving size random bytes both
// ways, and checks every byte and every Result.
func exchangeMany(t *testing.T, f relay.Func, n, size int) {
	t.Helper()
	errs := make(chan error, 4*n)
	rigs := make([]*Rig, n)
	for i := range rigs {
		r := Start(t, f, 0)
		rigs[i] = r
		up, down := RandomBytes(t, size), RandomBytes(t, size)
		go sendAndHalfClose(r.Client, up, errs)
		go sendAndHalfClose(r.Upstream, down, errs)
		go expectSum(r.Upstream, sha256.Sum256(up), size, fmt.Sprintf("upstream %d", i), errs)
		go expectSum(r.Client, sha256.Sum256(down), size, fmt.Sprintf("client %d", i), errs)
	}
	for range 4 * n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, r := range rigs {
		checkResult(t, r.Wait(t), relay.ReasonDone, int64(size), int64(size))
	}
}

// One client stops reading while its upstream keeps sending, so that relay
// is blocked writing; relays next to it must keep moving at full speed.
func testStalledClient(t *testing.T, f relay.Func) {
	stalled := Start(t, f, 0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go streamUntil(stalled.Upstream, stop, &wg)
	defer func() { close(stop); stalled.Cancel(); wg.Wait() }()

	exchangeMany(t, f, 10, 1<<20)
	stalled.Cancel()
	checkResult(t, stalled.Wait(t), relay.ReasonCanceled, 0, -1)
}

// Counters in the context grow as bytes are delivered: exchanges of a few
// bytes and of a few hundred KB (more than one splice chunk) show in them
// while the connection is still open, and at the end they equal the
// Result's counts (nothing counted twice).
func testLiveCounters(t *testing.T, f relay.Func, idle time.Duration) {
	var c relay.Counters
	r := StartContext(t, relay.WithCounters(context.Background(), &c), f, idle)
	for _, c := range []*net.TCPConn{r.Client, r.Upstream} {
		_ = c.SetDeadline(time.Now().Add(safety))
	}
	var up, down int64
	for _, size := range []int{10, 300_000, 1} {
		req, resp := RandomBytes(t, size), RandomBytes(t, 2*size+7)
		if err := send(r.Client, r.Upstream, req); err != nil {
			t.Fatalf("request of %d bytes: %v", len(req), err)
		}
		if err := send(r.Upstream, r.Client, resp); err != nil {
			t.Fatalf("response of %d bytes: %v", len(resp), err)
		}
		up, down = up+int64(len(req)), down+int64(len(resp))
		deadline := time.Now().Add(safety)
		for c.ToUpstream.Load() != up || c.ToClient.Load() != down {
			if time.Now().After(deadline) {
				t.Fatalf("live counters %d up, %d down with the connection open; want %d and %d",
					c.ToUpstream.Load(), c.ToClient.Load(), up, down)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	_ = r.Client.CloseWrite()
	_ = r.Upstream.CloseWrite()
	checkResult(t, r.Wait(t), relay.ReasonDone, up, down)
	if c.ToUpstream.Load() != up || c.ToClient.Load() != down {
		t.Errorf("live counters at the end: %d up, %d down; want %d and %d", c.ToUpstream.Load(), c.ToClient.Load(), up, down)
	}
}

// A client that leaves, by FIN or reset, before a byte moved either way
// (MySQL is server-first: it has not even seen the greeting) ends the
// relay at once, while the upstream is silent: its slot must not wait for
// the server.
func testClientLeaves(t *testing.T, f relay.Func, reset bool) {
	r := Start(t, f, 0)
	if reset {
		_ = r.Client.SetLinger(0)
	}
	_ = r.Client.Close()
	res := r.Wait(t)
	if res.Reason != relay.ReasonClientGone || res.ToUpstream != 0 || res.ToClient != 0 || res.Err != nil {
		t.Errorf("result %+v, want reason %q, no bytes and no error", res, relay.ReasonClientGone)
	}
	if _, err := readAllWithin(r.Upstream); err != nil && isTimeout(err) {
		t.Errorf("upstream not closed after the client left: %v", err)
	}
}

// The upstream answers a query with a burst and then waits (a result set,
// then the next request's turn), to a client that reads slowly: every byte
// the relay took from the upstream must reach the client without more
// upstream traffic or an EOF to push it along.
func testBurstThenQuiet(t *testing.T, f relay.Func) {
	r := start(t, context.Background(), f, 0, smallBufferPair)
	query := []byte{1, 0, 0, 0, 3} // a client that sent nothing would be gone (testSilentClientLeaves)
	if err := send(r.Client, r.Upstream, query); err != nil {
		t.Fatal(err)
	}
	burst := RandomBytes(t, 1<<20)
	errc := make(chan error, 1)
	go writeTo(r.Upstream, burst, errc)
	if err := <-errc; err != nil { // all in flight: the relay holds what the client's buffers do not
		t.Fatal(err)
	}
	got := make([]byte, len(burst))
	_ = r.Client.SetReadDeadline(time.Now().Add(safety))
	for off := 0; off < len(got); {
		n, err := r.Client.Read(got[off:min(off+1024, len(got))])
		if err != nil {
			t.Fatalf("client read after %d of %d bytes, with the upstream quiet: %v", off, len(got), err)
		}
		off += n
	}
	if !bytes.Equal(got, burst) {
		t.Fatal("the client got different bytes")
	}
	_ = r.Client.CloseWrite()
	_ = r.Upstream.CloseWrite()
	checkResult(t, r.Wait(t), relay.ReasonDone, int64(len(query)), int64(len(burst)))
}

// The byte counters count what was delivered: an upstream that stops
// reading stalls the relay with bytes it took from the client still on
// their way (with TLS, sealed and not all out yet), and a relay canceled
// then has counted exactly what the upstream gets, not those.
func testCountsOnlyDelivered(t *testing.T, f relay.Func) {
	var c relay.Counters
	r := StartContext(t, relay.WithCounters(context.Background(), &c), f, 0)
	go func() { // until every buffer on the way is full
		_ = r.Client.SetWriteDeadline(time.Now().Add(safety))
		_, _ = r.Client.Write(make([]byte, 64<<20))
	}()
	last, steady := int64(-1), 0
	for deadline := time.Now().Add(safety); steady < 10; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the relay never stalled")
		}
		if v := c.ToUpstream.Load(); v == last {
			steady++
		} else {
			last, steady = v, 0
		}
	}
	r.Cancel()
	res := r.Wait(t)
	_ = r.Upstream.SetReadDeadline(time.Now().Add(safety))
	got, err := io.Copy(io.Discard, r.Upstream)
	if err != nil {
		t.Fatalf("the upstream read %d bytes, then %v", got, err)
	}
	if n := c.ToUpstream.Load(); n != got || res.ToUpstream != got {
		t.Errorf("counted %d bytes to the upstream (Result %d), which got %d", n, res.ToUpstream, got)
	}
}
