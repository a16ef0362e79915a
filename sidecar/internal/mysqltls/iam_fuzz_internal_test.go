package mysqltls

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/iamauth"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/relay"
)

// FuzzIAMSession runs an IAM session's relay on arbitrary bytes from the
// app and from the server, under arbitrary app flags: the frame reading,
// COM_CHANGE_USER parsing and the server's verdict all see the app's and
// the server's bytes after the login. No panic (it would end every
// connection of the sidecar), no hang, and no secret reaches the app.
func FuzzIAMSession(f *testing.F) {
	const (
		name     = "db.fuzz.example"
		local    = "fuzz-local-pw"
		scramble = "abcdefghijklmnopqrst"
	)
	cert, pool := testkit.ServerTLS(f, name)
	ln := testkit.Listen(f)
	caps := mysqlwire.ClientProtocol41 | mysqlwire.ClientSecureConnection | mysqlwire.ClientPluginAuth |
		mysqlwire.ClientConnectAttrs | mysqlwire.ClientPluginAuthLenencClientData | mysqlwire.ClientConnectWithDB
	frame := func(seq byte, p []byte) []byte { b, _ := mysqlwire.AppendPacket(nil, seq, p); return b }
	cu := (&mysqlwire.ChangeUser{User: "bob", AuthData: bytes.Repeat([]byte{7}, 20), Database: "orders", Charset: 45,
		Plugin: mysqlwire.NativePassword, Attrs: []byte{}}).Append(nil, caps)
	ok := []byte{mysqlwire.OK, 0, 0, 2, 0, 0, 0}
	toClear := append([]byte{mysqlwire.AuthSwitch}, mysqlwire.ClearPassword+"\x00"...)
	proof := mysqlwire.NativeProof([]byte(local), []byte(scramble))
	for _, wants := range []bool{false, true} {
		f.Add(frame(0, []byte("\x03SELECT 1")), frame(1, ok), caps, wants)
		f.Add(frame(0, cu), bytes.Join([][]byte{frame(1, toClear), frame(3, ok)}, nil), caps, wants)
		f.Add(bytes.Join([][]byte{frame(0, cu), frame(3, proof)}, nil), frame(1, toClear), caps, wants)
		f.Add(frame(0, cu), frame(1, mysqlwire.ErrPacket(1045, "28000", "denied")), caps, wants)
		f.Add(frame(0, cu), frame(1, nil), caps, wants)
		f.Add(frame(0, cu[:5]), frame(1, ok), caps, wants)
		f.Add(frame(0, cu), frame(1, ok), caps&^mysqlwire.ClientSecureConnection, wants)
		f.Add([]byte{0xff, 0xff, 0xff, 0, mysqlwire.ComChangeUser}, []byte{}, caps, wants)
		f.Add(bytes.Join([][]byte{frame(255, []byte("file")), frame(0, cu)}, nil), frame(1, ok), caps, wants)
	}
	f.Fuzz(func(t *testing.T, fromApp, fromServer []byte, appCaps uint32, wantsProof bool) {
		app, side := testkit.Pair(t, ln)
		dbConn, sidecarConn := testkit.Pair(t, ln)
		tokens := &iamauth.Tokens{Region: "us-east-1", Source: iamauth.Source{Name: "fuzz",
			Provider: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider("AKIDFUZZ", "fuzz-secret-key", ""))}}
		target := &Target{IAM: &iamauth.Authority{Tokens: tokens, Endpoint: name + ":3306"}}
		if wantsProof {
			target.IAM.LocalPassword = []byte(local)
		}
		tc := tls.Client(sidecarConn, &tls.Config{RootCAs: pool, ServerName: name})
		db := tls.Server(dbConn, &tls.Config{Certificates: []tls.Certificate{cert}})
		testkit.Handshake(t, tc, db)
		sessionCaps := appCaps&^(mysqlwire.ClientCompress|mysqlwire.ClientZstdCompressionAlgorithm) | caps | mysqlwire.ClientSSL
		conn := &Conn{Conn: tc, iam: &iamSession{target: target, caps: sessionCaps, appCaps: appCaps, scramble: []byte(scramble)}}

		// The server answers the first packet it gets (or its end) with
		// its piece, then reads to the end and closes; the app sends its
		// bytes, half-closes and reads to the end.
		go func() {
			_, _ = mysqlwire.ReadPacket(db, mysqlwire.MaxPayload)
			_, _ = db.Write(fromServer)
			_, _ = io.Copy(io.Discard, db)
			_ = db.Close()
		}()
		toApp := make(chan []byte, 1)
		go func() {
			_, _ = app.Write(fromApp)
			_ = app.CloseWrite()
			b, _ := io.ReadAll(app)
			toApp <- b
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		res := Relay(ctx, side, conn, 0)
		if res.Reason == relay.ReasonCanceled {
			t.Fatalf("the session hung: both sides had ended, it had not (%v)", res.Err)
		}
		got := <-toApp
		for _, secret := range []string{local, "AKIDFUZZ", "fuzz-secret-key", "X-Amz-"} {
			if bytes.Contains(got, []byte(secret)) && !bytes.Contains(fromServer, []byte(secret)) {
				t.Fatalf("the app was sent %q", secret)
			}
		}
	})
}
