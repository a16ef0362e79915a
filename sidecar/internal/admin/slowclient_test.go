package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// A client that stops partway through a request, or keeps an idle
// keep-alive connection, is closed: otherwise every such connection holds
// a descriptor for good, and enough of them (ADMIN_ADDR=0.0.0.0 lets the
// network in) leave the forwarder none for its connections.
func TestSlowClientsAreClosed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, send string
	}{
		{"headers never end", "GET /readyz HTTP/1.1\r\nHost: x\r\n"},
		{"declared body never sent", "GET /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"},
		{"idle after an answer", "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			// Short limits keep the test short; production's are longer.
			lim := connLimits{header: 100 * time.Millisecond, read: 200 * time.Millisecond, idle: 200 * time.Millisecond}
			srv := newServer(ln, Config{Version: "dev", Mode: "sleep"}, lim)
			go serveUntilClosed(srv)
			defer srv.Close()

			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tc.send); err != nil {
				t.Fatal(err)
			}
			// Far past every limit: only a connection held for good is still open.
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			got, err := io.ReadAll(c)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("connection still open 20 s after %q (read %q)", tc.send, got)
			}
			if tc.name == "idle after an answer" && !strings.Contains(string(got), "ready: sidecar") {
				t.Errorf("answer before the idle close = %q, want /readyz's", got)
			}
		})
	}
}

// Listen's limits bound every phase of a connection, and leave a
// health check or scrape time to finish.
func TestDefaultConnLimits(t *testing.T) {
	lim := defaultConnLimits()
	for name, d := range map[string]time.Duration{"header": lim.header, "read": lim.read, "write": lim.write, "idle": lim.idle} {
		if d <= 0 {
			t.Errorf("%s limit = %v: a slow client holds its connection for good", name, d)
		}
	}
	// docs/operations.md: a client that does not finish its request or
	// read the answer "in seconds", or idles "for minutes", is disconnected;
	// a collector scraping every 30 s keeps its connection.
	for name, d := range map[string]time.Duration{"header": lim.header, "read": lim.read, "write": lim.write} {
		if d >= time.Minute {
			t.Errorf("%s limit = %v; docs/operations.md says seconds", name, d)
		}
	}
	if lim.idle < time.Minute || lim.idle >= time.Hour {
		t.Errorf("idle limit = %v; docs/operations.md says minutes", lim.idle)
	}
	ctx := context.Background()
	srv, err := Listen(ctx, Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if h := srv.http; h.ReadHeaderTimeout != lim.header || h.ReadTimeout != lim.read || h.WriteTimeout != lim.write || h.IdleTimeout != lim.idle {
		t.Errorf("Listen's server: header %v read %v write %v idle %v, want %+v", h.ReadHeaderTimeout, h.ReadTimeout, h.WriteTimeout, h.IdleTimeout, lim)
	}
}

// closeWatch records when the server closes the connection it accepted.
type closeWatch struct {
	net.Listener
	closed chan struct{}
}

func (l closeWatch) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &watchedConn{Conn: c, closed: l.closed}, nil
}

type watchedConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *watchedConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// A client that asks for /metrics and never reads the answer is closed
// too: a scrape of several forwards outgrows the socket buffers, and the
// server's write would wait on it for good.
func TestClientThatNeverReadsIsClosed(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := closeWatch{Listener: inner, closed: make(chan struct{})}
	var snap proxy.Snapshot
	for i := range 2000 { // megabytes of samples, past any socket buffer
		snap.Forwards = append(snap.Forwards, proxy.ForwardSnapshot{Listen: strconv.Itoa(10000 + i), Target: "writer.example:3306",
			DialFailures: []proxy.Count{{Label: "dns"}, {Label: "refused"}, {Label: "timeout"}}, ConnectionsClosed: []proxy.Count{{Label: "eof"}}})
	}
	lim := connLimits{header: time.Second, read: time.Second, write: 200 * time.Millisecond, idle: time.Minute}
	srv := newServer(ln, Config{Mode: "proxy", Snapshot: func() proxy.Snapshot { return snap }}, lim)
	go serveUntilClosed(srv)
	defer srv.Close()

	// A small receive buffer, set before connecting, and no reads.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = testkit.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024) })
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ln.closed:
	case <-time.After(20 * time.Second): // far past every limit
		t.Fatal("the server still holds the connection of a client that does not read, 20 s on")
	}
}

// `sidecar healthcheck` against an admin port that accepts and never
// answers says so, not Go's "context deadline exceeded" with a hint at a
// port mismatch (which would have been refused at once).
func TestCheckNamesAPortThatNeverAnswers(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			held <- c // kept open, never answered
		}
	}()
	defer func() {
		select {
		case c := <-held:
			_ = c.Close()
		default:
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = Check(ctx, ln.Addr().String())
	if err == nil {
		t.Fatal("Check of a port that never answers passed")
	}
	for _, want := range []string{"no answer within", "ADMIN_PORT"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check = %q; want it to contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "context deadline exceeded") {
		t.Errorf("Check = %q: Go's words, not the user's", err)
	}
}
