package admin

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
)

// emfileListener fails its first n accepts as a process out of
// descriptors does, then waits until closed.
type emfileListener struct {
	net.Listener
	mu sync.Mutex
	n  int
}

func (l *emfileListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.n > 0 {
		l.n--
		l.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: syscall.EMFILE}
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// Out of descriptors, Go's HTTP server logs every failed accept (retrying
// after 5 ms, 10 ms, … up to 1 s): the admin listener writes the first in
// full and then a summary a second, and no count is lost at shutdown.
func TestAdminAcceptErrorsAreRateLimited(t *testing.T) {
	t.Parallel()
	const failures = 8 // Go's backoff: 5+10+…+640 ms ≈ 1.3 s of failing
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &emfileListener{Listener: inner, n: failures}
	var out testkit.LockedBuffer
	srv := newServer(ln, Config{Logger: slog.New(slog.NewJSONHandler(&out, nil))}, defaultConnLimits())
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln.mu.Lock()
		left := ln.n
		ln.mu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("accept failures left: %d", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	counted := 0
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	for _, line := range lines {
		var m struct {
			Level, Msg, Err string
			NotLogged       int `json:"not_logged"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if m.Level != "WARN" || !strings.HasPrefix(m.Msg, "admin listener: Go's HTTP server reported") ||
			!strings.HasPrefix(m.Err, "http: Accept error: ") || !strings.Contains(m.Err, "too many open files") {
			t.Errorf("line %s: want a WARN admin listener line with the accept error", line)
		}
		if m.NotLogged > 0 { // a summary shows the latest of those it counts
			counted += m.NotLogged
		} else {
			counted++
		}
	}
	if len(lines) > 3 {
		t.Errorf("%d lines for %d accept failures in about 1.3 s, want at most 3 (one in full, a summary a second):\n%s", len(lines), failures, out.String())
	}
	if counted != failures {
		t.Errorf("lines account for %d failures, want %d:\n%s", counted, failures, out.String())
	}
}
