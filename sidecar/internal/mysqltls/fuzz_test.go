package mysqltls_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/example/sidecar/sidecar/internal/iamauth"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// scripted is one side of a login in memory: it reads the bytes given,
// then EOF, and keeps what is written to it.
type scripted struct {
	r   *bytes.Reader
	out bytes.Buffer
}

func (c *scripted) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *scripted) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *scripted) Close() error                { return nil }
func (c *scripted) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3306} }
func (c *scripted) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}
func (c *scripted) SetDeadline(time.Time) error      { return nil }
func (c *scripted) SetReadDeadline(time.Time) error  { return nil }
func (c *scripted) SetWriteDeadline(time.Time) error { return nil }
func framed(seq byte, payload []byte) []byte {
	b, _ := mysqlwire.AppendPacket(nil, seq, payload)
	return b
}
func joined(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
func sslRequest(caps uint32) []byte {
	r, _ := mysqlwire.SSLRequestFrom(handshakeResponse(caps))
	return r
}

// fuzzLocalPassword is the LOCAL_PASSWORD of the IAM target below: it and
// the token must never reach the app.
const fuzzLocalPassword = "local-secret-pw"

// FuzzHandshake runs the connection phase on arbitrary bytes from the
// server and from the app, with and without IAM: no panic, no hang, every
// failure a *Refusal with a known reason, the app's bytes well framed,
// the greeting it gets without CLIENT_SSL, a refusal it was told an ERR
// from the sidecar, and no secret in what it reads.
func FuzzHandshake(f *testing.F) {
	g := framed(0, greeting(7, serverCaps))
	tlsJunk := []byte("\x16\x03\x03\x00\x02\x02\x28") // a TLS alert where the ServerHello would be
	resp := handshakeResponse(appCaps)
	for _, iam := range []bool{false, true} {
		f.Add(g, framed(1, resp), iam)
		f.Add(joined(g, tlsJunk), framed(1, resp), iam)
		f.Add(g, framed(1, sslRequest(appCaps)), iam)
		f.Add(g, framed(1, resp[:20]), iam)
		f.Add(g, framed(1, append([]byte{0, 0, 0, 0}, resp[4:]...)), iam)
		f.Add(g, []byte{0x01, 0x00, 0x10, 1, 0x11}, iam) // a header over the login's limit
		// Another plugin: with LOCAL_PASSWORD, switched to native, answered.
		sha2 := bytes.Replace(resp, []byte(mysqlwire.NativePassword), []byte("caching_sha2_password"), 1)
		f.Add(g, joined(framed(1, sha2), framed(3, mysqlwire.NativeProof([]byte(fuzzLocalPassword), []byte(greetingNonce)))), iam)
		f.Add(joined(g, tlsJunk), joined(framed(1, sha2), framed(3, make([]byte, 20))), iam)
		f.Add(framed(0, greeting(7, serverCaps&^mysqlwire.ClientSSL)), framed(1, resp), iam)
		f.Add(framed(0, mysqlwire.ErrPacket(1129, "HY000", "Host is blocked")), []byte{}, iam)
		f.Add([]byte("SSH-2.0-OpenSSH_9.6\r\n"), []byte{}, iam)
		f.Add(framed(0, greetingFor(7, serverCaps, "caching_sha2_password")[:30]), framed(1, resp), iam)
	}
	f.Fuzz(func(t *testing.T, fromServer, fromApp []byte, iam bool) {
		target := mysqltls.Target{Mode: mysqltls.VerifyIdentity, ServerName: clusterName, RootsFrom: "the fuzz"}
		if iam {
			tokens := &iamauth.Tokens{Region: "us-east-1", Source: iamauth.Source{Name: "fuzz",
				Provider: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider("AKIDFUZZ", "fuzz-secret-key", ""))}}
			target.IAM = &iamauth.Authority{Tokens: tokens, Endpoint: clusterName + ":3306", LocalPassword: []byte(fuzzLocalPassword)}
		}
		app, server := &scripted{r: bytes.NewReader(fromApp)}, &scripted{r: bytes.NewReader(fromServer)}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := target.Handshake(ctx, app, server)
		if conn != nil {
			t.Fatal("a login over fuzzed bytes succeeded: its TLS handshake cannot have been verified")
		}
		var r *mysqltls.Refusal
		if !errors.As(err, &r) || !slices.Contains(mysqltls.Reasons, r.Reason) {
			t.Fatalf("error %v (%T) is not a *Refusal with a known reason", err, err)
		}
		toApp := app.out.Bytes()
		for _, secret := range []string{fuzzLocalPassword, "AKIDFUZZ", "fuzz-secret-key", "X-Amz-"} {
			if bytes.Contains(toApp, []byte(secret)) {
				t.Fatalf("the app was sent %q", secret)
			}
		}
		rd := bytes.NewReader(toApp)
		var packets []mysqlwire.Packet
		for {
			p, err := mysqlwire.ReadPacket(rd, 1<<24)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("the app was sent badly framed bytes %x: %v", toApp, err)
			}
			packets = append(packets, p)
		}
		if len(packets) > 0 {
			if caps, _, _, err := mysqlwire.GreetingCaps(packets[0].Payload); err == nil && caps&mysqlwire.ClientSSL != 0 {
				t.Fatalf("the app was offered TLS: greeting flags %#x", caps)
			}
		}
		if !r.Told {
			return
		}
		if len(packets) == 0 {
			t.Fatalf("refusal %q was told, the app got nothing", r.Message)
		}
		last := packets[len(packets)-1]
		_, msg, isErr := mysqlwire.ErrMessage(last.Payload)
		if !isErr || r.Reason != mysqltls.ReasonServerError && !strings.HasPrefix(msg, "sidecar: ") {
			t.Fatalf("refusal %s was told, the app's last packet is %q", r.Reason, last.Payload)
		}
	})
}

// FuzzPasswordKey decrypts arbitrary ciphertexts and nonces: never a
// panic, and a password the app encrypted with the sidecar's key (RSA-OAEP
// over the password and its NUL, XORed with the nonce) comes back.
func FuzzPasswordKey(f *testing.F) {
	f.Add([]byte("s3cret"), []byte("abcdefghijklmnopqrst"), make([]byte, 256))
	f.Add([]byte(""), []byte("abcdefghijklmnopqrst\x00"), []byte{1})
	f.Add([]byte("pw"), []byte{}, make([]byte, 128))
	key := mysqltls.NewPasswordKey()
	pemKey, err := key.PublicPEM()
	if err != nil {
		f.Fatal(err)
	}
	block, _ := pem.Decode(pemKey)
	parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		f.Fatal(err)
	}
	pub := parsed.(*rsa.PublicKey)
	f.Fuzz(func(t *testing.T, password, nonce, cipher []byte) {
		if pw, err := key.Password(cipher, nonce); err == nil && (len(pw) == 0 || pw[len(pw)-1] != 0) {
			t.Fatalf("Password(%x) = %q: a password must end in NUL", cipher, pw)
		}
		if len(nonce) == 0 || len(password) > 200 || bytes.IndexByte(password, 0) >= 0 {
			return
		}
		plain := append(append([]byte(nil), password...), 0)
		for i := range plain {
			plain[i] ^= nonce[i%len(nonce)]
		}
		enc, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, plain, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := key.Password(enc, nonce)
		if err != nil || !bytes.Equal(got, append(append([]byte(nil), password...), 0)) {
			t.Fatalf("Password of an encrypted %q = %q, %v", password, got, err)
		}
	})
}

// An ERR in place of the greeting is the server's answer, for the app;
// bytes that start like one but are too short to hold its code are no
// greeting (another protocol, a broken server): forwarded, they reached
// the app as a malformed packet, logged as the database refusing with an
// empty message. Found by FuzzHandshake.
func TestGreetTellsAnErrFromNoise(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload string
		reason  string // "" = Greet takes it
	}{
		{"ERR", "\xff\x69\x04#HY000Host '10.0.0.5' is blocked", ""},
		{"ERR without a SQL state", "\xff\x69\x04Host is blocked", ""},
		{"ERR code only", "\xff\x69\x04", ""},
		{"0xff alone", "\xff", mysqltls.ReasonNoGreeting},
		{"0xff and one byte", "\xff\x69", mysqltls.ReasonNoGreeting},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := mysqltls.Target{Mode: mysqltls.VerifyIdentity, ServerName: clusterName}
			server := &scripted{r: bytes.NewReader(framed(0, []byte(tc.payload)))}
			g, err := target.Greet(context.Background(), server)
			var r *mysqltls.Refusal
			switch {
			case tc.reason == "" && (err != nil || g == nil):
				t.Fatalf("Greet: %v; want the server's ERR taken for the app", err)
			case tc.reason != "" && (!errors.As(err, &r) || r.Reason != tc.reason):
				t.Fatalf("Greet: %v; want a refusal %s", err, tc.reason)
			}
		})
	}
}
