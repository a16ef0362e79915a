package mysqltls_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/proxy"
	"github.com/example/sidecar/sidecar/internal/relay"
)

// sidecar runs a proxy.Server with TLS to target in front of srv, and
// returns the address the app connects to.
func sidecar(t testing.TB, srv *fakeServer, target mysqltls.Target, tune ...func(*proxy.Config)) (string, *proxy.Server, *testkit.LockedBuffer) {
	t.Helper()
	host, port, _ := net.SplitHostPort(srv.addr())
	p, _ := strconv.Atoi(port)
	if target.Sessions == nil {
		target.Sessions = tls.NewLRUClientSessionCache(0)
	}
	return serveTLS(t, host, p, &target, tune...)
}

// serveTLS runs a proxy.Server forwarding with TLS to host:port until the
// test ends, logging JSON lines into the buffer it returns. tune changes
// the proxy's configuration before it starts.
func serveTLS(t testing.TB, host string, port int, target *mysqltls.Target, tune ...func(*proxy.Config)) (string, *proxy.Server, *testkit.LockedBuffer) {
	t.Helper()
	logs := &testkit.LockedBuffer{}
	cfg := proxy.Config{ListenAddr: "127.0.0.1", ConnectTimeout: 2 * time.Second, Logger: slog.New(slog.NewJSONHandler(logs, nil)),
		Forwards: []proxy.Forward{{TargetHost: host, TargetPort: port, TLS: target}}}
	for _, f := range tune {
		f(&cfg)
	}
	s, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _, _ = s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s.Addrs()[0].String(), s, logs
}

// app is the app's side of one connection.
type app struct {
	t *testing.T
	c net.Conn
}

func dialApp(t *testing.T, addr string) *app {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	t.Cleanup(func() { _ = c.Close() })
	return &app{t: t, c: c}
}

func (a *app) read() mysqlwire.Packet {
	a.t.Helper()
	p, err := mysqlwire.ReadPacket(a.c, 1<<24)
	if err != nil {
		a.t.Fatalf("app read: %v", err)
	}
	return p
}

func (a *app) write(seq byte, payload []byte) {
	a.t.Helper()
	if _, err := mysqlwire.WritePacket(a.c, seq, payload); err != nil {
		a.t.Fatalf("app write: %v", err)
	}
}

// expectRefusal reads an ERR packet with sequence id seq whose message
// starts with "sidecar:" and contains want.
func (a *app) expectRefusal(seq byte, want string) {
	a.t.Helper()
	p := a.read()
	_, msg, ok := mysqlwire.ErrMessage(p.Payload)
	if !ok || p.Seq != seq || !strings.HasPrefix(msg, "sidecar: ") || !strings.Contains(msg, want) {
		a.t.Fatalf("got packet seq %d %q; want ERR seq %d starting \"sidecar: \" containing %q", p.Seq, p.Payload, seq, want)
	}
}

func TestLoginOverVerifiedTLS(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName), exchange: true, tickets: true})
	addr, s, _ := sidecar(t, srv, mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName})

	for i := range 2 {
		a := dialApp(t, addr)
		g := a.read()
		caps, _, _, err := mysqlwire.GreetingCaps(g.Payload)
		if err != nil || g.Seq != 0 || caps&mysqlwire.ClientSSL != 0 {
			t.Fatalf("greeting seq %d caps %#x err %v: want seq 0 without CLIENT_SSL", g.Seq, caps, err)
		}
		want, _ := mysqlwire.WithoutGreetingCaps(greeting(uint32(i+1), serverCaps), mysqlwire.ClientSSL)
		if !bytes.Equal(g.Payload, want) {
			t.Errorf("greeting changed beyond CLIENT_SSL:\n got %q\nwant %q", g.Payload, want)
		}
		if id, _ := mysqlwire.GreetingThreadID(g.Payload); id != uint32(i+1) {
			t.Errorf("thread id %d, want %d", id, i+1)
		}
		resp := handshakeResponse(appCaps)
		a.write(1, resp)
		// auth switch at 2, more data at 4, OK at 6: the app's numbering.
		for _, step := range []struct {
			seq   byte
			first byte
		}{{2, mysqlwire.AuthSwitch}, {4, mysqlwire.MoreData}} {
			p := a.read()
			if p.Seq != step.seq || p.Payload[0] != step.first {
				t.Fatalf("app got seq %d first byte %#x; want seq %d, %#x", p.Seq, p.Payload[0], step.seq, step.first)
			}
			a.write(step.seq+1, []byte("answer"))
		}
		if ok := a.read(); ok.Seq != 6 || ok.Payload[0] != mysqlwire.OK {
			t.Fatalf("final packet seq %d %q; want OK at 6", ok.Seq, ok.Payload)
		}
		// The session: each command starts at 0 and is relayed untouched.
		query := append([]byte{0x03}, "SELECT 1"...)
		a.write(0, query)
		if echo := a.read(); echo.Seq != 1 || !bytes.Equal(echo.Payload, query) {
			t.Fatalf("echo seq %d %q", echo.Seq, echo.Payload)
		}
		big := bytes.Repeat([]byte("x"), 3<<20)
		a.write(0, big)
		if echo := a.read(); !bytes.Equal(echo.Payload, big) {
			t.Fatalf("3 MiB packet came back as %d bytes", len(echo.Payload))
		}
		_ = a.c.Close()
	}

	srv.mu.Lock()
	defer srv.mu.Unlock()
	for i, r := range srv.sslReqs {
		got, _ := mysqlwire.ResponseCaps(r)
		if len(r) != mysqlwire.SSLRequestLen || got != appCaps|mysqlwire.ClientSSL || !bytes.Equal(r[4:], handshakeResponse(appCaps)[4:32]) {
			t.Errorf("SSLRequest %d = %x; want the app's flags %#x plus CLIENT_SSL and its max packet and charset", i, r, appCaps)
		}
	}
	for i, r := range srv.responses {
		if !bytes.Equal(r, handshakeResponse(appCaps)) {
			t.Errorf("server got response %d changed: %q", i, r)
		}
	}
	// Per connection: SSLRequest 1, response 2, answers 4 and 6 (the server's numbering).
	if want := []byte{1, 2, 4, 6, 1, 2, 4, 6}; !bytes.Equal(srv.seqs, want) {
		t.Errorf("server saw sequence ids %v, want %v", srv.seqs, want)
	}
	if len(srv.resumed) != 2 || srv.resumed[0] || !srv.resumed[1] {
		t.Errorf("resumed = %v; want the second connection to resume the first's TLS session", srv.resumed)
	}
	if len(srv.errs) > 0 {
		t.Errorf("server errors: %v", srv.errs)
	}
	snap := s.Snapshot()
	for _, c := range snap.Forwards[0].TLSRefusals {
		if c.Value != 0 {
			t.Errorf("refusal %s = %d after good logins", c.Label, c.Value)
		}
	}
}

// After a switch to the dialog plugin (PAM), a question is the app's to
// answer whatever its bytes: MySQL-based servers send it as more data, so
// an empty last question is 0x01 0x03, caching_sha2_password's "fast auth
// succeeded" only under that plugin.
func TestDialogQuestionsAreTheAppsToAnswer(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	for _, tc := range []struct {
		name string
		more []byte // after 0x01
	}{
		{"password question with a prompt", []byte("\x04Verification code: ")},
		{"last question, empty prompt", []byte{0x03}},
		{"password question, empty prompt", []byte{0x04}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName), exchange: true, dialogMore: tc.more})
			addr, _, _ := sidecar(t, srv, mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName})
			a := dialApp(t, addr)
			a.read()
			a.write(1, handshakeResponse(appCaps))
			if p := a.read(); p.Seq != 2 || p.Payload[0] != mysqlwire.AuthSwitch {
				t.Fatalf("got seq %d %q; want the switch to dialog at 2", p.Seq, p.Payload)
			}
			a.write(3, []byte("secret\x00"))
			if p := a.read(); p.Seq != 4 || !bytes.Equal(p.Payload, append([]byte{mysqlwire.MoreData}, tc.more...)) {
				t.Fatalf("got seq %d %q; want the question at 4", p.Seq, p.Payload)
			}
			a.write(5, []byte("123456\x00"))
			_ = a.c.SetReadDeadline(time.Now().Add(5 * time.Second)) // the server waits for the answer; the login's own bound is 30 s
			p, err := mysqlwire.ReadPacket(a.c, 1<<20)
			if err != nil || p.Seq != 6 || p.Payload[0] != mysqlwire.OK {
				t.Fatalf("after the answer the app read seq %d %q, %v; want the server's OK at 6: its answer must reach the server", p.Seq, p.Payload, err)
			}
		})
	}
}

func TestRefusalsReachTheAppAsMySQLErrors(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	other := testkit.NewCA(t, "unrelated CA")
	now := time.Now()
	good := ca.Leaf(t, now.Add(-time.Hour), now.Add(time.Hour), clusterName, "x.cluster-ro-abc.us-east-1.rds.amazonaws.com")
	expired := ca.Leaf(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour), clusterName)
	// A CA that expired while the certificate it issued is valid: the
	// message names the CA, not the server's certificate.
	expiredCA, fromExpiredCA := shortLivedCA(t, now.Add(-time.Minute), clusterName)
	expiredRoots := x509.NewCertPool()
	expiredRoots.AddCert(expiredCA)
	// A certificate with its name in the common name alone, no
	// subjectAltName: Go checks no common name.
	legacy := testkit.NewCA(t, "old CA")
	legacyRoots := legacy.Pool
	cnOnly := legacy.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: clusterName}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	for _, tc := range []struct {
		name    string
		srv     fakeOpts
		target  mysqltls.Target
		appTLS  bool // the app asks for TLS itself
		seq     byte
		want    string
		reason  string
		success bool
	}{
		{name: "unrelated CA", srv: fakeOpts{cert: good}, target: mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: other.Pool, RootsFrom: "TARGET_TLS_CA=/x.pem", ServerName: clusterName},
			seq: 2, want: "not signed by a CA in TARGET_TLS_CA=/x.pem", reason: mysqltls.ReasonUnknownCA},
		{name: "wrong name", srv: fakeOpts{cert: good}, target: mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: "y.cluster-abc.us-east-1.rds.amazonaws.com"},
			seq: 2, want: `not valid for "y.cluster-abc.us-east-1.rds.amazonaws.com"`, reason: mysqltls.ReasonNameMismatch},
		{name: "a name in the common name only", srv: fakeOpts{cert: cnOnly}, target: mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: legacyRoots, ServerName: clusterName},
			seq: 2, want: `it names no DNS name in its subjectAltName (its common name "` + clusterName + `" is not checked): reissue it`, reason: mysqltls.ReasonNameMismatch},
		{name: "expired certificate", srv: fakeOpts{cert: expired}, target: mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName},
			seq: 2, want: "expired", reason: mysqltls.ReasonExpired},
		{name: "expired certificate, verify-ca", srv: fakeOpts{cert: expired}, target: mysqltls.Target{Mode: mysqltls.VerifyCA, Roots: ca.Pool},
			seq: 2, want: "expired", reason: mysqltls.ReasonExpired},
		{name: "expired CA", srv: fakeOpts{cert: fromExpiredCA}, target: mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: expiredRoots, ServerName: clusterName},
			seq: 2, want: `the CA certificate "CN=old CA" of the database's certificate has expired`, reason: mysqltls.ReasonExpired},
		{name: "expired CA, verify-ca", srv: fakeOpts{cert: fromExpiredCA}, target: mysqltls.Target{Mode: mysqltls.VerifyCA, Roots: expiredRoots},
			seq: 2, want: `the CA certificate "CN=old CA" of the database's certificate has expired`, reason: mysqltls.ReasonExpired},
		{name: "unrelated CA, verify-ca", srv: fakeOpts{cert: good}, target: mysqltls.Target{Mode: mysqltls.VerifyCA, Roots: other.Pool},
			seq: 2, want: "not signed by a CA", reason: mysqltls.ReasonUnknownCA},
		{name: "server without TLS, verify-identity", srv: fakeOpts{cert: good, noTLS: true}, target: mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName},
			seq: 0, want: "does not offer TLS", reason: mysqltls.ReasonServerNoTLS},
		{name: "server without TLS, verify-ca", srv: fakeOpts{cert: good, noTLS: true}, target: mysqltls.Target{Mode: mysqltls.VerifyCA, Roots: ca.Pool},
			seq: 0, want: "TARGET_TLS=verify-ca requires it", reason: mysqltls.ReasonServerNoTLS},
		{name: "TLS handshake timeout", srv: fakeOpts{cert: good, stallTLS: true}, target: mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName, HandshakeTimeout: 300 * time.Millisecond},
			seq: 2, want: "timed out", reason: mysqltls.ReasonTLSTimeout},
		{name: "no greeting within the timeout", srv: fakeOpts{silent: true}, target: mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName, HandshakeTimeout: 300 * time.Millisecond},
			seq: 0, want: "sent no greeting within 300ms", reason: mysqltls.ReasonNoGreeting},
		{name: "another protocol on the port", srv: fakeOpts{notMySQL: true}, target: mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName},
			seq: 0, want: "did not send a MySQL greeting", reason: mysqltls.ReasonNoGreeting},
		{name: "closed before the greeting", srv: fakeOpts{hangUp: true}, target: mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName},
			seq: 0, want: "closed the connection before its greeting", reason: mysqltls.ReasonNoGreeting},
		{name: "closed after the greeting", srv: fakeOpts{cert: good, dropGreet: true}, target: mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName},
			seq: 2, want: "closed the connection during the login", reason: mysqltls.ReasonServerClosed},
		{name: "closed after the SSLRequest", srv: fakeOpts{cert: good, dropSSL: true}, target: mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName},
			seq: 2, want: "closed the connection during the login", reason: mysqltls.ReasonServerClosed},
		{name: "reset during the TLS handshake", srv: fakeOpts{cert: good, resetTLS: true}, target: mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName},
			seq: 2, want: "closed the connection during the login", reason: mysqltls.ReasonServerClosed},
		{name: "closed after TLS", srv: fakeOpts{cert: good, dropTLS: true}, target: mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName},
			seq: 2, want: "closed the connection during the login", reason: mysqltls.ReasonServerClosed},
		{name: "TLS 1.1 at most (docs/tls.md: 1.2 or later)", srv: fakeOpts{cert: good, maxTLS: tls.VersionTLS11}, target: mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName},
			seq: 2, want: "TLS handshake with the database failed", reason: mysqltls.ReasonTLSHandshake},
		{name: "the app asks for TLS", srv: fakeOpts{cert: good}, target: mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName},
			appTLS: true, seq: 2, want: "connect in plaintext", reason: mysqltls.ReasonClientTLS},
		{name: "verify-ca accepts a name not in the certificate", srv: fakeOpts{cert: good}, target: mysqltls.Target{Mode: mysqltls.VerifyCA, Roots: ca.Pool, ServerName: "instance-1.abc.us-east-1.rds.amazonaws.com"},
			success: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startFake(t, tc.srv)
			addr, s, logs := sidecar(t, srv, tc.target)
			// Two apps, step by step side by side, answered the same way.
			// Their timeouts run together, so the second refusal is within
			// the log limiter's second of the first on a loaded machine too:
			// one app after the other, two 300 ms timeouts took 1.9 s.
			apps := []*app{dialApp(t, addr), dialApp(t, addr)}
			atOnce := tc.seq == 0 && !tc.success // refused in place of the greeting
			for _, a := range apps {
				if atOnce {
					a.expectRefusal(0, tc.want)
				} else {
					a.read() // greeting
				}
			}
			for _, a := range apps {
				switch {
				case atOnce:
				case tc.appTLS:
					a.write(1, handshakeResponse(appCaps | mysqlwire.ClientSSL)[:mysqlwire.SSLRequestLen])
				default:
					a.write(1, handshakeResponse(appCaps))
				}
			}
			for _, a := range apps {
				switch {
				case atOnce:
				case tc.success:
					if ok := a.read(); ok.Payload[0] != mysqlwire.OK {
						t.Fatalf("got %q, want OK", ok.Payload)
					}
				default:
					a.expectRefusal(tc.seq, tc.want)
				}
			}
			if tc.success {
				return
			}
			deadline := time.Now().Add(5 * time.Second)
			for refusals(s, tc.reason) != 2 {
				if time.Now().After(deadline) {
					t.Fatalf("sidecar_tls_refusals_total{reason=%q} = %d, want 2: %+v", tc.reason, refusals(s, tc.reason), s.Snapshot().Forwards[0].TLSRefusals)
				}
				time.Sleep(10 * time.Millisecond)
			}
			// The first refusal's line in full, written before it is counted;
			// the second, within the second, in the rate limit's summary. A
			// target that never greeted failed as a dial does (the next
			// address would have been tried): the dial's lines, at ERROR.
			line, more, level, field := "TLS login refused", "TLS logins refused for more clients", "WARN", "reason"
			if tc.reason == mysqltls.ReasonNoGreeting {
				line, more, level, field = "dial target failed; closing client", "dial target failed for more clients", "ERROR", "refusal"
			}
			lines := testkit.JSONLogLines(logs.String(), line)
			var summary []map[string]any
			for deadline := time.Now().Add(5 * time.Second); len(summary) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				summary = testkit.JSONLogLines(logs.String(), more)
			}
			if len(lines) != 1 || len(summary) != 1 || summary[0]["not_logged"] != float64(1) {
				t.Fatalf("want one %q line and one summary with not_logged 1 for 2 refusals:\n%s", line, logs)
			}
			for _, l := range append(lines, summary...) {
				if l[field] != tc.reason || l["server_name"] != tc.target.ServerName || l["target"] != srv.addr() || l["level"] != level {
					t.Errorf("log line %v; want %s %s, server_name %q, target %s at %s", l, field, tc.reason, tc.target.ServerName, srv.addr(), level)
				}
			}
			// The sidecar stays up after refusing: a third app is served.
			if c := dialApp(t, addr); atOnce {
				c.expectRefusal(0, tc.want)
			} else if g := c.read(); g.Payload[0] != 10 {
				t.Fatalf("after the refusals, a new app read %q; want the greeting", g.Payload)
			}
		})
	}
}

func TestDialFailureIsAnErrPacket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close() // nothing listens: connection refused
	addr, s, logs := serveTLS(t, "127.0.0.1", port, &mysqltls.Target{Mode: mysqltls.VerifyCA, ServerName: clusterName})
	a := dialApp(t, addr)
	a.expectRefusal(0, "cannot connect to the database at 127.0.0.1:"+strconv.Itoa(port))
	// Its log line is the dial failure's, with the refusal's fields, and
	// it is written before the refusal is counted.
	deadline := time.Now().Add(5 * time.Second)
	for refusals(s, mysqltls.ReasonDialFailed) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("sidecar_tls_refusals_total{reason=dial_failed} = %d, want 1", refusals(s, mysqltls.ReasonDialFailed))
		}
		time.Sleep(10 * time.Millisecond)
	}
	lines := testkit.JSONLogLines(logs.String(), "dial target failed")
	if len(lines) != 1 {
		t.Fatalf("%d \"dial target failed\" lines for one refusal:\n%s", len(lines), logs)
	}
	l := lines[0]
	if l["refusal"] != mysqltls.ReasonDialFailed || l["server_name"] != clusterName || l["target"] != "127.0.0.1:"+strconv.Itoa(port) || l["reason"] != "refused" {
		t.Errorf("log line %v; want refusal %s, server_name %s, the target, and the dial's reason (refused)", l, mysqltls.ReasonDialFailed, clusterName)
	}
}

// Out of file descriptors, the app's error blames the sidecar's limit, not
// the database, its security groups or the cluster.
func TestOutOfFilesIsTheSidecarsRefusal(t *testing.T) {
	noFiles := func(cfg *proxy.Config) {
		cfg.DialContext = func(_ context.Context, network, _ string) (net.Conn, error) {
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("socket", syscall.EMFILE)}
		}
	}
	addr, s, logs := serveTLS(t, "127.0.0.1", 3306, &mysqltls.Target{Mode: mysqltls.VerifyCA, ServerName: clusterName}, noFiles)
	a := dialApp(t, addr)
	a.expectRefusal(0, "sidecar: the sidecar is out of file descriptors and could not connect to the database; raise the task's ulimits nofile or lower MAX_CONNECTIONS")
	deadline := time.Now().Add(5 * time.Second)
	for refusals(s, mysqltls.ReasonDialFailed) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("sidecar_tls_refusals_total{reason=dial_failed} = %d, want 1", refusals(s, mysqltls.ReasonDialFailed))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if l := testkit.JSONLogLines(logs.String(), "dial target failed"); len(l) != 1 || l[0]["reason"] != "fd_limit" {
		t.Errorf("dial failure lines %v; want one with reason fd_limit", l)
	}
}

// refusals is sidecar_tls_refusals_total{reason} of the first forward.
func refusals(s *proxy.Server, reason string) uint64 {
	for _, c := range s.Snapshot().Forwards[0].TLSRefusals {
		if c.Label == reason {
			return c.Value
		}
	}
	return 0
}

// closedAs is sidecar_connections_closed_total{reason} of the first forward.
func closedAs(s *proxy.Server, reason relay.Reason) uint64 {
	for _, c := range s.Snapshot().Forwards[0].ConnectionsClosed {
		if c.Label == string(reason) {
			return c.Value
		}
	}
	return 0
}

func TestGreetingFlagsRoundTrip(t *testing.T) {
	g := greeting(7, serverCaps)
	out, err := mysqlwire.WithoutGreetingCaps(g, mysqlwire.ClientSSL)
	if err != nil {
		t.Fatal(err)
	}
	caps, _, _, _ := mysqlwire.GreetingCaps(out)
	if caps != serverCaps&^mysqlwire.ClientSSL {
		t.Fatalf("caps %#x", caps)
	}
	diff := 0
	for i := range g {
		if g[i] != out[i] {
			diff++
		}
	}
	if diff != 1 || len(out) != len(g) {
		t.Errorf("%d bytes differ; clearing CLIENT_SSL (bit 11) changes exactly one", diff)
	}
	if _, _, _, err := mysqlwire.GreetingCaps([]byte{9, 'x'}); err == nil {
		t.Error("protocol 9 greeting accepted")
	}
	if mysqlwire.IsSSLRequest(handshakeResponse(appCaps|mysqlwire.ClientSSL)) || !mysqlwire.IsSSLRequest(handshakeResponse(appCaps | mysqlwire.ClientSSL)[:32]) {
		t.Error("IsSSLRequest confuses a full response with an SSLRequest")
	}
	if binary.LittleEndian.Uint32(handshakeResponse(appCaps)) != appCaps {
		t.Fatal("test response")
	}
}

// An app that leaves partway through its login ends the login and the
// database's side of it at once, is counted as io_error (logged below
// INFO: not the operator's problem), never as client_gone, whichever of
// the proxy's departure watch and the login saw the close first, and the
// sidecar goes on logging other apps in.
func TestAppLeavingMidLogin(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName), exchange: true})
	addr, s, logs := sidecar(t, srv, mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName})
	for i, tc := range []struct {
		name  string
		leave func(a *app)
	}{
		{name: "mid-response", leave: func(a *app) {
			a.read() // greeting
			resp := handshakeResponse(appCaps)
			hdr := []byte{byte(len(resp)), byte(len(resp) >> 8), byte(len(resp) >> 16), 1}
			if _, err := a.c.Write(append(hdr, resp[:10]...)); err != nil {
				a.t.Fatal(err)
			}
		}},
		{name: "at the auth switch", leave: func(a *app) {
			a.read()
			a.write(1, handshakeResponse(appCaps))
			if p := a.read(); p.Payload[0] != mysqlwire.AuthSwitch {
				a.t.Fatalf("got %q, want the auth switch", p.Payload)
			}
		}},
		{name: "after answering the auth switch", leave: func(a *app) {
			a.read()
			a.write(1, handshakeResponse(appCaps))
			a.read()
			a.write(3, []byte("answer"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.mu.Lock()
			endedBefore := srv.ended
			srv.mu.Unlock()
			a := dialApp(t, addr)
			tc.leave(a)
			_ = a.c.Close()
			deadline := time.Now().Add(5 * time.Second)
			for refusals(s, mysqltls.ReasonIO) != uint64(i+1) || closedAs(s, relay.ReasonClientGone) != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("sidecar_tls_refusals_total{reason=io_error} = %d, sidecar_connections_closed_total{reason=client_gone} = %d; want %d and 0",
						refusals(s, mysqltls.ReasonIO), closedAs(s, relay.ReasonClientGone), i+1)
				}
				time.Sleep(10 * time.Millisecond)
			}
			// The database's side ends too, well before the fake's own 20 s
			// deadline would end it.
			for {
				srv.mu.Lock()
				ended := srv.ended - endedBefore
				srv.mu.Unlock()
				if ended == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d of the database's connections ended within 5 s after the app left, want 1", ended)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	if lines := testkit.JSONLogLines(logs.String(), "TLS login refused"); len(lines) != 0 {
		t.Errorf("apps leaving mid-login logged at INFO or above: %v", lines)
	}
	// Still up: the next app logs in.
	a := dialApp(t, addr)
	a.read()
	a.write(1, handshakeResponse(appCaps))
	for _, seq := range []byte{2, 4} {
		a.read()
		a.write(seq+1, []byte("answer"))
	}
	if ok := a.read(); ok.Payload[0] != mysqlwire.OK {
		t.Fatalf("login after the apps that left: got %q, want OK", ok.Payload)
	}
}

// A login packet over the sidecar's limit is refused with an ERR the app
// can read, not a reset.
func TestOversizedLoginPacketIsRefused(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)})
	addr, _, logs := sidecar(t, srv, mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName})
	a := dialApp(t, addr)
	a.read()
	r := mysqlwire.HandshakeResponse{Caps: appCaps, MaxPacket: 1 << 24, Charset: 45, User: "app", AuthData: []byte{1},
		Plugin: mysqlwire.NativePassword, Attrs: bytes.Repeat([]byte("a"), 1<<20)}
	a.write(1, r.Append(nil))
	a.expectRefusal(2, "login packet is over")
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), `"reason":"client_protocol"`); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal logged with reason client_protocol:\n%s", logs)
		}
	}
}

// An app that resets its connection after logging in (no command sent
// since) did not leave before a byte moved: the login moved them, though
// the relay's counts start after it. client_error, not client_gone (which
// the departure grace counts).
func TestResetAfterTheLoginIsAClientError(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)})
	addr, s, _ := sidecar(t, srv, mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName})
	a := dialApp(t, addr)
	a.read() // greeting
	a.write(1, handshakeResponse(appCaps))
	if ok := a.read(); ok.Payload[0] != mysqlwire.OK {
		t.Fatalf("login: %q", ok.Payload)
	}
	_ = a.c.(*net.TCPConn).SetLinger(0)
	_ = a.c.Close() // a reset
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		closed := s.Snapshot().Forwards[0].ConnectionsClosed
		if slices.Contains(closed, proxy.Count{Label: "client_error", Value: 1}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("closed %v; want one client_error", closed)
		}
	}
}
