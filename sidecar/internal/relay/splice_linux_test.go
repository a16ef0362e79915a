package relay

import (
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/splicepipe"
)

// A splice burst lasts while bulk data flows, through a pipe of any size.
// Past fs.pipe-user-pages-soft (every root container on a host shares uid
// 0's pages) the kernel holds a new pipe to 8 KiB: two page slots, so a
// splice moves two of the socket's page pieces, as from a NIC two segments
// (2,896 bytes at MTU 1500). "Small" must be judged against what the pipe
// holds, or the direction opens and closes a pipe, and copies 32 KiB, for
// every splice. The bulk here is sent as such pieces: 3,000 bytes each on
// pages of their own (sendfile), so each splice moves about 6,000 bytes.
// A small message still ends the burst.
func TestSpliceBurstLastsWhileBulkFlows(t *testing.T) {
	const piece, pieces = 3000, 24 // all queued at once in the receiver's default buffer
	cases := []struct {
		name     string
		pipeSize int  // 0: what splicepipe.New gives
		bulk     bool // pieces of bulk, else one small message
	}{
		{"bulk through a pipe held to 8 KiB", 8 << 10, true},
		{"bulk through a pipe of the default size", 0, true},
		{"small message through a pipe held to 8 KiB", 8 << 10, false},
		{"small message through a pipe of the default size", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln := testkit.Listen(t)
			app, client := testkit.Pair(t, ln)
			upstream, server := testkit.Pair(t, ln)
			send := 1 << 10
			if tc.bulk {
				send = piece * pieces
				sendPieces(t, app, piece, pieces)
			} else if _, err := app.Write(make([]byte, send)); err != nil {
				t.Fatal(err)
			}
			_ = app.CloseWrite() // after the bytes: a small message ends the burst first
			waitQueued(t, client, send)

			pr, pw, size, err := splicepipe.New()
			if err != nil {
				t.Fatal(err)
			}
			defer syscall.Close(pr)
			defer syscall.Close(pw)
			if tc.pipeSize > 0 {
				got, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(pw), syscall.F_SETPIPE_SZ, uintptr(tc.pipeSize))
				if e != 0 {
					t.Fatalf("shrink the pipe: %v", e)
				}
				size = int(got)
			}
			srcRaw, err := client.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			dstRaw, err := upstream.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			read := make(chan int64, 1)
			go func() { n, _ := io.Copy(io.Discard, server); read <- n }()
			var own atomic.Int64
			m, eof, err := splicePipe(srcRaw, dstRaw, pr, pw, size, counts{own: &own})
			if err != nil {
				t.Fatal(err)
			}
			if own.Load() != m {
				t.Errorf("moved %d bytes, counted %d", m, own.Load())
			}
			if whole := eof && m == int64(send); whole != tc.bulk {
				t.Errorf("%d of %d bytes through a %d-byte pipe, EOF seen %v: the burst took it all %v, want %v", m, send, size, eof, whole, tc.bulk)
			}
			_ = upstream.CloseWrite()
			if n := <-read; n != m {
				t.Errorf("the server read %d bytes, want %d", n, m)
			}
		})
	}
}

// sendPieces sends n pieces of size bytes, each from a page of its own
// (sendfile from a file), so the receiver's socket holds n page pieces as
// it holds a NIC's segments.
func sendPieces(t *testing.T, c interface{ File() (*os.File, error) }, size, n int) {
	t.Helper()
	const page = 4096
	f, err := os.CreateTemp(t.TempDir(), "pieces")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, n*page)); err != nil {
		t.Fatal(err)
	}
	out, err := c.File() // a blocking duplicate: each sendfile sends its whole piece
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	for i := range n {
		off := int64(i * page)
		if k, err := syscall.Sendfile(int(out.Fd()), int(f.Fd()), &off, size); err != nil || k != size {
			t.Fatalf("sendfile piece %d: %d bytes, %v", i, k, err)
		}
	}
}

// waitQueued waits until c has at least n bytes to read.
func waitQueued(t *testing.T, c interface {
	SyscallConn() (syscall.RawConn, error)
}, n int) {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Control(func(fd uintptr) { testkit.WaitQueued(t, int(fd), n) }); err != nil {
		t.Fatal(err)
	}
}
