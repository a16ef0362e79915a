package tlscodec_test

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

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
