package mysqltls_test

import (
	"crypto/x509"
	"os"
	"testing"

	"github.com/example/sidecar/internal/testiam"
	"github.com/example/sidecar/internal/testmysql"
	"github.com/example/sidecar/sidecar/internal/iamauth"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
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

// A COM_CHANGE_USER without a character set (the packet ends after the
// database, as before protocol 4.1) keeps the login's character set. The
// sidecar must send one, to name the plugin after it; it sent 0, which
// MariaDB and MySQL take as the server's default (latin1 here): the app's
// UTF-8 was then read as latin1.
func TestIAMChangeUserKeepsTheCharacterSet(t *testing.T) {
	f := testiam.Start(t)
	target := mariaIAMTarget(t, f)
	addr, _, _ := serveTLS(t, "127.0.0.1", f.Server.Port, &target)
	for _, tc := range []struct {
		name    string
		charset []byte // after the database; nil = none
		want    string
	}{
		{"sent", []byte{45, 0}, "utf8mb4"},
		{"not sent", nil, "utf8mb3"}, // the login's 33
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := dialApp(t, addr)
			a.read() // the greeting
			caps := appCaps &^ (mysqlwire.ClientCompress | mysqlwire.ClientConnectAttrs)
			login := mysqlwire.HandshakeResponse{Caps: caps, MaxPacket: 1 << 24, Charset: 33, User: testiam.User,
				Database: testiam.Database, Plugin: mysqlwire.NativePassword}
			a.write(1, login.Append(nil))
			if ok := a.read(); ok.Seq != 2 || ok.Payload[0] != mysqlwire.OK {
				t.Fatalf("login as %s: seq %d %q", testiam.User, ok.Seq, ok.Payload)
			}
			cu := append([]byte{mysqlwire.ComChangeUser}, testiam.OtherUser+"\x00\x00"+testiam.Database+"\x00"...)
			a.write(0, append(cu, tc.charset...))
			if p := a.read(); p.Seq != 1 || p.Payload[0] != mysqlwire.OK {
				t.Fatalf("COM_CHANGE_USER to %s answered seq %d %q; want OK at seq 1", testiam.OtherUser, p.Seq, p.Payload)
			}
			a.write(0, []byte("\x03SELECT @@character_set_client"))
			var row []byte
			for range 4 { // column count, definition, EOF, the row
				row = a.read().Payload
			}
			if got := string(row[1:]); len(row) == 0 || int(row[0]) != len(row)-1 || got != tc.want {
				t.Fatalf("character_set_client after the change: %q; want %q", row, tc.want)
			}
		})
	}
}
