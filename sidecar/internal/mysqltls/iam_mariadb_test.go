package mysqltls_test

import (
	"bytes"
	"crypto/x509"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testiam"
	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/internal/testmysql"
	"github.com/example/sidecar/sidecar/internal/iamauth"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// mariaIAMTarget is an IAM target in front of the IAM fixture (a real
// MariaDB whose IAM users check tokens through PAM).
func mariaIAMTarget(t *testing.T, f *testiam.Fixture) mysqltls.Target {
	t.Helper()
	pem, err := os.ReadFile(f.TLS.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", f.TLS.CA)
	}
	tokens := &iamauth.Tokens{Region: testiam.Region, Source: iamauth.Source{Name: "test", Provider: f.Creds.Provider()}}
	return mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: roots, RootsFrom: f.TLS.CA, ServerName: testmysql.ClusterName,
		IAM: &iamauth.Authority{Tokens: tokens, Endpoint: f.Endpoint}}
}

// A COM_CHANGE_USER with an empty attribute block (mysql2 always sends
// one, libmysqlclient after MYSQL_OPT_CONNECT_ATTR_RESET) reaches the
// server with the block: MariaDB and MySQL read one whenever
// CLIENT_CONNECT_ATTRS is on, and answer "Unknown command" without it.
func TestIAMChangeUserWithAnEmptyAttributeBlock(t *testing.T) {
	f := testiam.Start(t)
	target := mariaIAMTarget(t, f)
	addr, _, _ := serveTLS(t, "127.0.0.1", f.Server.Port, &target)
	a := dialApp(t, addr)
	a.read() // the greeting
	caps := appCaps &^ mysqlwire.ClientCompress
	login := mysqlwire.HandshakeResponse{Caps: caps, MaxPacket: 1 << 24, Charset: 33, User: testiam.User,
		Database: testiam.Database, Plugin: mysqlwire.NativePassword}
	a.write(1, login.Append(nil))
	if ok := a.read(); ok.Seq != 2 || ok.Payload[0] != mysqlwire.OK {
		t.Fatalf("login as %s: seq %d %q", testiam.User, ok.Seq, ok.Payload)
	}
	// As mysql2 writes it: user, auth data, database, charset, plugin, a
	// zero-length attribute block.
	cu := append([]byte{mysqlwire.ComChangeUser}, testiam.OtherUser+"\x00\x00"+testiam.Database+"\x00\x21\x00"+mysqlwire.NativePassword+"\x00\x00"...)
	a.write(0, cu)
	if p := a.read(); p.Seq != 1 || p.Payload[0] != mysqlwire.OK {
		t.Fatalf("COM_CHANGE_USER to %s answered seq %d %q; want OK at seq 1", testiam.OtherUser, p.Seq, p.Payload)
	}
	a.write(0, []byte("\x03SELECT CURRENT_USER()"))
	if p := a.read(); p.Seq != 1 || p.Payload[0] != 1 {
		t.Fatalf("query after the change: seq %d %q; want a one-column result set", p.Seq, p.Payload)
	}
}

// A COM_CHANGE_USER leaves the session's character set as the server
// leaves it for an app connected directly: the one the packet names, and
// without one (the packet ends after the database, as a client without
// CLIENT_PLUGIN_AUTH may send it) the server's default, for MySQL and
// MariaDB reset a changed session's variables to the global values. The
// sidecar must name a character set, as the plugin comes after it: it
// named the login's, so the app's session differed from a direct one
// (utf8mb3 here, where the server gives latin1).
func TestIAMChangeUserCharacterSetAsTheServerSetsIt(t *testing.T) {
	f := testiam.Start(t)
	target := mariaIAMTarget(t, f)
	addr, _, _ := serveTLS(t, "127.0.0.1", f.Server.Port, &target)
	const loginCharset = 33 // utf8mb3
	caps := appCaps &^ (mysqlwire.ClientCompress | mysqlwire.ClientConnectAttrs | mysqlwire.ClientPluginAuth)
	for _, tc := range []struct {
		name     string
		query    string   // sent after the login, if any
		charsets [][]byte // of each COM_CHANGE_USER in turn; nil = none
	}{
		{"named", "", [][]byte{{45, 0}}},
		{"none, after the login", "", [][]byte{nil}},
		{"none, after a change that named one", "", [][]byte{{45, 0}, nil}},
		{"none, after SET NAMES", "SET NAMES utf8mb4", [][]byte{nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// session runs the test's steps as the app, logged in as user
			// with password over a, and returns its character sets.
			session := func(a *app, user, other, password string) string {
				scramble, err := mysqlwire.GreetingScramble(a.read().Payload)
				if err != nil {
					t.Fatal(err)
				}
				login := mysqlwire.HandshakeResponse{Caps: caps, MaxPacket: 1 << 24, Charset: loginCharset, User: user,
					AuthData: mysqlwire.NativeProof([]byte(password), scramble), Database: testiam.Database}
				a.write(1, login.Append(nil))
				if ok := a.read(); ok.Seq != 2 || ok.Payload[0] != mysqlwire.OK {
					t.Fatalf("login as %s: seq %d %q", user, ok.Seq, ok.Payload)
				}
				if tc.query != "" {
					a.write(0, append([]byte{0x03}, tc.query...))
					if ok := a.read(); ok.Payload[0] != mysqlwire.OK {
						t.Fatalf("%s: %q", tc.query, ok.Payload)
					}
				}
				for _, cs := range tc.charsets {
					cu := mysqlwire.ChangeUser{User: other, AuthData: mysqlwire.NativeProof([]byte(password), scramble), Database: testiam.Database}
					a.write(0, append(cu.Append(nil, caps), cs...))
					p := a.read()
					if plugin, nonce, ok := mysqlwire.ParseAuthSwitch(p.Payload); ok && plugin == mysqlwire.NativePassword {
						// MariaDB asks again, over a new scramble, of a direct app
						a.write(p.Seq+1, mysqlwire.NativeProof([]byte(password), bytes.TrimSuffix(nonce, []byte{0})))
						p = a.read()
					}
					if p.Payload[0] != mysqlwire.OK {
						t.Fatalf("COM_CHANGE_USER to %s with character set %v answered %q; want OK", other, cs, p.Payload)
					}
				}
				return sessionCharsets(a)
			}
			c, err := net.DialTimeout("unix", f.Server.Socket, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			_ = c.SetDeadline(time.Now().Add(15 * time.Second))
			direct := session(&app{t: t, c: c}, f.Server.User, f.Server.User, f.Server.Password)
			if tc.charsets[len(tc.charsets)-1] == nil && strings.Contains(direct, "utf8mb3") {
				t.Fatalf("direct session: %s; the test needs a server whose default is not the login's utf8mb3", direct)
			}
			if via := session(dialApp(t, addr), testiam.User, testiam.OtherUser, ""); via != direct {
				t.Fatalf("character sets through the sidecar: %s; want the server's for a direct session: %s", via, direct)
			}
		})
	}
}

// sessionCharsets is the session's character_set_client, collation_connection
// and character_set_results.
func sessionCharsets(a *app) string {
	a.t.Helper()
	a.write(0, []byte("\x03SELECT @@character_set_client, @@collation_connection, @@character_set_results"))
	a.read() // the column count: 3
	for range 3 {
		a.read() // a column definition
	}
	a.read() // EOF
	row := a.read().Payload
	if eof := a.read(); eof.Payload[0] != 0xfe {
		a.t.Fatalf("after the row: %q; want EOF", eof.Payload)
	}
	var out []string
	for len(row) > 0 && int(row[0]) < len(row) {
		out = append(out, string(row[1:1+row[0]]))
		row = row[1+row[0]:]
	}
	return strings.Join(out, " ")
}

// A COM_CHANGE_USER sent before the answer to the previous command was
// read (pipelined), which docs/iam.md says the sidecar cannot relay, gets
// the app an ERR saying so in that answer's place, at the sequence id the
// app reads it at, one "TLS login refused" line, and the end of the
// session: no packet out of place. The sidecar took the answer for the
// change's: a command's OK logged the app in as the new user before the
// server had (the server's own answer then reached the app as another),
// a result set's first packet was refused as a failed IAM login, and a
// command's ERR was logged as the server refusing the change.
// Changes after an answer was read, or after a command without one
// (COM_STMT_CLOSE), go on.
func TestIAMPipelinedChangeUserIsRefused(t *testing.T) {
	f := testiam.Start(t)
	target := mariaIAMTarget(t, f)
	caps := appCaps &^ mysqlwire.ClientCompress
	changeUser := mysqlwire.ChangeUser{User: testiam.OtherUser, Database: testiam.Database, Charset: 33, Plugin: mysqlwire.NativePassword, Attrs: []byte{}}
	cu := changeUser.Append(nil, caps)
	loggedIn := func(t *testing.T) (*app, *proxy.Server, *testkit.LockedBuffer) {
		addr, s, logs := serveTLS(t, "127.0.0.1", f.Server.Port, &target)
		a := dialApp(t, addr)
		a.read() // the greeting
		login := mysqlwire.HandshakeResponse{Caps: caps, MaxPacket: 1 << 24, Charset: 33, User: testiam.User,
			Database: testiam.Database, Plugin: mysqlwire.NativePassword}
		a.write(1, login.Append(nil))
		if ok := a.read(); ok.Payload[0] != mysqlwire.OK {
			t.Fatalf("login: %q", ok.Payload)
		}
		return a, s, logs
	}
	// refused checks p, the app's next packet, is the refusal at seq, that
	// the end follows, and that the sidecar logged and counted it once.
	refused := func(t *testing.T, a *app, s *proxy.Server, logs *testkit.LockedBuffer, p mysqlwire.Packet, seq byte) {
		t.Helper()
		if _, msg, isErr := mysqlwire.ErrMessage(p.Payload); !isErr || p.Seq != seq || !strings.Contains(msg, "before reading the answer to its previous command") {
			t.Fatalf("app read seq %d %q; want the sidecar's ERR about the pipelined COM_CHANGE_USER at seq %d", p.Seq, p.Payload, seq)
		}
		if p, err := mysqlwire.ReadPacket(a.c, 1<<24); err == nil {
			t.Fatalf("app read seq %d %q after the refusal; want the end", p.Seq, p.Payload)
		}
		for deadline := time.Now().Add(mysqltls.LoginTimeout); closedAs(s, "tls_refused") != 1; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("closed %v; want tls_refused 1:\n%s", s.Snapshot().Forwards[0].ConnectionsClosed, logs)
			}
		}
		lines := testkit.JSONLogLines(logs.String(), "TLS login refused")
		if len(lines) != 1 || lines[0]["reason"] != mysqltls.ReasonClientProtocol || lines[0]["command"] != "COM_CHANGE_USER" {
			t.Fatalf("want one \"TLS login refused\" line, reason client_protocol, for the COM_CHANGE_USER:\n%s", logs)
		}
		if n := refusals(s, mysqltls.ReasonClientProtocol); n != 1 {
			t.Fatalf("refusals %v; want client_protocol 1", s.Snapshot().Forwards[0].TLSRefusals)
		}
	}
	for _, query := range []string{"DO 1", "SELECT 1", "SELECT * FROM no_such_table"} { // an OK, a result set, an ERR
		t.Run("after "+query, func(t *testing.T) {
			a, s, logs := loggedIn(t)
			b, _ := mysqlwire.AppendPacket(nil, 0, append([]byte{0x03}, query...))
			b, _ = mysqlwire.AppendPacket(b, 0, cu)
			if _, err := a.c.Write(b); err != nil {
				t.Fatal(err)
			}
			refused(t, a, s, logs, a.read(), 1)
		})
	}
	t.Run("within a result set", func(t *testing.T) {
		a, s, logs := loggedIn(t)
		// Far more than the sockets' buffers hold (20 MB): most of it is
		// still to come when the change reaches the sidecar. Wide rows,
		// not many: MariaDB ends a recursive CTE at max_recursive_iterations
		// (1000) without an error, so 20000 rows of 1 kB asked for were
		// 1001 (1 MB), which the buffers could hold whole.
		a.write(0, []byte("\x03WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r WHERE n < 1000) SELECT REPEAT('x', 20000) FROM r"))
		if p := a.read(); p.Seq != 1 || p.Payload[0] != 1 {
			t.Fatalf("query answered seq %d %q; want a one-column result set", p.Seq, p.Payload)
		}
		a.write(0, cu)
		time.Sleep(500 * time.Millisecond) // the change is with the server while the rows wait
		prev, eofs := byte(1), 0
		for {
			p := a.read()
			if p.Payload[0] == mysqlwire.ErrPacketHdr {
				refused(t, a, s, logs, p, prev+1) // in sequence, where the app reads on
				break
			}
			if p.Seq != prev+1 {
				t.Fatalf("app read seq %d after %d; want each packet in sequence", p.Seq, prev)
			}
			prev = p.Seq
			if p.Payload[0] == mysqlwire.AuthSwitch && len(p.Payload) < 9 {
				if eofs++; eofs == 2 { // after the columns, after the rows
					t.Fatal("the whole result set reached the app before the change: the test needs a larger one")
				}
			}
		}
	})
	t.Run("not pipelined", func(t *testing.T) {
		a, s, logs := loggedIn(t)
		a.write(0, []byte{0x19, 1, 0, 0, 0}) // COM_STMT_CLOSE: no answer
		for range 2 {
			a.write(0, cu)
			if p := a.read(); p.Seq != 1 || p.Payload[0] != mysqlwire.OK {
				t.Fatalf("COM_CHANGE_USER answered seq %d %q; want OK at 1:\n%s", p.Seq, p.Payload, logs)
			}
		}
		a.write(0, []byte("\x03SELECT CURRENT_USER()"))
		if p := a.read(); p.Seq != 1 || p.Payload[0] != 1 {
			t.Fatalf("query after the changes: seq %d %q; want a one-column result set", p.Seq, p.Payload)
		}
		if n := refusals(s, mysqltls.ReasonClientProtocol); n != 0 {
			t.Fatalf("refusals %v; want none", s.Snapshot().Forwards[0].TLSRefusals)
		}
	})
}
