package proxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// safety bounds every wait; reaching it means a hang, never a slow machine.
const safety = 30 * time.Second

// logBuffer collects the proxy's JSON log lines for assertions.
type logBuffer struct{ testkit.LockedBuffer }

// lines returns the decoded log records whose msg contains msg.
func (b *logBuffer) lines(msg string) []map[string]any { return testkit.JSONLogLines(b.String(), msg) }

// rig is a running proxy.Server.
type rig struct {
	srv    *proxy.Server
	addrs  []string // listener addresses, in forward order
	cancel context.CancelFunc
	done   chan int // connections cut at the drain deadline
	logs   *logBuffer
}

// startProxy listens and serves cfg on loopback (ports default to free ones).
func startProxy(t testing.TB, cfg proxy.Config) *rig {
	t.Helper()
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1"
	}
	logs := &logBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{srv: srv, cancel: cancel, done: make(chan int, 1), logs: logs}
	for _, a := range srv.Addrs() {
		r.addrs = append(r.addrs, a.String())
	}
	go serve(ctx, srv, r.done)
	waitFor(t, "proxy ready", srv.Ready)
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(safety):
			t.Errorf("proxy did not stop within %v", safety)
		}
		if t.Failed() {
			t.Logf("proxy logs:\n%s", logs)
		}
	})
	return r
}

func serve(ctx context.Context, srv *proxy.Server, done chan<- int) {
	cut, _ := srv.Serve(ctx)
	done <- cut
}

// shutdown begins the drain and waits for Serve to return.
func (r *rig) shutdown(t *testing.T) int {
	t.Helper()
	r.cancel()
	select {
	case cut := <-r.done:
		r.done <- cut // for Cleanup
		return cut
	case <-time.After(safety):
		t.Fatalf("Serve did not return within %v", safety)
		return 0
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(safety)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// upstream is an in-process TCP server standing in for the database.
type upstream struct {
	ln       *net.TCPListener
	addr     netip.AddrPort
	mu       sync.Mutex
	accepted int
	conns    []*net.TCPConn
}

// startUpstream listens on ip (a loopback address) and runs handle for
// every connection.
func startUpstream(t testing.TB, ip string, handle func(*net.TCPConn)) *upstream {
	t.Helper()
	u, err := startUpstreamAt(t, &net.TCPAddr{IP: net.ParseIP(ip)}, handle)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func startUpstreamAt(t testing.TB, at *net.TCPAddr, handle func(*net.TCPConn)) (*upstream, error) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", at)
	if err != nil {
		return nil, err
	}
	u := &upstream{ln: ln, addr: ln.Addr().(*net.TCPAddr).AddrPort()}
	var wg sync.WaitGroup
	wg.Add(1)
	go u.acceptLoop(handle, &wg)
	t.Cleanup(func() {
		_ = ln.Close()
		u.mu.Lock()
		for _, c := range u.conns {
			_ = c.Close()
		}
		u.mu.Unlock()
		wg.Wait()
	})
	return u, nil
}

func (u *upstream) acceptLoop(handle func(*net.TCPConn), wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		c, err := u.ln.AcceptTCP()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.accepted++
		u.conns = append(u.conns, c)
		u.mu.Unlock()
		wg.Add(1)
		go runHandler(handle, c, wg)
	}
}

func runHandler(handle func(*net.TCPConn), c *net.TCPConn, wg *sync.WaitGroup) {
	defer wg.Done()
	defer c.Close()
	handle(c)
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.accepted
}

// echo sends back everything it reads, then half-closes.
func echo(c *net.TCPConn) {
	_, _ = io.Copy(c, c)
	_ = c.CloseWrite()
	_, _ = io.Copy(io.Discard, c)
}

// hold keeps the connection open until the peer closes it.
func hold(c *net.TCPConn) { _, _ = io.Copy(io.Discard, c) }

func forwardTo(u *upstream) proxy.Forward {
	return proxy.Forward{TargetHost: u.addr.Addr().String(), TargetPort: int(u.addr.Port())}
}

func dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, safety)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// echoRoundTrip sends data through an echo upstream while reading the echo
// back, then checks the checksum. It returns an error rather than failing so
// many goroutines can use it.
func echoRoundTrip(c *net.TCPConn, data []byte) error {
	_ = c.SetDeadline(time.Now().Add(safety))
	werr := make(chan error, 1)
	go writeAndHalfClose(c, data, werr)
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		return fmt.Errorf("read after %d bytes: %w", n, err)
	}
	if err := <-werr; err != nil {
		return err
	}
	if n != int64(len(data)) {
		return fmt.Errorf("read back %d bytes, sent %d", n, len(data))
	}
	if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
		return errors.New("checksum mismatch")
	}
	return nil
}

func writeAndHalfClose(c *net.TCPConn, data []byte, errc chan<- error) {
	if _, err := c.Write(data); err != nil {
		errc <- fmt.Errorf("write: %w", err)
		return
	}
	errc <- c.CloseWrite()
}

// patient reads and writes c with each call, not the exchange, bounded
// by safety: a thousand exchanges at once on a loaded 2-core runner take
// longer than safety in all (TestLoad1000Connections timed out at 30 s
// with every connection still moving), while a hang is a call that moves
// nothing for that long. Neither WriteTo nor ReadFrom: io.Copy must come
// through Read and Write.
type patient struct{ c *net.TCPConn }

// patientChunk is how much one write may wait for: what a socket's buffer
// takes at once on loopback.
const patientChunk = 16 << 10

func (p patient) Read(b []byte) (int, error) {
	_ = p.c.SetReadDeadline(time.Now().Add(safety))
	return p.c.Read(b)
}

func (p patient) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		_ = p.c.SetWriteDeadline(time.Now().Add(safety))
		m, err := p.c.Write(b[n:min(len(b), n+patientChunk)])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// expectClosed fails unless the peer closes c (EOF or reset) well within
// the safety bound, reading nothing.
func expectClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(safety))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: connection still open after %v", what, safety)
	}
	if n != 0 {
		t.Fatalf("%s: read %d bytes, want a close", what, n)
	}
}

// forwardSnap returns forward i's counters.
func forwardSnap(r *rig, i int) proxy.ForwardSnapshot { return r.srv.Snapshot().Forwards[i] }

func countOf(cs []proxy.Count, label string) uint64 {
	for _, c := range cs {
		if c.Label == label {
			return c.Value
		}
	}
	return 0
}

func cryptoRead(b []byte) (int, error) { return rand.Read(b) }
