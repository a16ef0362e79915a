//go:build linux && (amd64 || arm64)

package epollrelay

import (
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/splicepipe"
)

// A splicing direction gives its pipe back once a splice moves a small
// message, not while bulk data flows. Past fs.pipe-user-pages-soft (every
// root container on a host shares uid 0's pages) the kernel holds a new
// pipe to 8 KiB: every splice then moves less than a quarter of the 64 KiB
// read buffer, and "small" must be judged against what the pipe holds, or
// the direction opens and closes a pipe for every 64 KiB it moves.
func TestSpliceKeepsItsPipeWhileBulkFlows(t *testing.T) {
	cases := []struct {
		name     string
		pipeSize int // 0: what splicepipe.New gives
		send     int
		keep     bool
	}{
		{"full pipe held to 8 KiB", 8 << 10, 256 << 10, true},
		{"full pipe of the default size", 0, 256 << 10, true},
		{"small message through a pipe held to 8 KiB", 8 << 10, 1 << 10, false},
		{"small message through a pipe of the default size", 0, 1 << 10, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, err := newLoop(Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer l.closeFDs()
			ln := testkit.Listen(t)
			app, client := testkit.Pair(t, ln)
			upstream, server := testkit.Pair(t, ln)
			cfd, err := dupConn(client)
			if err != nil {
				t.Fatal(err)
			}
			ufd, err := dupConn(upstream)
			if err != nil {
				t.Fatal(err)
			}
			p := newPair(cfd, ufd, 0, nil, nil)
			defer func() {
				if !p.finished {
					l.finish(p, "", nil) // closes the duplicated sockets and the pipe
				}
			}()
			d := &p.toU
			r, w, size, err := splicepipe.New()
			if err != nil {
				t.Fatal(err)
			}
			d.pipeR, d.pipeW, d.pipeSize, d.splicing = r, w, size, true
			if tc.pipeSize > 0 {
				got, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(w), syscall.F_SETPIPE_SZ, uintptr(tc.pipeSize))
				if e != 0 {
					t.Fatalf("shrink the pipe: %v", e)
				}
				d.pipeSize = int(got)
			}

			go func() { _, _ = app.Write(make([]byte, tc.send)) }()
			testkit.WaitQueued(t, cfd, min(tc.send, d.pipeSize, 64<<10)) // the socket may hold less than the send
			l.pump(d)
			if p.finished {
				t.Fatal("the pair ended")
			}
			if d.n == 0 {
				t.Fatal("nothing moved")
			}
			_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(server, make([]byte, d.n)); err != nil {
				t.Fatalf("the server read: %v", err)
			}
			if kept := d.splicing && d.pipeR == r; kept != tc.keep {
				t.Errorf("after a splice of %d bytes through a %d-byte pipe: pipe kept %v, want %v", d.n, d.pipeSize, kept, tc.keep)
			}
		})
	}
}
