package mysqltls

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
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

// readAway ends on its own with a packet's rest still to come: when the
// app pauses for readAwayQuiet (it stopped mid-packet and holds the
// connection), or when it is still sending at the end (a trickle that
// would hold the connection, with IDLE_TIMEOUT off, for ever).
func TestReadAwayEnds(t *testing.T) {
	const safety = 30 * time.Second // far past readAwayMax: only a hang reaches it
	for _, tc := range []struct {
		name    string
		trickle bool          // a byte every 50 ms, for as long as the test lasts
		end     time.Duration // quietReader's end, from now
	}{
		{"the app pauses", false, readAwayMax},
		{"the app still sending at the end", true, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app, side := tcpPair(t)
			if _, err := app.Write(make([]byte, 100)); err != nil { // of a packet of a MiB
				t.Fatal(err)
			}
			stop := make(chan struct{})
			defer close(stop)
			if tc.trickle {
				go func() {
					for {
						select {
						case <-stop:
							return
						case <-time.After(50 * time.Millisecond):
							if _, err := app.Write([]byte{'x'}); err != nil {
								return
							}
						}
					}
				}()
			}
			done := make(chan error, 1)
			go func() {
				q := quietReader{c: side, r: side, end: time.Now().Add(tc.end)}
				done <- mysqlwire.DiscardPacket(q, 1<<20, readAwayLimit)
			}()
			select {
			case err := <-done:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("reading the packet away ended with %v; want its deadline", err)
				}
			case <-time.After(safety):
				_ = side.Close()
				t.Fatalf("reading the packet away still waited after %s", safety)
			}
		})
	}
}
