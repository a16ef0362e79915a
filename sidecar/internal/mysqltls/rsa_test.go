package mysqltls_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
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
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	mysql.RegisterServerPubKey("foreign-test-key", &other.PublicKey)
	for _, plugin := range []string{"caching_sha2_password", "sha256_password"} {
		t.Run(plugin, func(t *testing.T) {
			t.Parallel()
			acct := &fakeAccount{user: "app", password: "pw", plugin: plugin, greet: plugin}
			addr, _ := sha2Sidecar(t, acct)
			err := goLogin(t, addr, "app", "pw", "&serverPubKey=foreign-test-key")
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
