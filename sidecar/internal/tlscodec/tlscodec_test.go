package tlscodec_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/tlscodec"
)

// session is a codec whose TLS peer is a real tls.Server over net.Pipe:
// the test carries raw bytes between them by hand, as an event loop does.
type session struct {
	codec  *tlscodec.Codec
	server *tls.Conn
	raw    net.Conn // the codec's end of the pipe: what the server sent arrives here
	peer   net.Conn // the server's end
}

func newSession(t testing.TB, version uint16) *session {
	t.Helper()
	cert, roots := testkit.ServerTLS(t, "db")
	return newSessionWith(t, cert, roots, version)
}

// newSessionWith is newSession with a given certificate: a fuzz run makes
// one for all its sessions.
func newSessionWith(t testing.TB, cert tls.Certificate, roots *x509.CertPool, version uint16) *session {
	t.Helper()
	clientEnd, serverEnd := net.Pipe()
	t.Cleanup(func() { clientEnd.Close(); serverEnd.Close() })
	transport := tlscodec.NewTransport(clientEnd)
	tc := tls.Client(transport, &tls.Config{RootCAs: roots, ServerName: "db", MinVersion: version, MaxVersion: version})
	ts := tls.Server(serverEnd, &tls.Config{Certificates: []tls.Certificate{cert}})
	testkit.Handshake(t, tc, ts)
	c := tlscodec.New(tc, transport)
	c.Start()
	return &session{codec: c, server: ts, raw: clientEnd, peer: serverEnd}
}

// serverSends has the server write msgs (one record each) and then, if
// closeNotify, its close_notify; it closes the server's end and returns
// the raw bytes the server produced.
func (s *session) serverSends(t *testing.T, closeNotify bool, msgs ...[]byte) []byte {
	t.Helper()
	done := make(chan []byte)
	go func() {
		raw, _ := io.ReadAll(s.raw) // net.Pipe: each write waits for this read
		done <- raw
	}()
	for _, m := range msgs {
		if _, err := s.server.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	if closeNotify {
		_ = s.server.CloseWrite()
	}
	_ = s.peer.Close()
	return <-done
}

// TestOpenAcrossSplits feeds the server's records in pieces of every size
// from 1 byte up, holding between feeds as the loop does before reusing its
// buffer, and checks the plaintext and the clean end.
func TestOpenAcrossSplits(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, piece := range []int{1, 2, 5, 100, 1500, 64 << 10} {
			s := newSession(t, version)
			want := [][]byte{[]byte("greeting"), bytes.Repeat([]byte{7}, 40_000), []byte("ok")}
			raw := s.serverSends(t, true, want...)
			var got []byte
			var end error
			scratch := make([]byte, piece)
			out := make([]byte, 1000)
			for off := 0; off < len(raw) && end == nil; {
				n := copy(scratch, raw[off:])
				off += n
				s.codec.Feed(scratch[:n])
				// One Open per feed, as when the client stops taking bytes:
				// fed bytes are often left over, and must survive Hold.
				m, err := s.codec.Open(out)
				got, end = append(got, out[:m]...), err
				s.codec.Hold()
				for i := range scratch { // the loop reuses its buffer
					scratch[i] = 0xff
				}
			}
			for end == nil { // the rest of what was fed
				m, err := s.codec.Open(out)
				got, end = append(got, out[:m]...), err
				if m == 0 && err == nil {
					t.Fatalf("TLS %x, pieces of %d: the codec wants more bytes after all were fed", version, piece)
				}
			}
			if end != io.EOF {
				t.Errorf("TLS %x, pieces of %d: ended with %v, want io.EOF from close_notify", version, piece, end)
			}
			if !bytes.Equal(got, bytes.Join(want, nil)) {
				t.Errorf("TLS %x, pieces of %d: opened %d bytes, want %d, or they differ", version, piece, len(got), len(bytes.Join(want, nil)))
			}
		}
	}
}

// A stream cut mid-record is an error, not a clean end; a stream that
// stops at a record boundary without close_notify ends as io.EOF (as
// crypto/tls reads it).
func TestOpenEOF(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  int // raw bytes dropped from the end
		want error
	}{
		{"at a record boundary", 0, io.EOF},
		{"mid-record", 3, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSession(t, tls.VersionTLS13)
			raw := s.serverSends(t, false, []byte("row"))
			s.codec.Feed(raw[:len(raw)-tc.cut])
			out := make([]byte, 100)
			if n, err := s.codec.Open(out); tc.cut == 0 && (err != nil || string(out[:n]) != "row") {
				t.Fatalf("Open = %q, %v; want the row", out[:n], err)
			}
			s.codec.Feed(nil)
			var err error
			for err == nil {
				_, err = s.codec.Open(out)
			}
			if err != tc.want {
				t.Errorf("after EOF, Open error = %v, want %v", err, tc.want)
			}
		})
	}
}

// Sealed bytes wait in Outgoing until Sent; the server reads them as sent,
// in pieces, then the close_notify.
func TestSealAndCloseWrite(t *testing.T) {
	s := newSession(t, tls.VersionTLS13)
	msg := bytes.Repeat([]byte("q"), 50_000)
	if err := s.codec.Seal(msg); err != nil {
		t.Fatal(err)
	}
	if err := s.codec.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(s.server)
		got <- b
	}()
	for out := s.codec.Outgoing(); len(out) > 0; out = s.codec.Outgoing() {
		n := min(len(out), 777)
		if _, err := s.raw.Write(out[:n]); err != nil {
			t.Fatal(err)
		}
		s.codec.Sent(n)
	}
	if b := <-got; !bytes.Equal(b, msg) {
		t.Errorf("server read %d bytes, want %d (then close_notify as EOF)", len(b), len(msg))
	}
	if len(s.codec.Outgoing()) != 0 {
		t.Error("Outgoing not empty after everything was sent")
	}
}

// Records crypto/tls took from the socket during the login but did not
// open yet are opened after Start without new bytes. After that the codec
// tells "nothing to open" without asking crypto/tls, so these check the
// two cases where it must ask: more records fed at once than one Open
// takes, and a record larger than Open's buffer.
func TestOpenWhatTheLoginLeft(t *testing.T) {
	cert, roots := testkit.ServerTLS(t, "db")
	dialed, accepted := testkit.Pair(t, testkit.Listen(t))
	transport := tlscodec.NewTransport(dialed)
	tc := tls.Client(transport, &tls.Config{RootCAs: roots, ServerName: "db"})
	ts := tls.Server(accepted, &tls.Config{Certificates: []tls.Certificate{cert}})
	serverWrites := func(msgs ...string) <-chan error {
		done := make(chan error, 1)
		go func() {
			var err error
			for _, m := range msgs {
				if _, err = ts.Write([]byte(m)); err != nil {
					break
				}
			}
			done <- err
		}()
		return done
	}
	testkit.Handshake(t, tc, ts)
	if err := <-serverWrites("ok", "left"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // both records in the socket, so crypto/tls reads them in one go
	out := make([]byte, 1000)
	if n, err := tc.Read(out); err != nil || string(out[:n]) != "ok" {
		t.Fatalf("login Read = %q, %v; want ok", out[:n], err)
	}

	c := tlscodec.New(tc, transport)
	c.Start()
	opens := func(want ...string) {
		t.Helper()
		for _, w := range append(want, "") {
			if n, err := c.Open(out); err != nil || string(out[:n]) != w {
				t.Fatalf("Open = %.20q (%d bytes), %v; want %.20q (%d bytes)", out[:n], n, err, w, len(w))
			}
		}
	}
	opens("left")

	big := strings.Repeat("b", 2500)
	for _, batch := range [][]string{{"row", "rows"}, {big}} {
		if err := <-serverWrites(batch...); err != nil {
			t.Fatal(err)
		}
		c.Feed(readRecords(t, dialed, len(batch)))
		want := batch
		if len(batch[0]) > len(out) {
			want = []string{big[:1000], big[1000:2000], big[2000:]}
		}
		opens(want...)
	}
}

// readRecords reads raw bytes from conn until they hold n whole TLS records.
func readRecords(t testing.TB, conn net.Conn, n int) []byte {
	t.Helper()
	var raw []byte
	buf := make([]byte, 64<<10)
	for end := 0; n > 0; {
		if l := recordLen(raw[end:]); l > 0 {
			end, n = end+l, n-1
			continue
		}
		m, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, buf[:m]...)
	}
	return raw
}

// recordLen is the length of the whole TLS record raw starts with, or 0
// if raw does not hold all of it yet.
func recordLen(raw []byte) int {
	if len(raw) < 5 {
		return 0
	}
	if l := 5 + int(binary.BigEndian.Uint16(raw[3:])); len(raw) >= l {
		return l
	}
	return 0
}
