package mysqltls

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// A drain deadline that cuts a login as it reads a refused packet away
// ends the read at once: readAway's own second must not replace the
// cut's deadline, as it did, holding the drain up to a second more. The
// app's bytes are then still unread: nothing read them away.
func TestReadAwayKeepsTheCut(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(net.Conn) net.Conn // as the login wraps the app's side
	}{
		{"afterCut", func(c net.Conn) net.Conn { return c }},
		{"readCounter over afterCut", func(c net.Conn) net.Conn { return &readCounter{Conn: c} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app, side := tcpPair(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			client := tc.wrap(afterCut{side, ctx})
			release := cutWhenDone(ctx, client.SetDeadline)
			sent := []byte("the rest of a refused packet")
			if _, err := app.Write(sent); err != nil {
				t.Fatal(err)
			}
			_ = app.Close() // the rest arrived: a read away would take it at once
			cancel()        // the drain deadline
			release()       // returns once the cut has set its deadlines

			readAway(client, client, 1<<20)

			_ = side.SetReadDeadline(time.Time{})
			got, err := io.ReadAll(side)
			if err != nil || !bytes.Equal(got, sent) {
				t.Errorf("after readAway the app's bytes read %q (%v); want %q still unread: readAway read past the cut", got, err, sent)
			}
		})
	}
}

// tcpPair is a connected loopback pair: the app's end and the sidecar's.
func tcpPair(t *testing.T) (app, side *net.TCPConn) {
	t.Helper()
	return testkit.Pair(t, testkit.Listen(t))
}

// An app still sending its refused packet is read away to its end, past
// a second, while no pause of its reaches readAwayQuiet: a fixed second
// left the rest unread on a busy machine, and the close reset the app's
// write before it read the ERR.
func TestReadAwayWhileBytesKeepComing(t *testing.T) {
	const chunks, pause = 15, 100 * time.Millisecond // 1.5 s in all
	chunk := bytes.Repeat([]byte{'x'}, 1000)
	app, side := tcpPair(t)
	go func() {
		for range chunks {
			time.Sleep(pause)
			if _, err := app.Write(chunk); err != nil {
				return
			}
		}
		_ = app.CloseWrite()
	}()
	readAway(side, side, chunks*len(chunk)) // one frame: the packet ends with it
	_ = side.SetReadDeadline(time.Now().Add(10 * time.Second))
	if rest, err := io.ReadAll(side); err != nil || len(rest) != 0 {
		t.Errorf("after readAway %d bytes of the packet were still unread (%v); want none", len(rest), err)
	}
}

// readAway ends on its own with a packet's rest still to come, each of
// its bounds alone (the others too long to be reached): when the app
// pauses for the quiet (it stopped mid-packet and holds the connection),
// when it is still sending at the max (a trickle that would hold the
// connection, with IDLE_TIMEOUT off, for ever), and when it keeps
// sending full frames past the byte limit (a never-ending packet, as
// fast as it is read), having read no more than the limit.
func TestReadAwayEnds(t *testing.T) {
	const safety = 30 * time.Second // far past every bound set here: only a hang reaches it
	const never = time.Hour         // a bound the test does not reach
	full := make([]byte, mysqlwire.MaxPayload)
	fullHeader := []byte{0xff, 0xff, 0xff, 0}
	for _, tc := range []struct {
		name   string
		bounds awayBounds
		send   func(app *net.TCPConn) error // after a first 100 bytes, until it fails
		frame  int                          // the first frame's length
		want   error
	}{
		{"the app pauses", awayBounds{limit: readAwayLimit, quiet: 100 * time.Millisecond, max: never},
			nil, 1 << 20, os.ErrDeadlineExceeded},
		{"the app still sending at the end", awayBounds{limit: readAwayLimit, quiet: never, max: 300 * time.Millisecond},
			func(app *net.TCPConn) error {
				time.Sleep(50 * time.Millisecond)
				_, err := app.Write([]byte{'x'})
				return err
			}, 1 << 20, os.ErrDeadlineExceeded},
		{"the app sending past the limit", awayBounds{limit: 2 * mysqlwire.MaxPayload, quiet: never, max: never},
			func(app *net.TCPConn) error { // the first frame's rest, then full frames for ever
				_, err := app.Write(full[100:])
				for err == nil {
					if _, err = app.Write(fullHeader); err == nil {
						_, err = app.Write(full)
					}
				}
				return err
			}, mysqlwire.MaxPayload, mysqlwire.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app, side := tcpPair(t)
			if _, err := app.Write(make([]byte, 100)); err != nil { // of the first frame
				t.Fatal(err)
			}
			stop := make(chan struct{})
			defer close(stop)
			if tc.send != nil {
				go func() {
					for {
						select {
						case <-stop:
							return
						default:
							if tc.send(app) != nil {
								return
							}
						}
					}
				}()
			}
			read := &countingReader{r: side}
			done := make(chan error, 1)
			go func() { done <- tc.bounds.discard(side, read, tc.frame) }()
			select {
			case err := <-done:
				if !errors.Is(err, tc.want) {
					t.Errorf("reading the packet away ended with %v; want %v", err, tc.want)
				}
			case <-time.After(safety):
				_ = side.Close()
				<-done
				t.Fatalf("reading the packet away still waited after %s", safety)
			}
			// Payload and a header for each frame it went into: a frame
			// over the limit is not read.
			frames := tc.bounds.limit/mysqlwire.MaxPayload + 1
			if most := tc.bounds.limit + 4*frames; read.n.Load() > most {
				t.Errorf("read %d bytes away; want at most %d, the limit and the headers", read.n.Load(), most)
			}
		})
	}
}

// countingReader counts the bytes read from r.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
