// Package testkit holds the helpers that tests in several packages share:
// an output buffer a child may write while the test reads it, loopback
// ports and connections, child processes that end with the test, and a
// self-signed TLS certificate.
// Standard library only, so the forwarder's tests (sidecar/ builds offline)
// may import it.
//
//	ln := testkit.Listen(t)            // 127.0.0.1, closed when the test ends
//	client, server := testkit.Pair(t, ln)
//	p := testkit.Start(t, exec.Command(bin))
//	testkit.WaitListening(t, "127.0.0.1:"+strconv.Itoa(port), 10*time.Second)
//	code := p.ExitCode(t, 30*time.Second)
package testkit

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
)

// LockedBuffer is an io.Writer that a child process or another goroutine
// may write while the test reads it. The zero value is an empty buffer with
// no limit.
type LockedBuffer struct {
	// Limit bounds what is kept: once the buffer holds more than Limit
	// bytes, later writes are dropped yet reported as written, so a chatty
	// writer can neither exhaust memory nor fail. 0 means no limit.
	Limit int

	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Limit > 0 && b.buf.Len() > b.Limit {
		return len(p), nil
	}
	return b.buf.Write(p)
}

// String returns what has been written so far.
func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// JSONLogLines decodes the JSON log lines in s whose msg contains msg;
// other lines are skipped.
func JSONLogLines(s, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(s, "\n") {
		var m map[string]any
		if l == "" || json.Unmarshal([]byte(l), &m) != nil {
			continue
		}
		if text, _ := m["msg"].(string); strings.Contains(text, msg) {
			out = append(out, m)
		}
	}
	return out
}
