package tlscodec_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/tlscodec"
)

// After CloseWrite the codec seals nothing more, even when the server's
// TLS 1.3 KeyUpdate asks for one back: the data path has shut the write
// half, so a reply waiting in Outgoing could never go out. The server's
// records after the KeyUpdate still open (crypto/tls updates its read key
// only when writing the reply did not fail).
func TestNothingSealedAfterCloseWrite(t *testing.T) {
	stdin, addr, roots := startOpenSSLServer(t)
	sock, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	_ = sock.SetDeadline(time.Now().Add(time.Minute))
	transport := tlscodec.NewTransport(sock)
	tc := tls.Client(transport, &tls.Config{RootCAs: roots, ServerName: "db", MinVersion: tls.VersionTLS13})
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
	say := func(line string) {
		t.Helper()
		if _, err := io.WriteString(stdin, line+"\n"); err != nil {
			t.Fatal(err)
		}
	}
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

// startOpenSSLServer runs `openssl s_server` for TLS 1.3 on loopback
// (Go's TLS server cannot send a KeyUpdate) and returns its stdin, whose
// lines it sends (K: a KeyUpdate with update_requested), its address and
// the roots that trust it as "db".
func startOpenSSLServer(t *testing.T) (stdin io.Writer, addr string, roots *x509.CertPool) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		testenv.Unavailable(t, "openssl not found (install Debian's openssl package)")
	}
	cert, roots := testkit.ServerTLS(t, "db")
	dir := t.TempDir()
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for file, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: cert.Certificate[0]}, keyFile: {Type: "PRIVATE KEY", Bytes: key}} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("openssl", "s_server", "-tls1_3", "-accept", "127.0.0.1:0", "-naccept", "1", "-cert", certFile, "-key", keyFile)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := testkit.Start(t, cmd)
	accept := regexp.MustCompile(`ACCEPT (127\.0\.0\.1:[0-9]+)`)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if m := accept.FindStringSubmatch(p.Output.String()); m != nil && !strings.HasSuffix(m[1], ":0") {
			return in, m[1], roots
		}
		if time.Now().After(deadline) || p.Err() != nil {
			t.Fatalf("openssl s_server did not listen: %v\n%s", p.Err(), p.Output)
		}
	}
}
