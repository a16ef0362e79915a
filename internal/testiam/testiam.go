// Package testiam is the IAM authentication fixture: a TLS MariaDB whose
// IAM users log in through auth_pam with the cleartext plugin, and whose
// PAM service (pam_script) hands each password to iamverify, which accepts only an RDS
// IAM token signed for the cluster's name, the region and the user, with
// the test's credentials, and not expired. Aurora does the same check
// with AWSAuthenticationPlugin; here no AWS is involved.
//
// It needs root (it writes a service file in /etc/pam.d) and MariaDB with
// auth_pam; without them a test is skipped, or fails in CI.
package testiam

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testmysql"
)

// Region is the fixture's signing region.
const Region = "us-east-1"

// Database is the database the IAM users may use.
const Database = "appdb"

// IAM users, and a user with a password (not set up for IAM).
const (
	User        = "iam_app"
	OtherUser   = "iam_report"
	NativeUser  = "native_app"
	pamPassword = "native-password"
)

// NativePassword is NativeUser's password.
const NativePassword = pamPassword

// VerifierConfig is iamverify's configuration file.
type VerifierConfig struct {
	Endpoint  string            `json:"endpoint"`
	Region    string            `json:"region"`
	Secrets   map[string]string `json:"secrets"`
	Log       string            `json:"log"`
	ClockSkew time.Duration     `json:"clock_skew"` // added to the verifier's clock
}

// Verdict is one of iamverify's decisions.
type Verdict struct {
	User     string `json:"user"`
	Accepted bool   `json:"accepted"`
	Reason   string `json:"reason,omitempty"`
	TokenLen int    `json:"token_len"`
	// Signature is the token's X-Amz-Signature, so tests can check that
	// no log ever shows it.
	Signature string `json:"signature,omitempty"`
}

// Creds are AWS credentials shaped like a task role's: a session token of
// about 900 characters, which makes a token over 1 KB.
type Creds struct {
	AccessKeyID, SecretAccessKey, SessionToken string
}

// NewCreds makes random credentials.
func NewCreds() Creds {
	b := make([]byte, 660)
	_, _ = rand.Read(b)
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	sk := make([]byte, 30)
	_, _ = rand.Read(sk)
	return Creds{AccessKeyID: "ASIA" + hex.EncodeToString(id), SecretAccessKey: base64.StdEncoding.EncodeToString(sk),
		SessionToken: base64.StdEncoding.EncodeToString(b)}
}

// Provider serves the credentials to the SDK.
func (c Creds) Provider() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
}

// Fixture is a running IAM-enabled server.
type Fixture struct {
	Server   *testmysql.Server
	TLS      testmysql.TLSFiles
	Creds    Creds  // the only credentials whose tokens pass
	Endpoint string // ClusterName:port: what tokens must be signed for
	log      string
}

// Start starts the fixture for the test.
func Start(t testing.TB) *Fixture {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "IAM fixture: needs root to add a PAM service in /etc/pam.d")
	}
	if _, err := os.Stat("/usr/lib/mysql/plugin/auth_pam.so"); err != nil {
		testenv.Unavailable(t, "IAM fixture: MariaDB's auth_pam plugin (/usr/lib/mysql/plugin/auth_pam.so) is missing; install mariadb-server")
	}
	if _, err := os.Stat(pamScript); err != nil {
		testenv.Unavailable(t, "IAM fixture: %s is missing; install libpam-script", pamScript)
	}
	dir := t.TempDir()
	if err := installVerifier(filepath.Join(dir, "pam_script_auth")); err != nil { // the name pam_script runs
		t.Fatal(err)
	}
	f := &Fixture{Creds: NewCreds(), log: filepath.Join(dir, "verdicts.jsonl")}
	srv, files := testmysql.StartTLS(t, testmysql.TLSOptions{Extra: []string{"--plugin-load-add=auth_pam", "--pam-use-cleartext-plugin=ON"}})
	f.Server, f.TLS = srv, files
	f.Endpoint = net.JoinHostPort(testmysql.ClusterName, strconv.Itoa(srv.Port))
	cfgPath := filepath.Join(dir, "iamverify.json") // iamverify reads it next to itself
	raw, _ := json.Marshal(VerifierConfig{Endpoint: f.Endpoint, Region: Region, Log: f.log,
		Secrets: map[string]string{f.Creds.AccessKeyID: f.Creds.SecretAccessKey}})
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	service := "sidecar-iam-" + strconv.Itoa(srv.Port)
	pamFile := filepath.Join("/etc/pam.d", service)
	pam := fmt.Sprintf("auth required %s dir=%s\naccount required pam_permit.so\n", pamScript, dir)
	if err := os.WriteFile(pamFile, []byte(pam), 0o644); err != nil {
		testenv.Unavailable(t, "IAM fixture: cannot add a PAM service: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(pamFile) })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root, err := sql.Open("mysql", "root@unix("+srv.Socket+")/")
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for _, q := range []string{
		"CREATE DATABASE " + Database,
		"CREATE USER '" + User + "'@'%' IDENTIFIED VIA pam USING '" + service + "'",
		"CREATE USER '" + OtherUser + "'@'%' IDENTIFIED VIA pam USING '" + service + "'",
		"CREATE USER '" + NativeUser + "'@'%' IDENTIFIED BY '" + pamPassword + "'",
		"GRANT ALL ON " + Database + ".* TO '" + User + "'@'%', '" + OtherUser + "'@'%', '" + NativeUser + "'@'%'",
	} {
		if _, err := root.ExecContext(ctx, q); err != nil {
			t.Fatalf("set up IAM users: %s: %v", q, err)
		}
	}
	return f
}

const pamScript = "/lib/x86_64-linux-gnu/security/pam_script.so"

// installVerifier builds iamverify and hard-links it to dst. It builds to
// one path in the temporary directory, where go build finds the binary up
// to date after the first fixture and skips the link (a third of a second
// instead of more than one); a changed source is built again.
func installVerifier(dst string) error {
	shared := filepath.Join(os.TempDir(), "testiam-iamverify", "iamverify")
	build := exec.Command("go", "build", "-o", shared, "github.com/example/sidecar/internal/testiam/cmd/iamverify")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build iamverify: %w\n%s", err, out)
	}
	if err := os.Link(shared, dst); err == nil {
		return nil
	}
	// Another file system: copy.
	raw, err := os.ReadFile(shared)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, raw, 0o755)
}

// AddDatabase creates another database the IAM users may use.
func (f *Fixture) AddDatabase(t testing.TB, name string) {
	t.Helper()
	root, err := sql.Open("mysql", "root@unix("+f.Server.Socket+")/")
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for _, q := range []string{"CREATE DATABASE " + name, "GRANT ALL ON " + name + ".* TO '" + User + "'@'%', '" + OtherUser + "'@'%'"} {
		if _, err := root.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// Token signs a token as the app would, with the given credentials.
func (f *Fixture) Token(t testing.TB, endpoint, user string, c Creds) string {
	t.Helper()
	tok, err := auth.BuildAuthToken(context.Background(), endpoint, Region, user, c.Provider())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Verdicts are iamverify's decisions so far, oldest first.
func (f *Fixture) Verdicts(t testing.TB) []Verdict {
	t.Helper()
	fh, err := os.Open(f.log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var vs []Verdict
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		var v Verdict
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("verdict log: %v", err)
		}
		vs = append(vs, v)
	}
	return vs
}
