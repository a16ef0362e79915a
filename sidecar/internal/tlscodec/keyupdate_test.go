package tlscodec_test

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/internal/testopenssl"
	"github.com/example/sidecar/sidecar/internal/tlscodec"
)

// After CloseWrite the codec seals nothing more, even when the server's
// TLS 1.3 KeyUpdate asks for one back: the data path has shut the write
// half, so a reply waiting in Outgoing could never go out. The server's
// records after the KeyUpdate still open (crypto/tls updates its read key
// only when writing the reply did not fail).
func TestNothingSealedAfterCloseWrite(t *testing.T) {
	srv := testopenssl.Start(t)
	sock, err := net.DialTimeout("tcp", srv.Addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	_ = sock.SetDeadline(time.Now().Add(time.Minute))
	transport := tlscodec.NewTransport(sock)
	tc := tls.Client(transport, &tls.Config{RootCAs: srv.Roots, ServerName: "db", MinVersion: tls.VersionTLS13})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c := tlscodec.New(tc, transport)
	c.Start()

	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// The close_notify is taken as sent, as the data path does before it
	// shuts the write half; the server never reads it, as when it sends
	// its KeyUpdate before the close_notify arrives.
	c.Sent(len(c.Outgoing()))

	// s_server reads a line per read from its stdin, so each line waits
	// for its record. The first data line also takes in the session
	// tickets sent after the handshake.
	out := make([]byte, 4096)
	say := func(line string) { t.Helper(); srv.Say(t, line) }
	opens := func(want string) {
		t.Helper()
		var got []byte
		raw := make([]byte, 4096)
		for len(got) < len(want) {
			n, err := sock.Read(raw)
			if err != nil {
				t.Fatalf("opened %q, then read: %v", got, err)
			}
			c.Feed(raw[:n])
			for {
				m, err := c.Open(out)
				if err != nil {
					t.Fatalf("opened %q, then Open: %v", got, err)
				}
				if m == 0 {
					break
				}
				got = append(got, out[:m]...)
			}
			c.Hold()
		}
		if string(got) != want {
			t.Fatalf("opened %q, want %q", got, want)
		}
	}
	say("before")
	opens("before\n")
	say("K") // a KeyUpdate with update_requested
	c.Feed(readRecords(t, sock, 1))
	if n, err := c.Open(out); n != 0 || err != nil {
		t.Fatalf("Open of the KeyUpdate = %q, %v; want nothing", out[:n], err)
	}
	say("after")
	opens("after\n")
	if n := len(c.Outgoing()); n != 0 {
		t.Errorf("%d bytes sealed after CloseWrite (the KeyUpdate reply), waiting for a write half that is shut", n)
	}
}

// CloseWrite over the socket (the portable data path, whose goroutines
// read the connection on) sends the close_notify, then a FIN, and leaves
// the socket no write deadline passed by then: closeNotify sets one to
// fail later writes, and a KeyUpdate reply failing on it makes crypto/tls
// keep its old read key (relaytest's KeyUpdateAfterClientHalfClose runs
// that case against openssl).
func TestCloseWriteOverSocket(t *testing.T) {
	cert, roots := testkit.ServerTLS(t, "db")
	sidecarEnd, serverEnd := testkit.Pair(t, testkit.Listen(t))
	sock := &deadlines{TCPConn: sidecarEnd}
	tc := tls.Client(tlscodec.NewTransport(sock), &tls.Config{RootCAs: roots, ServerName: "db", MinVersion: tls.VersionTLS13})
	server := &counting{Conn: serverEnd}
	ts := tls.Server(server, &tls.Config{Certificates: []tls.Certificate{cert}})
	testkit.Handshake(t, tc, ts)
	handshaken := server.n

	if err := tlscodec.CloseWrite(tc); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	_ = serverEnd.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	if n, err := ts.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("server read %q, %v; want EOF", buf[:n], err)
	}
	if server.n == handshaken {
		t.Error("the server got no close_notify, only the FIN")
	}
	if n, err := serverEnd.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("after the close_notify the socket read %d bytes, %v; want EOF (a FIN)", n, err)
	}
	if d := sock.lastWrite(); !d.IsZero() && !d.After(closed) {
		t.Errorf("the socket was left the write deadline %v, passed when CloseWrite returned: a KeyUpdate reply would fail on it", d)
	}
}

// deadlines is a socket that remembers its last write deadline.
type deadlines struct {
	*net.TCPConn
	mu    sync.Mutex
	write time.Time
}

func (d *deadlines) SetDeadline(t time.Time) error {
	d.setWrite(t)
	return d.TCPConn.SetDeadline(t)
}

func (d *deadlines) SetWriteDeadline(t time.Time) error {
	d.setWrite(t)
	return d.TCPConn.SetWriteDeadline(t)
}

func (d *deadlines) setWrite(t time.Time) { d.mu.Lock(); d.write = t; d.mu.Unlock() }

func (d *deadlines) lastWrite() time.Time { d.mu.Lock(); defer d.mu.Unlock(); return d.write }

// counting counts the bytes read from a connection; read by one goroutine.
type counting struct {
	net.Conn
	n int
}

func (c *counting) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n += n
	return n, err
}

// A server that closed first (MySQL does after COM_QUIT) answers the
// close_notify with a reset, which can come before the FIN goes out: the
// close_notify was sent, so CloseWrite still succeeds, and the reader
// hears the rest.
func TestCloseWriteAfterTheServerClosed(t *testing.T) {
	cert, roots := testkit.ServerTLS(t, "db")
	sidecarEnd, serverEnd := testkit.Pair(t, testkit.Listen(t))
	tc := tls.Client(tlscodec.NewTransport(sidecarEnd), &tls.Config{RootCAs: roots, ServerName: "db", MinVersion: tls.VersionTLS13})
	testkit.Handshake(t, tc, tls.Server(serverEnd, &tls.Config{Certificates: []tls.Certificate{cert}}))
	_ = serverEnd.Close()
	_ = sidecarEnd.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := tc.Read(make([]byte, 64)); n != 0 || err != io.EOF {
		t.Fatalf("read %d bytes, %v; want EOF", n, err)
	}
	if err := tlscodec.CloseWrite(tc); err != nil {
		t.Errorf("CloseWrite: %v", err)
	}
}
