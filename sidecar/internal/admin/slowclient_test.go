package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
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
	for name, d := range map[string]time.Duration{"header": lim.header, "read": lim.read, "idle": lim.idle} {
		if d <= 0 {
			t.Errorf("%s limit = %v: a slow client holds its connection for good", name, d)
		}
	}
	ctx := context.Background()
	srv, err := Listen(ctx, Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if h := srv.http; h.ReadHeaderTimeout != lim.header || h.ReadTimeout != lim.read || h.IdleTimeout != lim.idle {
		t.Errorf("Listen's server: header %v read %v idle %v, want %+v", h.ReadHeaderTimeout, h.ReadTimeout, h.IdleTimeout, lim)
	}
}
