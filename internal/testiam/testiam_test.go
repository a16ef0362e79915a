package testiam

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/example/sidecar/internal/testmysql"
)

func TestVerify(t *testing.T) {
	c := NewCreds()
	if n := len(c.SessionToken); n < 850 {
		t.Fatalf("session token is %d characters; task roles' are about 900", n)
	}
	f := &Fixture{}
	endpoint := "db.example.internal:3306"
	good := f.Token(t, endpoint, "app", c)
	if len(good) <= 1024 {
		t.Fatalf("token is %d bytes; want over 1 KB", len(good))
	}
	want := Want{Endpoint: endpoint, Region: Region, User: "app", Secrets: map[string]string{c.AccessKeyID: c.SecretAccessKey}}
	now := time.Now()
	other := NewCreds()
	forged := NewCreds()
	forged.AccessKeyID = c.AccessKeyID // right key id, wrong secret
	for _, tc := range []struct {
		name  string
		token string
		now   time.Time
		want  string // "" = accepted
	}{
		{"valid", good, now, ""},
		{"expired", good, now.Add(15*time.Minute + time.Second), "expired"},
		{"wrong secret", f.Token(t, endpoint, "app", forged), now, "signature does not match"},
		{"unknown key", f.Token(t, endpoint, "app", other), now, "unknown access key"},
		{"other user", f.Token(t, endpoint, "report", c), now, `signed for user "report"`},
		{"ip endpoint", f.Token(t, "127.0.0.1:3306", "app", c), now, "signed for endpoint"},
		{"altered", strings.Replace(good, "Action=connect", "Action=connect&X=1", 1), now, "signature does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.token, want, tc.now)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestFixture proves the fixture before anything relies on it: a valid
// token logs in directly, and bad tokens are refused by the verifier, not
// by something else.
func TestFixture(t *testing.T) {
	f := Start(t)
	cli, err := exec.LookPath("mariadb")
	if err != nil {
		t.Fatalf("mariadb client: %v", err)
	}
	client := func(user, password string, extra ...string) (string, error) {
		args := append([]string{"--no-defaults", "-h127.0.0.1", "-P" + strconv.Itoa(f.Server.Port), "-u" + user,
			"--ssl", "--ssl-ca=" + f.TLS.CA, "-D" + Database, "-N", "-e", "SELECT CURRENT_USER(), DATABASE()"}, extra...)
		cmd := exec.Command(cli, args...)
		cmd.Env = append(os.Environ(), "MYSQL_PWD="+password)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	good := f.Token(t, f.Endpoint, User, f.Creds)
	for _, extra := range [][]string{nil, {"--default-auth=mysql_clear_password"}} {
		out, err := client(User, good, extra...)
		if err != nil || out != User+"@%\t"+Database {
			t.Fatalf("valid token %v: %v: %s; verdicts %+v", extra, err, out, f.Verdicts(t))
		}
	}
	if n := len(f.Verdicts(t)); n != 2 {
		t.Fatalf("verifier decided %d times for 2 logins", n)
	}
	forged := NewCreds()
	forged.AccessKeyID = f.Creds.AccessKeyID
	host, _, _ := net.SplitHostPort(f.Endpoint)
	for _, tc := range []struct{ name, token, reason string }{
		{"wrong secret", f.Token(t, f.Endpoint, User, forged), "signature does not match"},
		{"signed for 127.0.0.1", f.Token(t, strings.Replace(f.Endpoint, host, "127.0.0.1", 1), User, f.Creds), "signed for endpoint"},
		{"another user", f.Token(t, f.Endpoint, OtherUser, f.Creds), `signed for user "` + OtherUser + `"`},
	} {
		before := len(f.Verdicts(t))
		if out, err := client(User, tc.token); err == nil {
			t.Fatalf("%s: logged in: %s", tc.name, out)
		}
		vs := f.Verdicts(t)
		if len(vs) != before+1 || vs[len(vs)-1].Accepted || !strings.Contains(vs[len(vs)-1].Reason, tc.reason) {
			t.Fatalf("%s: verdicts %+v, want one refusal containing %q", tc.name, vs[before:], tc.reason)
		}
	}

	// go-sql-driver, with the token as its cleartext password.
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(f.TLS.CA)
	pool.AppendCertsFromPEM(pem)
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = User, good, "tcp", f.Server.Addr, Database
	cfg.AllowCleartextPasswords = true
	cfg.TLS = &tls.Config{RootCAs: pool, ServerName: testmysql.ClusterName}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	var who string
	if err := db.QueryRowContext(context.Background(), "SELECT CURRENT_USER()").Scan(&who); err != nil || who != User+"@%" {
		t.Fatalf("go-sql-driver with a token: %q, %v", who, err)
	}
}
