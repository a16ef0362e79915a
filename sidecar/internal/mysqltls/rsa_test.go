package mysqltls_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// sha2Sidecar is a sidecar in verify-identity mode in front of a fake
// server whose one account is acct.
func sha2Sidecar(t *testing.T, acct *fakeAccount) (string, *fakeServer) {
	t.Helper()
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName), account: acct})
	addr, _, _ := sidecar(t, srv, mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName,
		PasswordKey: mysqltls.NewPasswordKey()})
	return addr, srv
}

// goLogin logs in through addr with go-sql-driver/mysql and pings.
func goLogin(t *testing.T, addr, user, password, params string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	db, err := sql.Open("mysql", user+":"+password+"@tcp("+addr+")/?timeout=5s"+params)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return db.PingContext(ctx)
}

// caching_sha2_password and sha256_password accounts log in through the
// sidecar: the app, which sees plaintext, gets the sidecar's public key
// and sends its password RSA encrypted; the server, which sees TLS, gets
// it in clear. A real MySQL server over TLS never answers a key request.
func TestSHA2PasswordsThroughTLS(t *testing.T) {
	t.Parallel()
	const pw = "a password longer than the twenty-byte nonce"
	// Greeted with sha256_password, the key request is in the
	// HandshakeResponse itself.
	for _, acct := range sha2Accounts(pw) {
		t.Run(acct.plugin+" after "+acct.greet, func(t *testing.T) {
			t.Parallel()
			addr, srv := sha2Sidecar(t, acct)
			for i := range 2 {
				if err := goLogin(t, addr, "app", pw, ""); err != nil {
					t.Fatalf("login %d: %v", i+1, err)
				}
			}
			clear, fast := acct.received()
			want := []string{pw, pw} // full authentication each time
			if acct.plugin == "caching_sha2_password" {
				want, fast = []string{pw}, fast-1 // then the server's cache: fast authentication
			}
			if strings.Join(clear, "|") != strings.Join(want, "|") || fast != 0 {
				t.Errorf("server got passwords %q in clear (fast authentications %+d over the expected); want %q", clear, fast, want)
			}
			if err := goLogin(t, addr, "app", "wrong", ""); err == nil || !strings.Contains(err.Error(), "1045") {
				t.Errorf("wrong password: %v; want the server's 1045", err)
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if len(srv.errs) > 0 {
				t.Errorf("server: %v", srv.errs)
			}
		})
	}
}

// An app that encrypts with a server public key it was configured with
// cannot be served: the server's key is not the sidecar's, and the server
// over TLS would take the blob as the password. The app is told why.
func TestSHA2PasswordWithForeignKey(t *testing.T) {
	t.Parallel()
	for _, bits := range []int{2048, 4096} { // the sidecar's key's size, and another
		other, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		mysql.RegisterServerPubKey(fmt.Sprintf("foreign-test-key-%d", bits), &other.PublicKey)
	}
	for _, tc := range []struct {
		plugin string
		bits   int
	}{{"caching_sha2_password", 2048}, {"sha256_password", 2048}, {"caching_sha2_password", 4096}, {"sha256_password", 4096}} {
		t.Run(fmt.Sprintf("%s/%d", tc.plugin, tc.bits), func(t *testing.T) {
			t.Parallel()
			acct := &fakeAccount{user: "app", password: "pw", plugin: tc.plugin, greet: tc.plugin}
			addr, _ := sha2Sidecar(t, acct)
			err := goLogin(t, addr, "app", "pw", fmt.Sprintf("&serverPubKey=foreign-test-key-%d", tc.bits))
			var me *mysql.MySQLError
			if !errors.As(err, &me) || !strings.HasPrefix(me.Message, "sidecar: ") || !strings.Contains(me.Message, "not the sidecar's") {
				t.Fatalf("err = %v; want the sidecar's ERR about the key", err)
			}
			if clear, _ := acct.received(); len(clear) != 0 {
				t.Errorf("server got %q as a password", clear)
			}
		})
	}
}

// The MariaDB C client and PyMySQL do the same exchange.
func TestSHA2PasswordsOtherClients(t *testing.T) {
	t.Parallel()
	const pw = "s3cret-for-other-clients"
	t.Run("mariadb-admin", func(t *testing.T) {
		t.Parallel()
		bin, err := exec.LookPath("mariadb-admin")
		if err != nil {
			testenv.Unavailable(t, "mariadb-admin not installed (Debian's mariadb-client)")
		}
		for _, acct := range sha2Accounts(pw) {
			plugin := acct.plugin + " after " + acct.greet
			addr, _ := sha2Sidecar(t, acct)
			host, port, _ := strings.Cut(addr, ":")
			cmd := exec.Command(bin, "--no-defaults", "--protocol=tcp", "-h", host, "-P", port, "-u", "app", "--skip-ssl", "--connect-timeout=5", "ping")
			cmd.Env = append(os.Environ(), "MYSQL_PWD="+pw)
			if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "is alive") {
				t.Errorf("%s: mariadb-admin ping: %v\n%s", plugin, err, out)
			}
			if clear, _ := acct.received(); len(clear) != 1 || clear[0] != pw {
				t.Errorf("%s: server got %q in clear", plugin, clear)
			}
		}
	})
	t.Run("pymysql", func(t *testing.T) {
		t.Parallel()
		py := "/usr/bin/python3" // Debian's, with Debian's modules
		if err := exec.Command(py, "-c", "import pymysql, cryptography").Run(); err != nil {
			testenv.Unavailable(t, "python3-pymysql or python3-cryptography not installed (Debian's packages of those names)")
		}
		for _, acct := range sha2Accounts(pw) {
			plugin := acct.plugin + " after " + acct.greet
			addr, _ := sha2Sidecar(t, acct)
			host, port, _ := strings.Cut(addr, ":")
			cmd := exec.Command(py, "-c", `import os, pymysql
c = pymysql.connect(host=os.environ["H"], port=int(os.environ["P"]), user="app", password=os.environ["PW"], connect_timeout=5, autocommit=None)  # None: no SET autocommit, which the fake would echo
c.ping(reconnect=False)
print("pinged")`)
			cmd.Env = append(os.Environ(), "H="+host, "P="+port, "PW="+pw)
			if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "pinged") {
				t.Errorf("%s: pymysql: %v\n%s", plugin, err, out)
			}
			if clear, _ := acct.received(); len(clear) != 1 || clear[0] != pw {
				t.Errorf("%s: server got %q in clear", plugin, clear)
			}
		}
	})
}

// sha2Accounts are an account of each plugin, greeted with Aurora's default
// plugin (then an auth switch) and with its own.
func sha2Accounts(password string) []*fakeAccount {
	var out []*fakeAccount
	for _, plugin := range []string{"caching_sha2_password", "sha256_password"} {
		for _, greet := range []string{"mysql_native_password", plugin} {
			out = append(out, &fakeAccount{user: "app", password: password, plugin: plugin, greet: greet})
		}
	}
	return out
}

// A server that dies between "fast auth succeeded" (0x01 0x03) and its OK:
// the app's ERR follows the 0x01 0x03 it got, at the next sequence id, so
// its driver reads the sidecar's message, not "packets out of order".
func TestServerClosesAfterFastAuth(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	cert := ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)
	ln := testkit.Serve(t, func(c net.Conn) {
		defer c.Close()
		_, _ = mysqlwire.WritePacket(c, 0, greetingFor(1, serverCaps, "caching_sha2_password"))
		if _, err := mysqlwire.ReadPacket(c, 1<<20); err != nil {
			return
		}
		ts := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		resp, err := mysqlwire.ReadPacket(ts, 1<<20)
		if err != nil {
			return
		}
		_, _ = mysqlwire.WritePacket(ts, resp.Seq+1, []byte{mysqlwire.MoreData, 0x03})
		_ = ts.Close() // gone before the OK
	})
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)
	addr, _, _ := serveTLS(t, host, p, &mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: ca.Pool, ServerName: clusterName,
		Sessions: tls.NewLRUClientSessionCache(0)})
	a := dialApp(t, addr)
	a.read()
	r := mysqlwire.HandshakeResponse{Caps: appCaps, MaxPacket: 1 << 24, Charset: 45, User: "app",
		AuthData: bytes.Repeat([]byte{7}, 32), Plugin: "caching_sha2_password"}
	a.write(1, r.Append(nil))
	if p := a.read(); p.Seq != 2 || !bytes.Equal(p.Payload, []byte{mysqlwire.MoreData, 0x03}) {
		t.Fatalf("got seq %d %x, want 0x01 0x03 at 2", p.Seq, p.Payload)
	}
	a.expectRefusal(3, "closed the connection during the login")
}

// The response the sidecar rebuilds with a sha256_password in clear keeps
// every other byte the app sent: MySQL 8's zstd level after the attributes
// too, without which the server would read a level that is not there.
func TestSHA256ResponseKeepsTheZstdLevel(t *testing.T) {
	const pw = "pw"
	acct := &fakeAccount{user: "app", password: pw, plugin: "sha256_password", greet: "sha256_password"}
	addr, srv := sha2Sidecar(t, acct)
	a := dialApp(t, addr)
	nonce, _ := mysqlwire.GreetingScramble(a.read().Payload)
	r := mysqlwire.HandshakeResponse{Caps: appCaps | mysqlwire.ClientZstdCompressionAlgorithm, MaxPacket: 1 << 24, Charset: 45, User: "app",
		AuthData: []byte{1}, Plugin: "sha256_password", Attrs: []byte("\x04_pid\x03123")}
	a.write(1, append(r.Append(nil), 3)) // zstd compression level 3
	key := a.read()
	if key.Seq != 2 || key.Payload[0] != mysqlwire.MoreData {
		t.Fatalf("got seq %d %q, want the key at 2", key.Seq, key.Payload)
	}
	b, _ := pem.Decode(key.Payload[1:])
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	plain := append([]byte(pw), 0)
	for i := range plain {
		plain[i] ^= nonce[i%len(nonce)]
	}
	cipher, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub.(*rsa.PublicKey), plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.write(3, cipher)
	if ok := a.read(); ok.Payload[0] != mysqlwire.OK {
		t.Fatalf("got %q, want OK", ok.Payload)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if got := srv.responses[0]; got[len(got)-1] != 3 || !bytes.Contains(got, []byte("\x04_pid\x03123\x03")) {
		t.Errorf("the server's response ends % x: the zstd level after the attributes is gone", got[max(0, len(got)-8):])
	}
}
