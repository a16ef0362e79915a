package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/internal/testmysql"
)

// tlsSidecar runs the sidecar in-process with TLS to target and returns
// the address the app connects to.
func tlsSidecar(t *testing.T, srv *testmysql.Server, extra map[string]string) string {
	t.Helper()
	listen := strconv.Itoa(testkit.FreePort(t))
	env := map[string]string{
		"TARGET_HOST": "127.0.0.1", "TARGET_PORT": strconv.Itoa(srv.Port),
		"LISTEN_ADDR": "127.0.0.1", "LISTEN_PORT": listen,
		"ADMIN_PORT": strconv.Itoa(testkit.FreePort(t)),
		"TARGET_TLS": "verify-identity", "TARGET_SERVER_NAME": testmysql.ClusterName,
	}
	for k, v := range extra {
		if v == "" {
			delete(env, k)
		} else {
			env[k] = v
		}
	}
	runAsync(t, env)
	waitHealthy(t, env, true)
	return "127.0.0.1:" + listen
}

// openVia opens a go-sql-driver pool in plaintext to addr.
func openVia(t *testing.T, srv *testmysql.Server, addr, db string, edit func(*mysql.Config)) *sql.DB {
	t.Helper()
	c, err := mysql.ParseDSN(srv.DSN(addr, db))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(c)
	}
	conn, err := mysql.NewConnector(c)
	if err != nil {
		t.Fatal(err)
	}
	pool := sql.OpenDB(conn)
	t.Cleanup(func() { _ = pool.Close() })
	return pool
}

func sslVersion(ctx context.Context, db *sql.DB) (string, error) {
	var name, v string
	err := db.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Ssl_version'").Scan(&name, &v)
	return v, err
}

// The fixture first: it really requires TLS, and its certificate names
// only the Aurora-like endpoints.
func TestTLSFixture(t *testing.T) {
	t.Parallel()
	srv, files := testmysql.StartTLS(t, testmysql.TLSOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if _, err := exec.LookPath("openssl"); err != nil {
		testenv.Unavailable(t, "openssl not found (install Debian's openssl package)")
	}
	out, err := exec.CommandContext(ctx, "openssl", "s_client", "-starttls", "mysql", "-connect", srv.Addr,
		"-CAfile", files.CA, "-verify_hostname", testmysql.ClusterName, "-verify_return_error").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verify return code: 0 (ok)") || !strings.Contains(string(out), "CN = "+testmysql.ClusterName) {
		t.Fatalf("openssl s_client -starttls mysql: %v\n%s", err, out)
	}

	plain := openVia(t, srv, srv.Addr, "", nil)
	if err := plain.PingContext(ctx); err == nil {
		t.Fatal("a plaintext login was accepted by the require_secure_transport server")
	}

	roots := x509.NewCertPool()
	pemCA, _ := os.ReadFile(files.CA)
	roots.AppendCertsFromPEM(pemCA)
	direct := openVia(t, srv, srv.Addr, "", func(c *mysql.Config) {
		c.TLS = &tls.Config{RootCAs: roots, ServerName: testmysql.ClusterName}
	})
	if v, err := sslVersion(ctx, direct); err != nil || v == "" {
		t.Fatalf("direct TLS login: Ssl_version %q, %v", v, err)
	}
}

func TestTLSThroughSidecar(t *testing.T) {
	t.Parallel()
	srv, files := testmysql.StartTLS(t, testmysql.TLSOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	via := tlsSidecar(t, srv, map[string]string{"TARGET_TLS_CA": files.CA})

	setup := openVia(t, srv, via, "", nil)
	if _, err := setup.ExecContext(ctx, "CREATE DATABASE tlsdb"); err != nil {
		t.Fatal(err)
	}
	db := openVia(t, srv, via, "tlsdb", func(c *mysql.Config) {
		c.MultiStatements = true
		c.AllowAllFiles = true
	})

	t.Run("server saw TLS, database named at login", func(t *testing.T) {
		if v, err := sslVersion(ctx, db); err != nil || !strings.HasPrefix(v, "TLSv1.") {
			t.Fatalf("Ssl_version through the sidecar = %q, %v", v, err)
		}
		var name string
		if err := db.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&name); err != nil || name != "tlsdb" {
			t.Fatalf("DATABASE() = %q, %v", name, err)
		}
	})
	t.Run("multi-statement and a procedure with two result sets", func(t *testing.T) {
		if _, err := db.ExecContext(ctx, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO t VALUES (1,'a'),(2,'b');"+
			"CREATE PROCEDURE two() BEGIN SELECT COUNT(*) FROM t; SELECT v FROM t ORDER BY id; END"); err != nil {
			t.Fatal(err)
		}
		rows, err := db.QueryContext(ctx, "CALL two()")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var n int
		var vs []string
		for rows.Next() {
			_ = rows.Scan(&n)
		}
		if !rows.NextResultSet() {
			t.Fatalf("only one result set: %v", rows.Err())
		}
		for rows.Next() {
			var v string
			_ = rows.Scan(&v)
			vs = append(vs, v)
		}
		if n != 2 || strings.Join(vs, ",") != "a,b" {
			t.Fatalf("result sets %d, %v", n, vs)
		}
	})
	t.Run("prepared statements", func(t *testing.T) {
		st, err := db.PrepareContext(ctx, "SELECT v FROM t WHERE id = ?")
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var v string
		if err := st.QueryRowContext(ctx, 2).Scan(&v); err != nil || v != "b" {
			t.Fatalf("prepared: %q, %v", v, err)
		}
	})
	t.Run("LOAD DATA LOCAL INFILE", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "rows.tsv")
		if err := os.WriteFile(f, []byte("10\tx\n11\ty\n12\tz\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := db.ExecContext(ctx, "LOAD DATA LOCAL INFILE '"+f+"' INTO TABLE t")
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != 3 {
			t.Fatalf("%d rows loaded, want 3", n)
		}
	})
	t.Run("20 MiB each way, by hash", func(t *testing.T) {
		blob := make([]byte, 20<<20)
		_, _ = rand.Read(blob)
		sum := sha256.Sum256(blob)
		if _, err := db.ExecContext(ctx, "CREATE TABLE blobs (id INT PRIMARY KEY, data LONGBLOB)"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO blobs VALUES (1, ?)", blob); err != nil {
			t.Fatal(err)
		}
		var serverSum string
		if err := db.QueryRowContext(ctx, "SELECT SHA2(data, 256) FROM blobs WHERE id = 1").Scan(&serverSum); err != nil || serverSum != fmt.Sprintf("%x", sum) {
			t.Fatalf("the server holds a different value: %s, %v", serverSum, err)
		}
		var back []byte
		if err := db.QueryRowContext(ctx, "SELECT data FROM blobs WHERE id = 1").Scan(&back); err != nil || sha256.Sum256(back) != sum {
			t.Fatalf("the value came back different (%d bytes), %v", len(back), err)
		}
	})
	t.Run("compression", func(t *testing.T) {
		cdb := openVia(t, srv, via, "tlsdb", func(c *mysql.Config) { c.Apply(mysql.EnableCompression(true)) })
		var v string
		if err := cdb.QueryRowContext(ctx, "SELECT REPEAT('ab', 50000)").Scan(&v); err != nil || len(v) != 100000 {
			t.Fatalf("compressed query: %d bytes, %v", len(v), err)
		}
		var name, comp string
		if err := cdb.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Compression'").Scan(&name, &comp); err != nil || comp != "ON" {
			t.Fatalf("Compression = %q, %v", comp, err)
		}
	})
	t.Run("mariadb client: thread id of the greeting is CONNECTION_ID()", func(t *testing.T) {
		if _, err := exec.LookPath("mariadb"); err != nil {
			testenv.Unavailable(t, "mariadb client not found (install Debian's mariadb-client package)")
		}
		host, port, _ := strings.Cut(via, ":")
		cmd := exec.CommandContext(ctx, "mariadb", "--no-defaults", "-h", host, "-P", port, "-u", srv.User, "--ssl=0",
			"-D", "tlsdb", "-e", "status; SELECT CONNECTION_ID() AS id, 1 AS one;")
		cmd.Env = append(os.Environ(), "MYSQL_PWD="+srv.Password)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mariadb: %v\n%s", err, out)
		}
		var greetingID, sqlID string
		for _, l := range strings.Split(string(out), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "Connection id" {
				greetingID = strings.TrimSpace(v)
			}
			if f := strings.Fields(l); len(f) == 2 && f[1] == "1" {
				sqlID = f[0]
			}
		}
		if greetingID == "" || greetingID != sqlID {
			t.Fatalf("greeting thread id %q, CONNECTION_ID() %q:\n%s", greetingID, sqlID, out)
		}
	})
	// The greeting offers the app no TLS, so a client set to require it
	// refuses before it sends anything (docs/tls.md says what each prints).
	t.Run("a client that requires TLS to the sidecar refuses on its own", func(t *testing.T) {
		err := openVia(t, srv, via, "tlsdb", func(c *mysql.Config) { c.TLSConfig = "skip-verify" }).PingContext(ctx)
		if !errors.Is(err, mysql.ErrNoTLS) {
			t.Errorf("go-sql-driver with tls=skip-verify: %v; want %v", err, mysql.ErrNoTLS)
		}
		if _, err := exec.LookPath("mariadb"); err != nil {
			testenv.Unavailable(t, "mariadb client not found (install Debian's mariadb-client package)")
		}
		host, port, _ := strings.Cut(via, ":")
		cmd := exec.CommandContext(ctx, "mariadb", "--no-defaults", "-h", host, "-P", port, "-u", srv.User, "--ssl", "--ssl-verify-server-cert", "-e", "SELECT 1")
		cmd.Env = append(os.Environ(), "MYSQL_PWD="+srv.Password)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "SSL is required, but the server does not support it") {
			t.Errorf("mariadb --ssl-verify-server-cert: %v\n%s", err, out)
		}
	})
	t.Run("pymysql", func(t *testing.T) {
		py := "/usr/bin/python3"
		if err := exec.Command(py, "-c", "import pymysql").Run(); err != nil {
			testenv.Unavailable(t, "python3-pymysql not installed (Debian's python3-pymysql)")
		}
		host, port, _ := strings.Cut(via, ":")
		script := `import os, pymysql
c = pymysql.connect(host=os.environ["H"], port=int(os.environ["P"]), user=os.environ["U"], password=os.environ["PW"], database="tlsdb")
cur = c.cursor()
cur.execute("SELECT CONNECTION_ID(), DATABASE()")
cid, db = cur.fetchone()
cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
print(c.server_thread_id[0] == cid, db, cur.fetchone()[1])`
		cmd := exec.CommandContext(ctx, py, "-c", script)
		cmd.Env = append(os.Environ(), "H="+host, "P="+port, "U="+srv.User, "PW="+srv.Password)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "True tlsdb TLSv1.") {
			t.Fatalf("pymysql through the sidecar: %v\n%s", err, out)
		}
	})
}

// Every refusal reaches the client as a MySQL error that starts with
// "sidecar:", within seconds, and the sidecar stays up; the MariaDB C
// client and PyMySQL print it too (libmariadb takes an ERR with a client
// error code for a malformed packet and drops its text).
func TestTLSRefusals(t *testing.T) {
	t.Parallel()
	srv, files := testmysql.StartTLS(t, testmysql.TLSOptions{})
	expired, expiredFiles := testmysql.StartTLS(t, testmysql.TLSOptions{Expired: true})
	plain := testmysql.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	refused := strconv.Itoa(testkit.RefusedPort(t))
	for _, tc := range []struct {
		name string
		srv  *testmysql.Server
		env  map[string]string
		want string // "" = the login succeeds
	}{
		{"unrelated CA", srv, map[string]string{"TARGET_TLS_CA": files.OtherCA}, "is not signed by a CA in " + files.OtherCA},
		{"the default RDS bundle lacks the test CA", srv, nil, "is not signed by a CA in the embedded Amazon RDS CA bundle"},
		{"wrong name", srv, map[string]string{"TARGET_TLS_CA": files.CA, "TARGET_SERVER_NAME": "y.cluster-abc.us-east-1.rds.amazonaws.com"}, "is not valid for"},
		{"server without TLS, verify-identity", plain, map[string]string{"TARGET_TLS_CA": files.CA}, "does not offer TLS"},
		{"server without TLS, verify-ca", plain, map[string]string{"TARGET_TLS_CA": files.CA, "TARGET_TLS": "verify-ca"}, "does not offer TLS"},
		{"expired certificate", expired, map[string]string{"TARGET_TLS_CA": expiredFiles.CA}, "has expired"},
		{"dial failure", srv, map[string]string{"TARGET_TLS_CA": files.CA, "TARGET_PORT": refused}, "cannot connect to the database at 127.0.0.1:" + refused},
		{"verify-ca accepts a name not in the certificate", srv, map[string]string{"TARGET_TLS_CA": files.CA, "TARGET_TLS": "verify-ca",
			"TARGET_SERVER_NAME": "instance-1.abc.us-east-1.rds.amazonaws.com"}, ""},
		{"verify-ca with an IP and no name", srv, map[string]string{"TARGET_TLS_CA": files.CA, "TARGET_TLS": "verify-ca", "TARGET_SERVER_NAME": ""}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			via := tlsSidecar(t, tc.srv, tc.env)
			for range 2 { // the sidecar stays up and refuses the same way
				db := openVia(t, tc.srv, via, "", func(c *mysql.Config) { c.Timeout = 5 * time.Second })
				start := time.Now()
				err := db.PingContext(ctx)
				_ = db.Close()
				if tc.want == "" {
					if err != nil {
						t.Fatalf("login refused: %v", err)
					}
					continue
				}
				var me *mysql.MySQLError
				if !errorsAs(err, &me) || !strings.HasPrefix(me.Message, "sidecar: ") || !strings.Contains(me.Message, tc.want) {
					t.Fatalf("got %v; want a MySQL error starting \"sidecar: \" containing %q", err, tc.want)
				}
				if took := time.Since(start); took > 15*time.Second {
					t.Errorf("the refusal took %v", took)
				}
			}
			if tc.want == "" {
				return
			}
			for _, client := range []string{"mariadb", "pymysql"} {
				out, err := cClientLogin(ctx, t, client, tc.srv, via)
				if err == nil || !strings.Contains(out, "sidecar: ") || !strings.Contains(out, tc.want) {
					t.Errorf("%s: %v, printed %q; want the sidecar's message containing %q", client, err, out, tc.want)
				}
			}
		})
	}
}

// cClientLogin logs in to addr as srv's user with the MariaDB C client or
// PyMySQL and returns what it printed.
func cClientLogin(ctx context.Context, t *testing.T, client string, srv *testmysql.Server, addr string) (string, error) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	var cmd *exec.Cmd
	switch client {
	case "mariadb":
		if _, err := exec.LookPath("mariadb"); err != nil {
			testenv.Unavailable(t, "mariadb client not found (install Debian's mariadb-client package)")
		}
		cmd = exec.CommandContext(ctx, "mariadb", "--no-defaults", "--connect-timeout=10", "-h", host, "-P", port, "-u", srv.User, "--ssl=0", "-e", "SELECT 1")
	case "pymysql":
		if err := exec.Command("/usr/bin/python3", "-c", "import pymysql").Run(); err != nil {
			testenv.Unavailable(t, "python3-pymysql not installed (Debian's python3-pymysql)")
		}
		cmd = exec.CommandContext(ctx, "/usr/bin/python3", "-c", `import os, pymysql
pymysql.connect(host=os.environ["H"], port=int(os.environ["P"]), user=os.environ["U"], password=os.environ["MYSQL_PWD"], connect_timeout=10)`)
	default:
		t.Fatalf("no client %q", client)
	}
	cmd.Env = append(os.Environ(), "H="+host, "P="+port, "U="+srv.User, "MYSQL_PWD="+srv.Password)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func errorsAs(err error, target **mysql.MySQLError) bool {
	if err == nil {
		return false
	}
	e, ok := err.(*mysql.MySQLError)
	if ok {
		*target = e
	}
	return ok && bytes.Contains([]byte(e.Message), []byte("sidecar"))
}
