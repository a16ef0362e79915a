package mysqltls_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/iamauth"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

func iamTarget(t testing.TB, ca *testkit.CA) mysqltls.Target {
	t.Helper()
	tokens := &iamauth.Tokens{Region: "us-east-1", Source: iamauth.Source{Name: "test",
		Provider: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "session"))}}
	return mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, RootsFrom: "the test CA", ServerName: clusterName,
		IAM: &iamauth.Authority{Tokens: tokens, Endpoint: clusterName + ":3306"}, Buffers: mysqltls.NewBuffers()}
}

// iamLogin sends the app's login (database, charset, attributes, no
// password) and returns the sidecar's answer to it.
func iamLogin(t *testing.T, addr string) (*app, mysqlwire.Packet) {
	t.Helper()
	a := dialApp(t, addr)
	g := a.read()
	caps, _, _, err := mysqlwire.GreetingCaps(g.Payload)
	const kept = mysqlwire.ClientSessionTrack | mysqlwire.ClientQueryAttributes | mysqlwire.ClientDeprecateEOF
	if hidden := mysqlwire.ClientCompress | mysqlwire.ClientZstdCompressionAlgorithm | mysqlwire.ClientSSL; err != nil || caps&hidden != 0 || caps&kept != kept {
		t.Fatalf("greeting flags %#x, %v: compression (zlib, zstd) and TLS must be hidden in iam mode, the rest kept", caps, err)
	}
	resp := handshakeResponse(appCaps &^ mysqlwire.ClientCompress)
	a.write(1, resp)
	return a, a.read()
}

func TestIAMLoginCarriesTheAppsSession(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	for _, tc := range []struct {
		name, switchTo string
	}{{"token in the first packet", ""}, {"token after a switch to mysql_clear_password", mysqlwire.ClearPassword}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName), switchTo: tc.switchTo})
			addr, _, _ := sidecar(t, srv, iamTarget(t, ca))
			a, ok := iamLogin(t, addr)
			if ok.Seq != 2 || ok.Payload[0] != mysqlwire.OK {
				t.Fatalf("app got seq %d %q, want OK at seq 2", ok.Seq, ok.Payload)
			}
			a.write(0, []byte("\x03SELECT 1"))
			if echo := a.read(); echo.Seq != 1 || string(echo.Payload) != "\x03SELECT 1" {
				t.Fatalf("session after the login: %d %q", echo.Seq, echo.Payload)
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			r, err := mysqlwire.ParseHandshakeResponse(srv.responses[0])
			if err != nil {
				t.Fatal(err)
			}
			if r.User != "app" || r.Database != "orders" || r.Charset != 45 || !bytes.Equal(r.Attrs, []byte{3, 'k', 'e', 'y', 5, 'v', 'a', 'l', 'u', 'e'}) {
				t.Fatalf("the server's login lost the app's session: %+v", r)
			}
			if r.Plugin != mysqlwire.ClearPassword || r.Caps&mysqlwire.ClientPluginAuthLenencClientData == 0 {
				t.Fatalf("plugin %q caps %#x", r.Plugin, r.Caps)
			}
			if want := (appCaps &^ mysqlwire.ClientCompress) | mysqlwire.ClientSSL; r.Caps != want|mysqlwire.ClientSecureConnection {
				t.Fatalf("caps %#x, want the app's %#x", r.Caps, want)
			}
			if ssl, _ := mysqlwire.ResponseCaps(srv.sslReqs[0]); ssl != r.Caps {
				t.Fatalf("SSLRequest caps %#x differ from the login's %#x", ssl, r.Caps)
			}
			token := string(bytes.TrimSuffix(r.AuthData, []byte{0}))
			if tc.switchTo != "" {
				if want := srv.responses[0]; len(srv.switched) != 1 || !bytes.Equal(srv.switched[0], r.AuthData) {
					t.Fatalf("answer to the switch %q, want the token (%d bytes)", srv.switched, len(want))
				}
			}
			u, err := url.Parse("https://" + token)
			if err != nil || u.Host != clusterName+":3306" || u.Query().Get("DBUser") != "app" || !bytes.HasSuffix(r.AuthData, []byte{0}) {
				t.Fatalf("token %q: want one for %s:3306 and user app, NUL-terminated", u.Redacted(), clusterName)
			}
		})
	}
}

func TestIAMOtherAuthSwitchMeansNotAnIAMUser(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName), switchTo: "mysql_native_password"})
	target := iamTarget(t, ca)
	addr, _, _ := sidecar(t, srv, target)
	// The token goes in the first packet, before the server names the
	// user's plugin: sidecar_iam_tokens_signed_total counts it (docs/iam.md
	// says so), once; the next login reuses it.
	for i := range 2 {
		_, p := iamLogin(t, addr)
		_, msg, isErr := mysqlwire.ErrMessage(p.Payload)
		if !isErr || p.Seq != 2 || !strings.Contains(msg, "not set up for IAM") || !strings.Contains(msg, "IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'") {
			t.Fatalf("got seq %d %q", p.Seq, p.Payload)
		}
		st := target.IAM.Tokens.Stats()
		if st.Failures[iamauth.ReasonUserNotIAM] != int64(i+1) || st.Signed != 1 || st.Reused != int64(i) {
			t.Fatalf("login %d: user_not_iam %d, signed %d, reused %d; want %d, 1, %d", i+1, st.Failures[iamauth.ReasonUserNotIAM], st.Signed, st.Reused, i+1, i)
		}
		srv.mu.Lock()
		r, err := mysqlwire.ParseHandshakeResponse(srv.responses[i])
		srv.mu.Unlock()
		if u, _ := url.Parse("https://" + string(bytes.TrimSuffix(r.AuthData, []byte{0}))); err != nil || u.Query().Get("DBUser") != "app" {
			t.Fatalf("login %d: the server's first packet carried no token for app (%v)", i+1, err)
		}
	}
}

// blockedProvider never answers until its context ends, as a credentials
// endpoint that took the request and went silent.
type blockedProvider struct{}

func (blockedProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	<-ctx.Done()
	return aws.Credentials{}, ctx.Err()
}

// A login waiting on credentials that never come ends with an ERR saying
// so, within the signing's bound, in place of the greeting: the
// credentials are awaited before the database is dialed, so it never
// sees the connection.
func TestIAMLoginEndsWhenCredentialsNeverCome(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)})
	target := iamTarget(t, ca)
	target.IAM.Tokens.Source = iamauth.Source{Name: "a silent endpoint", Provider: blockedProvider{}}
	target.IAM.Tokens.SignTimeout = 300 * time.Millisecond
	addr, _, _ := sidecar(t, srv, target)
	p := dialApp(t, addr).read() // the app's read has its own deadline, well below LoginTimeout
	code, msg, isErr := mysqlwire.ErrMessage(p.Payload)
	if !isErr || p.Seq != 0 || code != 1043 || !strings.Contains(msg, "a silent endpoint") || !strings.Contains(msg, "no answer within 300ms") {
		t.Fatalf("got seq %d %q; want ERR 1043 at seq 0 naming the source and the bound", p.Seq, p.Payload)
	}
	srv.mu.Lock()
	ended := srv.ended
	srv.mu.Unlock()
	if ended != 0 {
		t.Errorf("the database saw %d connections; want none", ended)
	}
	if n := target.IAM.Tokens.Stats().Failures[iamauth.ReasonUnreachable]; n != 1 {
		t.Fatalf("endpoint_unreachable failures: %d, want 1", n)
	}
}

// A COM_CHANGE_USER the server refuses reaches the app as the server's
// ERR, then ends the session: the app asked to be another user and is
// not. A refused token (1045) is logged and counted as a refusal; another
// error (an unknown database) is the app's, as without IAM.
func TestIAMChangeUserRefusedByTheServerEndsTheSession(t *testing.T) {
	for _, tc := range []struct {
		code    uint16
		msg     string
		refused bool
	}{
		{1045, "Access denied", true},
		{1049, "Unknown database", false},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			ca := testkit.NewCA(t, "test CA")
			srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName), refuseChange: tc.code})
			target := iamTarget(t, ca)
			addr, s, logs := sidecar(t, srv, target)
			a, ok := iamLogin(t, addr)
			if ok.Payload[0] != mysqlwire.OK {
				t.Fatalf("login: %q", ok.Payload)
			}
			cu := mysqlwire.ChangeUser{User: "other", Database: "orders", Charset: 45, Plugin: mysqlwire.NativePassword}
			a.write(0, cu.Append(nil, appCaps&^mysqlwire.ClientCompress))
			p := a.read()
			if code, msg, isErr := mysqlwire.ErrMessage(p.Payload); !isErr || code != tc.code || p.Seq != 1 || !strings.Contains(msg, tc.msg) {
				t.Fatalf("app got seq %d %q; want the server's %d at seq 1", p.Seq, p.Payload, tc.code)
			}
			if _, err := mysqlwire.ReadPacket(a.c, 1<<20); !errors.Is(err, io.EOF) {
				t.Fatalf("after the refused change the app read %v; want its connection closed", err)
			}
			if n, want := target.IAM.Tokens.Stats().Failures[iamauth.ReasonServerRefused], map[bool]int64{true: 1}[tc.refused]; n != want {
				t.Errorf("server_refused failures: %d, want %d", n, want)
			}
			closed := map[bool]string{true: "tls_refused", false: "upstream_error"}[tc.refused]
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if closes := s.Snapshot().Forwards[0].ConnectionsClosed; slices.Contains(closes, proxy.Count{Label: closed, Value: 1}) {
					break // counted after its log line
				}
				if time.Now().After(deadline) {
					t.Fatalf("the session did not end as %s: %v", closed, s.Snapshot().Forwards[0].ConnectionsClosed)
				}
			}
			lines := testkit.JSONLogLines(logs.String(), "TLS login refused")
			if tc.refused && (len(lines) != 1 || lines[0]["user"] != "other" || lines[0]["command"] != "COM_CHANGE_USER" || !strings.Contains(fmt.Sprint(lines[0]["err"]), tc.msg)) ||
				!tc.refused && len(lines) != 0 {
				t.Fatalf("want one \"TLS login refused\" line for user other, command COM_CHANGE_USER, only for a refused token:\n%s", logs)
			}
			// Another error is not a refused login, but the cut session
			// is logged with the server's message.
			if closedLines := testkit.JSONLogLines(logs.String(), "connection closed"); !tc.refused &&
				(len(closedLines) != 1 || closedLines[0]["level"] != "WARN" || !strings.Contains(fmt.Sprint(closedLines[0]["err"]), tc.msg)) {
				t.Fatalf("want one \"connection closed\" line at WARN with the server's message:\n%s", logs)
			}
		})
	}
}

// sendFile sends a LOAD DATA LOCAL INFILE as the app would: the query at
// 0, then the file's packets from 2 (the server's request was 1), their
// ids wrapping from 255 to 0 (a packet of MaxPayload bytes takes two),
// then the empty end packet. The fake echoes each packet, standing in for
// the server's request and final OK; the echoes are read and returned.
func sendFile(a *app, file [][]byte) []mysqlwire.Packet {
	a.t.Helper()
	a.write(0, []byte("\x03LOAD DATA LOCAL INFILE '/tmp/x.csv' INTO TABLE t"))
	seq := byte(2)
	for _, p := range file {
		var err error
		if seq, err = mysqlwire.WritePacket(a.c, seq, p); err != nil {
			a.t.Fatal(err)
		}
	}
	a.write(seq, nil)
	var echoes []mysqlwire.Packet
	for range 1 + len(file) + 1 {
		echoes = append(echoes, a.read())
	}
	return echoes
}

// A COM_CHANGE_USER after a LOAD DATA LOCAL INFILE is re-authenticated
// wherever the file's end packet fell: at 254, at 255 (the next command at
// 0 follows a packet at 255, as a wrapped file packet would), at 0 after
// wrapping, or at 1.
func TestIAMChangeUserAfterLoadData(t *testing.T) {
	for _, files := range []int{252, 253, 254, 255} {
		t.Run(fmt.Sprintf("end packet at %d", byte(2+files)), func(t *testing.T) {
			ca := testkit.NewCA(t, "test CA")
			srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName), refuseChange: 1049})
			addr, _, _ := sidecar(t, srv, iamTarget(t, ca))
			a, ok := iamLogin(t, addr)
			if ok.Payload[0] != mysqlwire.OK {
				t.Fatalf("login: %q", ok.Payload)
			}
			sendFile(a, slices.Repeat([][]byte{[]byte("1,2,3\n")}, files))
			cu := mysqlwire.ChangeUser{User: "other", Database: "orders", Charset: 45, Plugin: mysqlwire.NativePassword}
			a.write(0, cu.Append(nil, appCaps&^mysqlwire.ClientCompress))
			p := a.read()
			if plugin, _, isSwitch := mysqlwire.ParseAuthSwitch(p.Payload); isSwitch {
				t.Fatalf("the app got the server's switch to %q: its COM_CHANGE_USER was passed on, not logged in with a token", plugin)
			}
			if code, _, isErr := mysqlwire.ErrMessage(p.Payload); !isErr || code != 1049 || p.Seq != 1 {
				t.Fatalf("app got seq %d %q; want the server's 1049 (after the token) at seq 1", p.Seq, p.Payload)
			}
		})
	}
}

// A file packet at 0 (ids wrapped from 255) is data, even when it starts
// with COM_CHANGE_USER's byte: after a packet at 255, and after a packet
// of MaxPayload bytes whose frames are 254 and an empty one at 255.
func TestIAMLoadDataWrappedPacketIsData(t *testing.T) {
	changeUser := append([]byte{mysqlwire.ComChangeUser}, "other\x00"...)
	small := slices.Repeat([][]byte{[]byte("1,2,3\n")}, 255)
	small[254] = changeUser // at 0
	large := slices.Repeat([][]byte{[]byte("1,2,3\n")}, 254)
	large[252] = bytes.Repeat([]byte("x"), mysqlwire.MaxPayload) // at 254 and 255
	large[253] = changeUser                                      // at 0
	for _, tc := range []struct {
		name string
		file [][]byte
	}{{"after a packet at 255", small}, {"after an empty last frame at 255", large}} {
		t.Run(tc.name, func(t *testing.T) {
			ca := testkit.NewCA(t, "test CA")
			srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)})
			addr, _, _ := sidecar(t, srv, iamTarget(t, ca))
			a, ok := iamLogin(t, addr)
			if ok.Payload[0] != mysqlwire.OK {
				t.Fatalf("login: %q", ok.Payload)
			}
			echoes := sendFile(a, tc.file)
			if e := echoes[len(tc.file)]; e.Seq != 1 || !bytes.Equal(e.Payload, changeUser) {
				t.Fatalf("the file packet at 0 came back as seq %d %q; want it echoed as data", e.Seq, e.Payload)
			}
		})
	}
}

// onceThenSilent answers the login's requests, then none, as a
// credentials endpoint that went silent after the login. A login asks
// twice, before the dial and for its signing (the sidecar's cache in front
// of the endpoint answers the second; this provider has none).
type onceThenSilent struct{ asked atomic.Int32 }

func (p *onceThenSilent) Retrieve(ctx context.Context) (aws.Credentials, error) {
	if p.asked.Add(1) <= 2 {
		return aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret", Source: "test"}, nil
	}
	<-ctx.Done()
	return aws.Credentials{}, ctx.Err()
}

// A COM_CHANGE_USER whose token waits on a silent credentials endpoint
// ends when its session is cut (here by IDLE_TIMEOUT; the drain deadline
// and the stale check cut the same way), not when the signing gives up.
func TestIAMChangeUserSigningEndsWithTheSession(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)})
	target := iamTarget(t, ca)
	creds := &onceThenSilent{}
	target.IAM.Tokens.Source = iamauth.Source{Name: "a silent endpoint", Provider: creds}
	target.IAM.Tokens.SignTimeout = time.Minute
	addr, s, _ := sidecar(t, srv, target, func(c *proxy.Config) { c.IdleTimeout = 300 * time.Millisecond })
	a, ok := iamLogin(t, addr)
	if ok.Payload[0] != mysqlwire.OK {
		t.Fatalf("login: %q", ok.Payload)
	}
	cu := mysqlwire.ChangeUser{User: "other", Database: "orders", Charset: 45, Plugin: mysqlwire.NativePassword}
	a.write(0, cu.Append(nil, appCaps&^mysqlwire.ClientCompress))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if closes := s.Snapshot().Forwards[0].ConnectionsClosed; slices.Contains(closes, proxy.Count{Label: "idle_timeout", Value: 1}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the session cut by IDLE_TIMEOUT still waits on the signing after 10 s (credentials asked %d times); closed: %v",
				creds.asked.Load(), s.Snapshot().Forwards[0].ConnectionsClosed)
		}
	}
	if n := creds.asked.Load(); n != 3 {
		t.Errorf("credentials asked %d times; want 3 (twice for the login, then the change)", n)
	}
	for reason, n := range target.IAM.Tokens.Stats().Failures {
		if n != 0 {
			t.Errorf("IAM failures %s: %d; a signing the session's end stopped is no failure", reason, n)
		}
	}
}

// IDLE_TIMEOUT counts bytes, not packets: one packet that takes longer
// than the timeout to arrive, its bytes flowing, is not cut.
func TestIAMSlowPacketIsNotIdle(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)})
	addr, _, _ := sidecar(t, srv, iamTarget(t, ca), func(c *proxy.Config) { c.IdleTimeout = 300 * time.Millisecond })
	a, ok := iamLogin(t, addr)
	if ok.Payload[0] != mysqlwire.OK {
		t.Fatalf("login: %q", ok.Payload)
	}
	query := append([]byte("\x03SELECT '"), bytes.Repeat([]byte("x"), 64*1024)...)
	query = append(query, '\'')
	frame, _ := mysqlwire.AppendPacket(nil, 0, query)
	for chunk := range slices.Chunk(frame, len(frame)/10+1) { // over about a second, 3 idle timeouts
		if _, err := a.c.Write(chunk); err != nil {
			t.Fatalf("the session was cut while the packet's bytes flowed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if echo := a.read(); echo.Seq != 1 || !bytes.Equal(echo.Payload, query) {
		t.Fatalf("echo of the slow packet: seq %d, %d bytes; want seq 1, %d bytes", echo.Seq, len(echo.Payload), len(query))
	}
}

// An IAM login the server drops after the app was admitted (a restarting
// writer) is logged with the app's user, as a refused token is.
func TestIAMLoginServerClosedNamesTheUser(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName), dropTLS: true})
	addr, _, logs := sidecar(t, srv, iamTarget(t, ca))
	_, p := iamLogin(t, addr)
	if _, msg, isErr := mysqlwire.ErrMessage(p.Payload); !isErr || !strings.Contains(msg, "closed the connection during the login") {
		t.Fatalf("app read %q; want the server_closed refusal", p.Payload)
	}
	var lines []map[string]any
	for deadline := time.Now().Add(10 * time.Second); len(lines) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		lines = testkit.JSONLogLines(logs.String(), "TLS login refused")
	}
	if len(lines) != 1 || lines[0]["reason"] != mysqltls.ReasonServerClosed || lines[0]["user"] != "app" {
		t.Errorf("refusal lines %v; want one, server_closed, user app", lines)
	}
}

// A database that answers the IAM login with a packet over MaxLoginPacket
// did not close the connection: the app reads what it sent instead (the
// refusal stays server_closed, the database failing mid-login).
func TestIAMLoginServerPacketOverTheLimit(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName), overLimit: true})
	addr, s, logs := sidecar(t, srv, iamTarget(t, ca))
	_, p := iamLogin(t, addr)
	want := fmt.Sprintf("sidecar: the database sent a login packet over %d bytes", mysqltls.MaxLoginPacket)
	if _, msg, isErr := mysqlwire.ErrMessage(p.Payload); !isErr || p.Seq != 2 || msg != want {
		t.Fatalf("app read seq %d %q; want ERR %q at seq 2", p.Seq, p.Payload, want)
	}
	for deadline := time.Now().Add(10 * time.Second); refusals(s, mysqltls.ReasonServerClosed) != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("refusals %v; want one server_closed:\n%s", s.Snapshot().Forwards[0].TLSRefusals, logs)
		}
	}
}

// A server whose greeting has no 20-byte scramble answered: the IAM login
// is refused as one that server cannot take (iam), not as a server that
// never greeted (no_greeting, which puts its address last as if down).
func TestIAMGreetingWithoutScramble(t *testing.T) {
	g := greeting(7, serverCaps)
	g = g[:bytes.Index(g, []byte("ijklmnopqrst"))] // the scramble's second part, and what follows, left out
	ln := testkit.Listen(t)
	app, client := testkit.Pair(t, ln)
	server, db := testkit.Pair(t, ln)
	if _, err := mysqlwire.WritePacket(db, 0, g); err != nil {
		t.Fatal(err)
	}
	target := iamTarget(t, testkit.NewCA(t, "test CA"))
	done := make(chan error, 1)
	go func() {
		_, err := target.Handshake(context.Background(), client, server)
		done <- err
	}()
	_ = app.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := mysqlwire.ReadPacket(app, 1<<20); err != nil {
		t.Fatalf("the app's greeting: %v", err)
	}
	if _, err := mysqlwire.WritePacket(app, 1, handshakeResponse(appCaps&^mysqlwire.ClientCompress)); err != nil {
		t.Fatal(err)
	}
	p, err := mysqlwire.ReadPacket(app, 1<<20)
	if _, msg, isErr := mysqlwire.ErrMessage(p.Payload); err != nil || !isErr || p.Seq != 2 || !strings.Contains(msg, "no 20-byte scramble") {
		t.Fatalf("the app read %q (%v); want the refusal at seq 2", p.Payload, err)
	}
	var r *mysqltls.Refusal
	if err := <-done; !errors.As(err, &r) || r.Reason != mysqltls.ReasonIAM || !r.Told {
		t.Fatalf("Handshake: %#v; want an iam refusal the app was told", err)
	}
}

// The IAM session reads a COM_CHANGE_USER whole, to log it in with a token;
// its memory follows the bytes that arrive, not the length its header
// claims: an app that sent a header of 16 MiB and a few bytes held 16 MiB
// of the sidecar's memory for as long as it kept the connection open.
func TestIAMChangeUserAllocatesAsBytesArrive(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)})
	addr, _, _ := sidecar(t, srv, iamTarget(t, ca))
	a, ok := iamLogin(t, addr)
	if ok.Payload[0] != mysqlwire.OK {
		t.Fatalf("login: %q", ok.Payload)
	}
	claim := mysqlwire.MaxPayload - 1
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := a.c.Write(append([]byte{byte(claim), byte(claim >> 8), byte(claim >> 16), 0}, "\x11other\x00"...)); err != nil {
		t.Fatal(err)
	}
	_ = a.c.(*net.TCPConn).CloseWrite() // the rest never comes
	if _, err := io.Copy(io.Discard, a.c); err != nil {
		t.Fatalf("the session did not end when the app's packet was cut: %v", err)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Errorf("the sidecar allocated %d bytes for a COM_CHANGE_USER header claiming %d bytes and 7 bytes sent", got, claim)
	}
}

// A COM_CHANGE_USER over MaxLoginPacket is refused as a login that size
// is, not passed on and not read whole: a real one is a few hundred
// bytes. One of 16 MiB or more (several frames) went to the server as the
// app sent it, with the app's own credentials for a user IAM_USERS may not
// name; one of 1 to 16 MiB was read whole into the sidecar's memory.
func TestIAMChangeUserOverTheLoginLimitIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		refused bool
	}{
		{"at the limit", mysqltls.MaxLoginPacket, false},
		{"one byte over", mysqltls.MaxLoginPacket + 1, true},
		{"several frames", mysqlwire.MaxPayload, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := testkit.NewCA(t, "test CA")
			// refuseChange: a COM_CHANGE_USER that reaches the fake is answered with its 1049.
			srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName), refuseChange: 1049})
			addr, s, logs := sidecar(t, srv, iamTarget(t, ca))
			a, ok := iamLogin(t, addr)
			if ok.Payload[0] != mysqlwire.OK {
				t.Fatalf("login: %q", ok.Payload)
			}
			cu := mysqlwire.ChangeUser{User: "admin", AuthData: bytes.Repeat([]byte{9}, 20), Database: "orders", Charset: 45, Plugin: mysqlwire.NativePassword, Attrs: []byte{}}
			cu.Attrs = make([]byte, tc.size-len(cu.Append(nil, appCaps))-3) // 3 more bytes of length
			p := cu.Append(nil, appCaps)
			if len(p) != tc.size {
				t.Fatalf("built a COM_CHANGE_USER of %d bytes, want %d", len(p), tc.size)
			}
			go func() { _, _ = mysqlwire.WritePacket(a.c, 0, p) }() // the sidecar may stop reading
			got := a.read()
			code, msg, isErr := mysqlwire.ErrMessage(got.Payload)
			if !tc.refused {
				if !isErr || code != 1049 || got.Seq != 1 {
					t.Fatalf("app got seq %d %q; want the server's 1049 at seq 1: the change reached the server", got.Seq, got.Payload[:min(len(got.Payload), 60)])
				}
				return
			}
			want := fmt.Sprintf("sidecar: the app's COM_CHANGE_USER is over %d bytes", mysqltls.MaxLoginPacket)
			if !isErr || got.Seq != 1 || msg != want {
				t.Fatalf("app got seq %d, %d bytes %q...; want ERR %q at seq 1", got.Seq, len(got.Payload), got.Payload[:min(len(got.Payload), 60)], want)
			}
			if _, err := mysqlwire.ReadPacket(a.c, 1<<24); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("after the refusal the app read %v; want its connection closed", err)
			}
			for deadline := time.Now().Add(5 * time.Second); refusals(s, mysqltls.ReasonClientProtocol) != 1; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("sidecar_tls_refusals_total: %v; want client_protocol 1", s.Snapshot().Forwards[0].TLSRefusals)
				}
			}
			lines := testkit.JSONLogLines(logs.String(), "TLS login refused")
			if len(lines) != 1 || lines[0]["reason"] != mysqltls.ReasonClientProtocol || lines[0]["command"] != "COM_CHANGE_USER" || !strings.Contains(fmt.Sprint(lines[0]["err"]), want) {
				t.Fatalf("want one \"TLS login refused\" line, reason client_protocol, command COM_CHANGE_USER, err %q:\n%s", want, logs)
			}
		})
	}
}

// A COM_CHANGE_USER is read with the flags the app logged in with, as its
// login is: an app without CLIENT_PLUGIN_AUTH (libmysqlclient before 5.5)
// names no plugin and cannot answer an auth switch, so its proof of
// LOCAL_PASSWORD is the one it sent. The sidecar read it with the flags it
// gives the server, and sent the app a switch it could not read.
func TestIAMChangeUserReadWithTheAppsFlags(t *testing.T) {
	const local = "local-pw"
	for _, tc := range []struct {
		name string
		caps uint32
	}{
		{"with CLIENT_PLUGIN_AUTH", appCaps &^ mysqlwire.ClientCompress},
		{"without CLIENT_PLUGIN_AUTH", appCaps &^ (mysqlwire.ClientCompress | mysqlwire.ClientPluginAuth)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := testkit.NewCA(t, "test CA")
			// refuseChange: a COM_CHANGE_USER that reaches the fake is answered with its 1049.
			srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName), refuseChange: 1049})
			target := iamTarget(t, ca)
			target.IAM.LocalPassword = []byte(local)
			addr, _, _ := sidecar(t, srv, target)
			a := dialApp(t, addr)
			scramble, err := mysqlwire.GreetingScramble(a.read().Payload)
			if err != nil {
				t.Fatal(err)
			}
			proof := mysqlwire.NativeProof([]byte(local), scramble)
			login := mysqlwire.HandshakeResponse{Caps: tc.caps, MaxPacket: 1 << 24, Charset: 45, User: "app", AuthData: proof,
				Database: "orders", Plugin: mysqlwire.NativePassword}
			a.write(1, login.Append(nil))
			if ok := a.read(); ok.Seq != 2 || ok.Payload[0] != mysqlwire.OK {
				t.Fatalf("login: seq %d %q", ok.Seq, ok.Payload)
			}
			cu := mysqlwire.ChangeUser{User: "other", AuthData: proof, Database: "orders", Charset: 45, Plugin: mysqlwire.NativePassword}
			a.write(0, cu.Append(nil, tc.caps))
			p := a.read()
			if code, _, isErr := mysqlwire.ErrMessage(p.Payload); !isErr || code != 1049 || p.Seq != 1 {
				t.Fatalf("app got seq %d %q; want the server's 1049 at seq 1: the change reached the server", p.Seq, p.Payload)
			}
		})
	}
}

// writeFrames writes a packet of size bytes starting with head (the rest
// zeros) as an app does, frame after frame, without building it in memory.
func writeFrames(w io.Writer, seq byte, head []byte, size int) error {
	chunk := make([]byte, 1<<20)
	for left := size; ; seq++ {
		n := min(left, mysqlwire.MaxPayload)
		if _, err := w.Write([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}); err != nil {
			return err
		}
		for sent := 0; sent < n; {
			c := chunk[:min(len(chunk), n-sent)]
			if sent == 0 && left == size {
				c = append(append([]byte(nil), head...), c[len(head):]...)
			}
			if _, err := w.Write(c); err != nil {
				return err
			}
			sent += len(c)
		}
		left -= n
		if n < mysqlwire.MaxPayload {
			return nil
		}
	}
}

// An oversized packet of several 16 MiB frames is read away whole before
// the sidecar closes, so the app, which writes the whole packet before it
// reads (as libmysqlclient does), gets to read the ERR. The sidecar read
// away only the first frame: closing with the rest unread sent a reset,
// the app's write failed, and it reported a lost connection. The packet
// is bigger than the sockets' buffers can take unread.
func TestOversizedMultiFramePacketIsReadAwayWhole(t *testing.T) {
	const size = 4*mysqlwire.MaxPayload + 100
	for _, tc := range []struct {
		name    string
		iam     bool
		head    []byte // the packet's first bytes
		seq     byte   // the packet's
		wantMsg string
	}{
		{"COM_CHANGE_USER", true, []byte("\x11admin\x00"), 0, fmt.Sprintf("sidecar: the app's COM_CHANGE_USER is over %d bytes", mysqltls.MaxLoginPacket)},
		{"login", false, handshakeResponse(appCaps), 1, fmt.Sprintf("sidecar: the app's login packet is over %d bytes", mysqltls.MaxLoginPacket)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _, _ := greetedApp(t, tc.iam)
			if err := writeFrames(a.c, tc.seq, tc.head, size); err != nil {
				t.Fatalf("the app could not write its %d-byte packet (the sidecar closed on it unread): %v", size, err)
			}
			got := a.read()
			if _, msg, isErr := mysqlwire.ErrMessage(got.Payload); !isErr || got.Seq != tc.seq+1 || msg != tc.wantMsg {
				t.Fatalf("app got seq %d %q; want ERR %q at seq %d", got.Seq, got.Payload[:min(len(got.Payload), 60)], tc.wantMsg, tc.seq+1)
			}
			if _, err := mysqlwire.ReadPacket(a.c, 1<<24); !errors.Is(err, io.EOF) {
				t.Fatalf("after the ERR the app read %v; want EOF (a close, not a reset)", err)
			}
		})
	}
}

// greetedApp is an app connected through a sidecar to a fake TLS server:
// logged in with IAM, or (TLS alone) greeted, its login not yet sent.
func greetedApp(t *testing.T, iam bool, tune ...func(*fakeOpts)) (*app, *proxy.Server, *testkit.LockedBuffer) {
	t.Helper()
	ca := testkit.NewCA(t, "test CA")
	o := fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)}
	for _, f := range tune {
		f(&o)
	}
	srv := startFake(t, o)
	target := mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName}
	if iam {
		target = iamTarget(t, ca)
	}
	addr, s, logs := sidecar(t, srv, target)
	if !iam {
		a := dialApp(t, addr)
		a.read() // the greeting
		return a, s, logs
	}
	a, ok := iamLogin(t, addr)
	if ok.Payload[0] != mysqlwire.OK {
		t.Fatalf("login: %q", ok.Payload)
	}
	return a, s, logs
}

// With LOCAL_PASSWORD, the app's answer to the sidecar's switch (its
// proof, 20 bytes) over MaxLoginPacket is refused as a login packet that
// size is: an ERR the app reads, a "TLS login refused" line and a
// client_protocol refusal. The sidecar closed the connection without a
// word, and counted an app that left (io_error).
func TestIAMSwitchAnswerOverTheLoginLimitIsRefused(t *testing.T) {
	const local = "local-pw"
	big := make([]byte, mysqltls.MaxLoginPacket+1)
	for _, tc := range []struct {
		name    string
		start   func(t *testing.T) (*app, *proxy.Server, *testkit.LockedBuffer, byte) // the switch's seq
		want    string
		command any // the log line's
	}{
		{"login", func(t *testing.T) (*app, *proxy.Server, *testkit.LockedBuffer, byte) {
			ca := testkit.NewCA(t, "test CA")
			target := iamTarget(t, ca)
			target.IAM.LocalPassword = []byte(local)
			addr, s, logs := sidecar(t, startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)}), target)
			a := dialApp(t, addr)
			a.read() // the greeting
			login := mysqlwire.HandshakeResponse{Caps: appCaps &^ mysqlwire.ClientCompress, MaxPacket: 1 << 24, Charset: 45, User: "app",
				AuthData: []byte{1}, Database: "orders", Plugin: "caching_sha2_password"}
			a.write(1, login.Append(nil))
			return a, s, logs, 2
		}, fmt.Sprintf("sidecar: the app's login packet is over %d bytes", mysqltls.MaxLoginPacket), nil},
		{"COM_CHANGE_USER", func(t *testing.T) (*app, *proxy.Server, *testkit.LockedBuffer, byte) {
			a, _, s, logs := loggedIn(t, local, fakeOpts{}, nil)
			cu := mysqlwire.ChangeUser{User: "app", Database: "orders", Charset: 45, Plugin: "caching_sha2_password"}
			a.write(0, cu.Append(nil, appCaps&^mysqlwire.ClientCompress))
			return a, s, logs, 1
		}, fmt.Sprintf("sidecar: the app's COM_CHANGE_USER is over %d bytes", mysqltls.MaxLoginPacket), "COM_CHANGE_USER"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, s, logs, seq := tc.start(t)
			if p := a.read(); p.Seq != seq || p.Payload[0] != mysqlwire.AuthSwitch {
				t.Fatalf("app got seq %d %q; want the sidecar's switch at %d", p.Seq, p.Payload, seq)
			}
			go func() { _, _ = mysqlwire.WritePacket(a.c, seq+1, big) }() // the sidecar may stop reading
			got, err := mysqlwire.ReadPacket(a.c, 1<<24)
			if err != nil {
				t.Fatalf("the app read %v; want ERR %q at seq %d:\n%s", err, tc.want, seq+2, logs)
			}
			if _, msg, isErr := mysqlwire.ErrMessage(got.Payload); !isErr || got.Seq != seq+2 || msg != tc.want {
				t.Fatalf("app got seq %d %q; want ERR %q at seq %d", got.Seq, got.Payload[:min(len(got.Payload), 60)], tc.want, seq+2)
			}
			for deadline := time.Now().Add(5 * time.Second); refusals(s, mysqltls.ReasonClientProtocol) != 1; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("sidecar_tls_refusals_total: %v; want client_protocol 1:\n%s", s.Snapshot().Forwards[0].TLSRefusals, logs)
				}
			}
			lines := testkit.JSONLogLines(logs.String(), "TLS login refused")
			if len(lines) != 1 || lines[0]["reason"] != mysqltls.ReasonClientProtocol || lines[0]["command"] != tc.command ||
				lines[0]["user"] != "app" || !strings.Contains(fmt.Sprint(lines[0]["err"]), tc.want) {
				t.Fatalf("want one \"TLS login refused\" line, reason client_protocol, user app, command %v, err %q:\n%s", tc.command, tc.want, logs)
			}
		})
	}
}

// A COM_CHANGE_USER the sidecar cannot read is refused as a login packet
// it cannot read is: the app's ERR, a "TLS login refused" line and a
// client_protocol count. It ended the session as a client_error, logged
// at debug, so the operator saw nothing of it; an oversized one was
// already a refusal.
func TestIAMMalformedChangeUserIsRefused(t *testing.T) {
	a, s, logs := greetedApp(t, true)
	a.write(0, []byte{mysqlwire.ComChangeUser, 'a', 'p', 'p'}) // the user's NUL and the rest are missing
	const want = "sidecar: cannot read the app's COM_CHANGE_USER: "
	p := a.read()
	if _, msg, isErr := mysqlwire.ErrMessage(p.Payload); !isErr || p.Seq != 1 || !strings.HasPrefix(msg, want) {
		t.Fatalf("app got seq %d %q; want ERR %q… at seq 1", p.Seq, p.Payload, want)
	}
	if _, err := mysqlwire.ReadPacket(a.c, 1<<20); !errors.Is(err, io.EOF) {
		t.Fatalf("after the ERR the app read %v; want its connection closed", err)
	}
	for deadline := time.Now().Add(5 * time.Second); refusals(s, mysqltls.ReasonClientProtocol) != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sidecar_tls_refusals_total: %v, closed %v; want client_protocol 1:\n%s",
				s.Snapshot().Forwards[0].TLSRefusals, s.Snapshot().Forwards[0].ConnectionsClosed, logs)
		}
	}
	lines := testkit.JSONLogLines(logs.String(), "TLS login refused")
	if len(lines) != 1 || lines[0]["reason"] != mysqltls.ReasonClientProtocol || lines[0]["command"] != "COM_CHANGE_USER" ||
		lines[0]["level"] != "WARN" || !strings.Contains(fmt.Sprint(lines[0]["err"]), want) {
		t.Fatalf("want one \"TLS login refused\" line at WARN, reason client_protocol, command COM_CHANGE_USER, err %q…:\n%s", want, logs)
	}
}

// A pipelined COM_CHANGE_USER is refused before the sidecar talks to the
// app about it: with LOCAL_PASSWORD and a plugin other than
// mysql_native_password, the sidecar's switch for the proof reached the
// app in place of the answer to its previous command (which the sidecar
// held unsent while it waited for the proof), and the refusal never came.
func TestIAMPipelinedChangeUserRefusedBeforeTheProof(t *testing.T) {
	a, _, s, logs := loggedIn(t, "local-pw", fakeOpts{}, nil)
	cu := mysqlwire.ChangeUser{User: "app", Database: "orders", Charset: 45, Plugin: "caching_sha2_password"}
	b, _ := mysqlwire.AppendPacket(nil, 0, []byte{comPing})
	b, _ = mysqlwire.AppendPacket(b, 0, cu.Append(nil, appCaps&^mysqlwire.ClientCompress))
	if _, err := a.c.Write(b); err != nil {
		t.Fatal(err)
	}
	p := a.read()
	if _, msg, isErr := mysqlwire.ErrMessage(p.Payload); !isErr || p.Seq != 1 || !strings.Contains(msg, "before reading the answer to its previous command") {
		t.Fatalf("app read seq %d %q; want the sidecar's ERR about the pipelined COM_CHANGE_USER at seq 1:\n%s", p.Seq, p.Payload, logs)
	}
	if p, err := mysqlwire.ReadPacket(a.c, 1<<24); err == nil {
		t.Fatalf("app read seq %d %q after the refusal; want the end", p.Seq, p.Payload)
	}
	for deadline := time.Now().Add(mysqltls.LoginTimeout); refusals(s, mysqltls.ReasonClientProtocol) != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("refusals %v; want client_protocol 1:\n%s", s.Snapshot().Forwards[0].TLSRefusals, logs)
		}
	}
}

// A target host written in capitals logs in: TLS checks the certificate's
// name case-insensitively, and the token is signed for the lower-cased
// host, as RDS names it.
func TestIAMUpperCaseHostSignsLowerCase(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)})
	target := iamTarget(t, ca)
	upper := strings.ToUpper(clusterName)
	target.ServerName, target.IAM.Endpoint = upper, upper+":3306"
	addr, _, _ := sidecar(t, srv, target)
	if _, ok := iamLogin(t, addr); ok.Payload[0] != mysqlwire.OK {
		t.Fatalf("login with %s: %q", upper, ok.Payload)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	r, err := mysqlwire.ParseHandshakeResponse(srv.responses[0])
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse("https://" + string(bytes.TrimSuffix(r.AuthData, []byte{0})))
	if err != nil || u.Host != clusterName+":3306" {
		t.Fatalf("token host %q (%v); want %s:3306", u.Host, err, clusterName)
	}
}

// slowThenSilent answers its first request after delay, with credentials
// that expire in a minute, then no request until its context ends,
// closing silenced then: credentials slow to come before the dial, and
// expired by the signing (the test moves the Tokens' clock on), the
// endpoint now silent.
type slowThenSilent struct {
	delay    time.Duration
	asked    atomic.Int32
	silenced chan struct{}
}

func (p *slowThenSilent) Retrieve(ctx context.Context) (aws.Credentials, error) {
	if p.asked.Add(1) == 1 {
		time.Sleep(p.delay)
		return aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret", Source: "test", CanExpire: true, Expires: time.Now().Add(time.Minute)}, nil
	}
	<-ctx.Done()
	close(p.silenced)
	return aws.Credentials{}, ctx.Err()
}

// A login's waits for credentials, before the dial and at the signing,
// keep together to the one bound (SignTimeout): the signing waits only
// for what the wait before the dial left. It waited its own bound again,
// so a login could wait twice as long, in part with the server's
// connection open. The app gets an ERR starting "sidecar:" in place of
// the OK.
func TestIAMLoginWaitsForCredentialsWithinOneBound(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)})
	target := iamTarget(t, ca)
	creds := &slowThenSilent{delay: time.Second, silenced: make(chan struct{})}
	target.IAM.Tokens.Source = iamauth.Source{Name: "a slow endpoint", Provider: creds}
	target.IAM.Tokens.SignTimeout = 2 * time.Second // the signing's own wait ends a delay after the login's
	var later atomic.Int64
	target.IAM.Tokens.Now = func() time.Time { return time.Now().Add(time.Duration(later.Load())) }
	addr, _, _ := sidecar(t, srv, target)
	a := dialApp(t, addr)
	a.read() // the greeting: the credentials came before the dial
	later.Store(int64(time.Hour))
	a.write(1, handshakeResponse(appCaps&^mysqlwire.ClientCompress))
	p := a.read()
	code, msg, isErr := mysqlwire.ErrMessage(p.Payload)
	if !isErr || p.Seq != 2 || code != 1043 || !strings.HasPrefix(msg, "sidecar: ") || !strings.Contains(msg, "a slow endpoint") ||
		!strings.Contains(msg, "no answer within 2s, the wait before the dial included") {
		t.Fatalf("got seq %d %q; want ERR 1043 at seq 2 starting sidecar:, naming the source and the bound", p.Seq, p.Payload)
	}
	select {
	case <-creds.silenced:
		t.Fatal("the login waited for the whole signing: with the wait before the dial, longer than SignTimeout")
	default:
	}
	if n := creds.asked.Load(); n != 2 {
		t.Errorf("credentials asked %d times; want 2 (before the dial, at the signing)", n)
	}
}

// delayed answers its nth request after delays[n-1] (none past them),
// with credentials that expire a minute after now by the Tokens' clock,
// later ahead of the wall clock.
type delayed struct {
	delays []time.Duration
	asked  atomic.Int32
	later  atomic.Int64
}

func (p *delayed) Retrieve(ctx context.Context) (aws.Credentials, error) {
	if n := int(p.asked.Add(1)); n <= len(p.delays) {
		time.Sleep(p.delays[n-1])
	}
	return aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret", Source: "test",
		CanExpire: true, Expires: p.now().Add(time.Minute)}, nil
}

func (p *delayed) now() time.Time { return time.Now().Add(time.Duration(p.later.Load())) }

// The login's wait before the dial does not shorten a later
// COM_CHANGE_USER's: its signing is a wait of its own, with the whole
// bound. (The fake answers the change's token with 1049, which the app
// reads only when a token was sent.)
func TestIAMChangeUserWaitsTheWholeBound(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName), refuseChange: 1049})
	target := iamTarget(t, ca)
	// Before the dial 1 s of the 2 s bound; the login's signing at once;
	// the change's 1.5 s, more than the login left.
	creds := &delayed{delays: []time.Duration{time.Second, 0, 1500 * time.Millisecond}}
	target.IAM.Tokens.Source = iamauth.Source{Name: "a slow endpoint", Provider: creds}
	target.IAM.Tokens.SignTimeout = 2 * time.Second
	target.IAM.Tokens.Now = creds.now
	addr, _, _ := sidecar(t, srv, target)
	a, ok := iamLogin(t, addr)
	if ok.Payload[0] != mysqlwire.OK {
		t.Fatalf("login: %q", ok.Payload)
	}
	// The login's credentials expire: the change's signing waits for new
	// ones, the only case a bound left over from the login would cut.
	creds.later.Store(int64(time.Hour))
	cu := mysqlwire.ChangeUser{User: "other", Database: "orders", Charset: 45, Plugin: mysqlwire.NativePassword}
	a.write(0, cu.Append(nil, appCaps&^mysqlwire.ClientCompress))
	if p := a.read(); p.Seq != 1 || !bytes.Contains(p.Payload, []byte("Unknown database")) {
		t.Fatalf("COM_CHANGE_USER: seq %d %q; want the server's answer to its token at seq 1", p.Seq, p.Payload)
	}
	if n := creds.asked.Load(); n != 3 {
		t.Errorf("credentials asked %d times; want 3", n)
	}
}
