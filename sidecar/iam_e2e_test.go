package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/example/sidecar/internal/testiam"
	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/internal/testmysql"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// iamSidecar runs the sidecar in-process in iam mode in front of f, with
// the fixture's credentials in the environment unless extra replaces them
// (a value "" deletes a variable).
func iamSidecar(t *testing.T, f *testiam.Fixture, extra map[string]string) (addr string, env map[string]string, logs *testkit.LockedBuffer) {
	t.Helper()
	env = iamEnv(t, f, map[string]string{"LOG_LEVEL": "debug",
		"AWS_ACCESS_KEY_ID": f.Creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY": f.Creds.SecretAccessKey, "AWS_SESSION_TOKEN": f.Creds.SessionToken})
	for k, v := range extra {
		if v == "" {
			delete(env, k)
		} else {
			env[k] = v
		}
	}
	_, _, logs = runAsync(t, env)
	waitHealthy(t, env, true)
	return "127.0.0.1:" + env["LISTEN_PORT"], env, logs
}

// iamEnv is an iam-mode sidecar's environment in front of f, on free
// loopback ports, plus extra.
func iamEnv(t testing.TB, f *testiam.Fixture, extra map[string]string) map[string]string {
	env := map[string]string{
		"TARGET_HOST": "127.0.0.1", "TARGET_PORT": strconv.Itoa(f.Server.Port),
		"LISTEN_ADDR": "127.0.0.1", "LISTEN_PORT": strconv.Itoa(testkit.FreePort(t)), "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t)),
		"TARGET_TLS": "verify-identity", "TARGET_SERVER_NAME": testmysql.ClusterName, "TARGET_TLS_CA": f.TLS.CA,
		"TARGET_AUTH": "iam", "AWS_REGION": testiam.Region,
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// iamDB opens a go-sql-driver pool in plaintext to addr as user, with
// password (none for IAM: the sidecar holds the credentials).
func iamDB(t *testing.T, addr, user, password string) *sql.DB {
	t.Helper()
	c := mysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr, c.DBName = user, password, "tcp", addr, testiam.Database
	c.Timeout = 10 * time.Second
	conn, err := mysql.NewConnector(c)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func whoAmI(ctx context.Context, db *sql.DB) (string, error) {
	var user, dbname, ssl string
	err := db.QueryRowContext(ctx, "SELECT CURRENT_USER(), DATABASE(), (SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME='Ssl_version')").Scan(&user, &dbname, &ssl)
	return user + " " + dbname + " " + ssl, err
}

// metric reads one unlabelled or labelled sample from /metrics.
func metric(t *testing.T, env map[string]string, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + env["ADMIN_PORT"] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in /metrics:\n%s", sample, body)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// secretsIn lists which of the secrets (plain or URL-encoded) text holds.
func secretsIn(text string, secrets map[string]string) []string {
	var found []string
	for name, s := range secrets {
		if s == "" {
			continue
		}
		if strings.Contains(text, s) || strings.Contains(text, url.QueryEscape(s)) || strings.Contains(text, url.PathEscape(s)) {
			found = append(found, name)
		}
	}
	return found
}

func TestIAMThroughSidecar(t *testing.T) {
	t.Parallel()
	f := testiam.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	via, env, logs := iamSidecar(t, f, map[string]string{"IAM_USERS": testiam.User + "," + testiam.OtherUser + "," + testiam.NativeUser})
	want := testiam.User + "@% " + testiam.Database + " TLSv1."

	t.Run("go-sql-driver", func(t *testing.T) {
		got, err := whoAmI(ctx, iamDB(t, via, testiam.User, ""))
		if err != nil || !strings.HasPrefix(got, want) {
			t.Fatalf("got %q, %v; want %q…", got, err, want)
		}
	})
	t.Run("mariadb client", func(t *testing.T) {
		out, err := exec.CommandContext(ctx, "mariadb", "--no-defaults", "-h127.0.0.1", "-P"+env["LISTEN_PORT"], "-u"+testiam.User,
			"-D"+testiam.Database, "-N", "-e", "SELECT CURRENT_USER(), DATABASE()").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != testiam.User+"@%\t"+testiam.Database {
			t.Fatalf("%v: %s", err, out)
		}
	})
	t.Run("pymysql", func(t *testing.T) {
		py := `import pymysql,sys
c = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user=sys.argv[2], database=sys.argv[3])
cur = c.cursor(); cur.execute("SELECT CURRENT_USER(), DATABASE()"); print("%s %s" % cur.fetchone())`
		out, err := exec.CommandContext(ctx, "/usr/bin/python3", "-c", py, env["LISTEN_PORT"], testiam.User, testiam.Database).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != testiam.User+"@% "+testiam.Database {
			t.Fatalf("%v: %s", err, out)
		}
	})
	t.Run("COM_CHANGE_USER to a second IAM user", func(t *testing.T) {
		r := iamRawLogin(t, via, testiam.User, nil)
		if out := r.query("SELECT CURRENT_USER()"); !strings.Contains(out, testiam.User+"@") {
			t.Fatalf("before: %q", out)
		}
		before := len(f.Verdicts(t))
		cu := mysqlwire.ChangeUser{User: testiam.OtherUser, Database: testiam.Database, Charset: 33, Plugin: mysqlwire.NativePassword}
		r.send(0, cu.Append(nil, iamRawCaps))
		if p := r.recv(); p.Seq != 1 || p.Payload[0] != mysqlwire.OK {
			t.Fatalf("COM_CHANGE_USER answered seq %d %q", p.Seq, p.Payload)
		}
		if out := r.query("SELECT CURRENT_USER(), DATABASE()"); !strings.Contains(out, testiam.OtherUser+"@") || !strings.Contains(out, testiam.Database) {
			t.Fatalf("after: %q", out)
		}
		if vs := f.Verdicts(t)[before:]; len(vs) != 1 || !vs[0].Accepted || vs[0].User != testiam.OtherUser {
			t.Fatalf("verdicts for the change: %+v", vs)
		}
		// Changing to a user outside IAM_USERS is refused and ends the
		// session, and is logged and counted as every refused login is.
		refusals := fmt.Sprintf(`sidecar_tls_refusals_total{listen_port="%s",target="%s:%s",reason="iam"}`, env["LISTEN_PORT"], env["TARGET_HOST"], env["TARGET_PORT"])
		refusedBefore := metric(t, env, refusals)
		cu.User = "intruder"
		r.send(0, cu.Append(nil, iamRawCaps))
		p, err := mysqlwire.ReadPacket(r.c, 1<<20)
		if _, msg, isErr := mysqlwire.ErrMessage(p.Payload); err != nil || !isErr || p.Seq != 1 || !strings.Contains(msg, "IAM_USERS") {
			t.Fatalf("change to intruder: %v seq %d %q", err, p.Seq, p.Payload)
		}
		var line map[string]any
		for deadline := time.Now().Add(safety); line == nil; time.Sleep(10 * time.Millisecond) {
			for _, l := range testkit.JSONLogLines(logs.String(), "TLS login refused") {
				if l["user"] == "intruder" {
					line = l
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no \"TLS login refused\" line for the refused COM_CHANGE_USER:\n%s", logs)
			}
		}
		if line["reason"] != "iam" || line["command"] != "COM_CHANGE_USER" || line["level"] != "WARN" || !strings.Contains(fmt.Sprint(line["err"]), "IAM_USERS") {
			t.Errorf("log line %v; want reason iam, command COM_CHANGE_USER, at WARN, with the error", line)
		}
		if n := metric(t, env, refusals); n != refusedBefore+1 {
			t.Errorf("%s went from %v to %v; want one more", refusals, refusedBefore, n)
		}
	})
	// A pool's COM_RESET_CONNECTION passes through: the server resets the
	// session and keeps its user, so no token is checked again.
	t.Run("COM_RESET_CONNECTION keeps the IAM user", func(t *testing.T) {
		r := iamRawLogin(t, via, testiam.User, nil)
		r.query("SET @marker = 42")
		before := len(f.Verdicts(t))
		r.send(0, []byte{0x1f}) // COM_RESET_CONNECTION
		if p := r.recv(); p.Seq != 1 || p.Payload[0] != mysqlwire.OK {
			t.Fatalf("COM_RESET_CONNECTION answered seq %d %q", p.Seq, p.Payload)
		}
		// The row's first column is length-encoded: "1" is 0x01 '1'.
		if out := r.query("SELECT @marker IS NULL, CURRENT_USER()"); !strings.Contains(out, "\x011") || !strings.Contains(out, testiam.User+"@") {
			t.Fatalf("after the reset: %q; want the variable gone and the user %s", out, testiam.User)
		}
		if vs := f.Verdicts(t)[before:]; len(vs) != 0 {
			t.Fatalf("the reset made the server check a token: %+v", vs)
		}
	})
	t.Run("user not in IAM_USERS", func(t *testing.T) {
		signed := metric(t, env, "sidecar_iam_tokens_signed_total")
		refusals := fmt.Sprintf(`sidecar_tls_refusals_total{listen_port="%s",target="%s:%s",reason="iam"}`, env["LISTEN_PORT"], env["TARGET_HOST"], env["TARGET_PORT"])
		refusedBefore := metric(t, env, refusals)
		before := len(f.Verdicts(t))
		err := iamDB(t, via, "nobody", "").PingContext(ctx)
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1045 || !strings.Contains(me.Message, "IAM_USERS") {
			t.Fatalf("got %v, want ERR 1045 naming IAM_USERS", err)
		}
		// Counted after the app is answered: wait, so the next subtest
		// starts from a settled count.
		for deadline := time.Now().Add(safety); metric(t, env, refusals) < refusedBefore+1; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the refused login was not counted in %s", refusals)
			}
		}
		if n := metric(t, env, "sidecar_iam_tokens_signed_total"); n != signed {
			t.Fatalf("a token was signed for a user not in IAM_USERS (%v → %v)", signed, n)
		}
		if len(f.Verdicts(t)) != before {
			t.Fatal("the server was asked to check a token for a user not in IAM_USERS")
		}
	})
	t.Run("unknown database: the server's error, not a refused token", func(t *testing.T) {
		refusals := fmt.Sprintf(`sidecar_tls_refusals_total{listen_port="%s",target="%s:%s",reason="iam"}`, env["LISTEN_PORT"], env["TARGET_HOST"], env["TARGET_PORT"])
		refusedBefore, serverRefused := metric(t, env, refusals), metric(t, env, `sidecar_iam_failures_total{reason="server_refused"}`)
		cfg := mysql.NewConfig()
		cfg.User, cfg.Net, cfg.Addr, cfg.DBName = testiam.User, "tcp", via, "no_such_db"
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(conn)
		defer db.Close()
		err = db.PingContext(ctx)
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1049 && me.Number != 1044 || strings.Contains(me.Message, "sidecar") {
			t.Fatalf("got %v, want the server's 1049 or 1044 about the database", err)
		}
		if n := metric(t, env, `sidecar_iam_failures_total{reason="server_refused"}`); n != serverRefused {
			t.Errorf("server_refused went from %v to %v: an unknown database is not a refused token", serverRefused, n)
		}
		if n := metric(t, env, refusals); n != refusedBefore {
			t.Errorf("%s went from %v to %v; the sidecar refused nothing", refusals, refusedBefore, n)
		}
		if strings.Contains(logs.String(), "no_such_db") || strings.Contains(logs.String(), "Unknown database") {
			t.Errorf("logged as a refused login:\n%s", logs)
		}
	})
	// The token goes in the login's first packet, before MariaDB names the
	// user's plugin: signed and counted once (docs/iam.md), then reused;
	// the server switches plugins without checking it.
	t.Run("user not set up for IAM", func(t *testing.T) {
		signed, reused := metric(t, env, "sidecar_iam_tokens_signed_total"), metric(t, env, "sidecar_iam_tokens_reused_total")
		before := len(f.Verdicts(t))
		for range 2 {
			err := iamDB(t, via, testiam.NativeUser, "").PingContext(ctx)
			if err == nil || !strings.Contains(err.Error(), "not set up for IAM") || !strings.Contains(err.Error(), "AWSAuthenticationPlugin") {
				t.Fatalf("got %v", err)
			}
		}
		if s, r := metric(t, env, "sidecar_iam_tokens_signed_total"), metric(t, env, "sidecar_iam_tokens_reused_total"); s != signed+1 || r != reused+1 {
			t.Errorf("two logins of a user not set up for IAM: signed %v → %v, reused %v → %v; want one signed, then reused", signed, s, reused, r)
		}
		if vs := f.Verdicts(t)[before:]; len(vs) != 0 {
			t.Errorf("the server checked the token of a user not set up for IAM: %+v", vs)
		}
	})

	vs := f.Verdicts(t)
	secrets := map[string]string{"secret key": f.Creds.SecretAccessKey, "session token": f.Creds.SessionToken}
	for i, v := range vs {
		secrets[fmt.Sprintf("signature %d", i)] = v.Signature
	}
	if found := secretsIn(logs.String(), secrets); len(found) > 0 {
		t.Fatalf("the debug logs show %v", found)
	}
	if !strings.Contains(logs.String(), `"credential_source":"environment (AWS_ACCESS_KEY_ID)"`) {
		t.Errorf("the start log does not name the credential source:\n%s", logs.String())
	}
	if metric(t, env, `sidecar_iam_failures_total{reason="user_not_allowed"}`) < 2 || metric(t, env, `sidecar_iam_failures_total{reason="user_not_iam"}`) < 1 {
		t.Error("failures are not counted by reason")
	}
}

// iamRawCaps are the raw client's capability flags.
const iamRawCaps = mysqlwire.ClientLongPassword | mysqlwire.ClientProtocol41 | mysqlwire.ClientSecureConnection |
	mysqlwire.ClientPluginAuth | mysqlwire.ClientTransactions | mysqlwire.ClientConnectWithDB

// iamRawLogin logs in as user through the sidecar with a raw client, with
// proof as the auth data.
func iamRawLogin(t *testing.T, addr, user string, proof func(scramble []byte) []byte) *rawClient {
	t.Helper()
	r := dialRaw(t, addr)
	g := r.recv()
	var err error
	if r.scramble, err = mysqlwire.GreetingScramble(g.Payload); err != nil {
		t.Fatal(err)
	}
	resp := mysqlwire.HandshakeResponse{Caps: iamRawCaps, MaxPacket: 1 << 24, Charset: 33, User: user,
		Database: testiam.Database, Plugin: mysqlwire.NativePassword}
	if proof != nil {
		resp.AuthData = proof(r.scramble)
	}
	r.send(1, resp.Append(nil))
	if p := r.recv(); p.Seq != 2 || p.Payload[0] != mysqlwire.OK {
		t.Fatalf("login answered seq %d %q", p.Seq, p.Payload)
	}
	return r
}

func TestIAMLocalPassword(t *testing.T) {
	t.Parallel()
	f := testiam.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const local = "local-app-secret"
	via, _, logs := iamSidecar(t, f, map[string]string{"LOCAL_PASSWORD": local, "LISTEN_ADDR": "0.0.0.0"})
	if got, err := whoAmI(ctx, iamDB(t, via, testiam.User, local)); err != nil || !strings.HasPrefix(got, testiam.User+"@%") {
		t.Fatalf("right LOCAL_PASSWORD: %q, %v", got, err)
	}
	for _, pw := range []string{"", "wrong"} {
		err := iamDB(t, via, testiam.User, pw).PingContext(ctx)
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1045 || !strings.Contains(me.Message, "LOCAL_PASSWORD") {
			t.Fatalf("password %q: got %v, want ERR 1045 naming LOCAL_PASSWORD", pw, err)
		}
	}
	// A client answering with another plugin is switched to
	// mysql_native_password over the same scramble.
	r := &rawClient{t: t}
	c, err := net.DialTimeout("tcp", via, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r.c = c
	g := r.recv()
	r.scramble, _ = mysqlwire.GreetingScramble(g.Payload)
	resp := mysqlwire.HandshakeResponse{Caps: iamRawCaps, MaxPacket: 1 << 24, Charset: 33, User: testiam.User,
		Database: testiam.Database, Plugin: "caching_sha2_password", AuthData: make([]byte, 32)}
	r.send(1, resp.Append(nil))
	sw := r.recv()
	if plugin, data, ok := mysqlwire.ParseAuthSwitch(sw.Payload); !ok || sw.Seq != 2 || plugin != mysqlwire.NativePassword || !bytes.HasPrefix(data, r.scramble) {
		t.Fatalf("want a switch to mysql_native_password at seq 2, got seq %d %q", sw.Seq, sw.Payload)
	}
	r.send(3, mysqlwire.NativeProof([]byte(local), r.scramble))
	if p := r.recv(); p.Seq != 4 || p.Payload[0] != mysqlwire.OK {
		t.Fatalf("after the switch: seq %d %q", p.Seq, p.Payload)
	}
	// COM_CHANGE_USER is held to LOCAL_PASSWORD too.
	r2 := iamRawLogin(t, via, testiam.User, func(s []byte) []byte { return mysqlwire.NativeProof([]byte(local), s) })
	cu := mysqlwire.ChangeUser{User: testiam.OtherUser, AuthData: mysqlwire.NativeProof([]byte(local), r2.scramble),
		Database: testiam.Database, Charset: 33, Plugin: mysqlwire.NativePassword}
	r2.send(0, cu.Append(nil, iamRawCaps))
	if p := r2.recv(); p.Seq != 1 || p.Payload[0] != mysqlwire.OK {
		t.Fatalf("COM_CHANGE_USER with LOCAL_PASSWORD answered seq %d %q", p.Seq, p.Payload)
	}
	// One answered with another plugin, after a command: the sidecar asks
	// for the proof once the server has answered its COM_PING (sent so
	// that the switch cannot land inside an answer), which the app never
	// sees.
	r2.query("DO 1")
	back := mysqlwire.ChangeUser{User: testiam.User, AuthData: make([]byte, 32), Database: testiam.Database, Charset: 33,
		Plugin: "caching_sha2_password"}
	r2.send(0, back.Append(nil, iamRawCaps))
	if sw := r2.recv(); sw.Seq != 1 || !bytes.HasPrefix(sw.Payload, []byte("\xfe"+mysqlwire.NativePassword+"\x00")) {
		t.Fatalf("COM_CHANGE_USER with caching_sha2_password after a command: seq %d %q; want the switch for the proof at 1", sw.Seq, sw.Payload)
	}
	r2.send(2, mysqlwire.NativeProof([]byte(local), r2.scramble))
	if p := r2.recv(); p.Seq != 3 || p.Payload[0] != mysqlwire.OK {
		t.Fatalf("after the proof of the change: seq %d %q", p.Seq, p.Payload)
	}
	cu.AuthData = mysqlwire.NativeProof([]byte("wrong"), r2.scramble)
	r2.send(0, cu.Append(nil, iamRawCaps))
	p, err := mysqlwire.ReadPacket(r2.c, 1<<20)
	if _, msg, isErr := mysqlwire.ErrMessage(p.Payload); err != nil || !isErr || !strings.Contains(msg, "LOCAL_PASSWORD") {
		t.Fatalf("COM_CHANGE_USER with a wrong password: %v %q", err, p.Payload)
	}
	if found := secretsIn(logs.String(), map[string]string{"LOCAL_PASSWORD": local}); len(found) > 0 {
		t.Fatal("the logs show LOCAL_PASSWORD")
	}
}

// A command of 16 MiB or more goes in several frames, and MariaDB's answer
// goes on from the last one's sequence id. The sidecar took only a packet
// at 1 for an answer's start, so a COM_CHANGE_USER sent once that answer
// was read was taken for pipelined: it waited, unanswered, for an answer
// that never came.
func TestIAMChangeUserAfterALargeCommand(t *testing.T) {
	t.Parallel()
	f := testiam.Start(t)
	via, _, _ := iamSidecar(t, f, nil)
	r := iamRawLogin(t, via, testiam.User, nil)
	q := []byte("\x03DO 1 /*")
	q = append(q, bytes.Repeat([]byte("x"), mysqlwire.MaxPayload)...)
	r.send(0, append(q, "*/"...))
	if p := r.recv(); p.Seq != 2 || p.Payload[0] != mysqlwire.OK {
		t.Fatalf("the large command answered seq %d %q; want OK at 2", p.Seq, p.Payload)
	}
	cu := mysqlwire.ChangeUser{User: testiam.OtherUser, Database: testiam.Database, Charset: 33, Plugin: mysqlwire.NativePassword}
	r.send(0, cu.Append(nil, iamRawCaps))
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if p := r.recv(); p.Seq != 1 || p.Payload[0] != mysqlwire.OK {
		t.Fatalf("COM_CHANGE_USER after the large command answered seq %d %q", p.Seq, p.Payload)
	}
	if out := r.query("SELECT CURRENT_USER()"); !strings.Contains(out, testiam.OtherUser+"@") {
		t.Fatalf("after the change: %q", out)
	}
}

// Two COM_CHANGE_USER sent together: the second is pipelined. The sidecar
// sent MariaDB a COM_PING with its refusal while the first was still
// pending, and MariaDB, waiting for the token after its switch, read that
// COM_PING in its place and failed the change (the app's refusal came a
// second late). The app is refused, and the server gets the token.
func TestIAMChangeUserTwiceTogether(t *testing.T) {
	t.Parallel()
	f := testiam.Start(t)
	via, env, logs := iamSidecar(t, f, nil)
	r := iamRawLogin(t, via, testiam.User, nil)
	cu := mysqlwire.ChangeUser{User: testiam.OtherUser, Database: testiam.Database, Charset: 33, Plugin: mysqlwire.NativePassword}
	one, _ := mysqlwire.AppendPacket(nil, 0, cu.Append(nil, iamRawCaps))
	if _, err := r.c.Write(append(one, one...)); err != nil {
		t.Fatal(err)
	}
	p, err := mysqlwire.ReadPacket(r.c, 1<<20)
	if _, msg, isErr := mysqlwire.ErrMessage(p.Payload); err != nil || !isErr || p.Seq != 1 || !strings.Contains(msg, "before reading the answer") {
		t.Fatalf("app read seq %d %q, %v; want the refusal of its pipelined COM_CHANGE_USER at 1", p.Seq, p.Payload, err)
	}
	if n := metric(t, env, `sidecar_iam_failures_total{reason="server_refused"}`); n != 0 {
		t.Errorf("server_refused failures: %v; want 0 (the server refused no token)", n)
	}
	checked := false
	for _, v := range f.Verdicts(t) {
		checked = checked || v.User == testiam.OtherUser && v.Accepted
	}
	if !checked {
		t.Errorf("the server never checked the first change's token: it read something else in its place\n%s", logs.String())
	}
}

// A LOAD DATA LOCAL INFILE whose request MariaDB sends at sequence id 255
// (after a multi-statement's first result) has the app's file start at
// 0. The sidecar counted that packet as a command, and refused a
// COM_CHANGE_USER sent once the LOAD DATA's OK was read as pipelined.
func TestIAMChangeUserAfterALoadDataAt255(t *testing.T) {
	t.Parallel()
	r, caps, _ := loadDataAt255(t, "load255 (a INT, b INT)", " FIELDS TERMINATED BY ','")
	r.send(0, []byte("1,2\n"))
	r.send(1, nil)
	if p := r.recv(); p.Seq != 2 || p.Payload[0] != mysqlwire.OK {
		t.Fatalf("LOAD DATA answered seq %d %q", p.Seq, p.Payload)
	}
	cu := mysqlwire.ChangeUser{User: testiam.OtherUser, Database: testiam.Database, Charset: 33, Plugin: mysqlwire.NativePassword}
	r.send(0, cu.Append(nil, caps))
	if p := r.recv(); p.Seq != 1 || p.Payload[0] != mysqlwire.OK {
		t.Fatalf("COM_CHANGE_USER after the LOAD DATA answered seq %d %q", p.Seq, p.Payload)
	}
}

// loadDataAt255 logs a raw client in through an IAM sidecar with
// LOAD DATA LOCAL and multi-statements, creates table (its name and
// columns), and has MariaDB send a LOAD DATA LOCAL request for it at
// sequence id 255, with opts. It returns the client, its flags and the
// fixture.
func loadDataAt255(t *testing.T, table, opts string) (*rawClient, uint32, *testiam.Fixture) {
	t.Helper()
	f := testiam.Start(t)
	via, _, _ := iamSidecar(t, f, nil)
	r := dialRaw(t, via)
	r.recv()
	caps := iamRawCaps | mysqlwire.ClientLocalFiles | mysqlwire.ClientMultiStatements | mysqlwire.ClientMultiResults
	login := mysqlwire.HandshakeResponse{Caps: caps, MaxPacket: 1 << 24, Charset: 33, User: testiam.User,
		Database: testiam.Database, Plugin: mysqlwire.NativePassword}
	r.send(1, login.Append(nil))
	if p := r.recv(); p.Payload[0] != mysqlwire.OK {
		t.Fatalf("login answered %q", p.Payload)
	}
	r.query("CREATE TABLE " + table)
	name, _, _ := strings.Cut(table, " ")
	// Column count, definition and EOF at 1 to 3, 250 rows, EOF at 254.
	r.send(0, []byte("\x03SELECT seq FROM seq_1_to_250; LOAD DATA LOCAL INFILE 'f' INTO TABLE "+name+opts))
	for {
		p := r.recv()
		if p.Payload[0] == 0xfb && len(p.Payload) > 1 && string(p.Payload[1:]) == "f" {
			if p.Seq != 255 {
				t.Fatalf("the file request came at %d; the test needs 255", p.Seq)
			}
			return r, caps, f
		}
	}
}

// A LOAD DATA LOCAL file after a request at 255 starts at sequence id 0,
// where a first byte 0x11 had the sidecar take the packet for a
// COM_CHANGE_USER: MariaDB loaded the sidecar's change as the file. It
// gets an empty file, and the app is told.
func TestIAMLoadDataAt255FileBeginningAsAChange(t *testing.T) {
	t.Parallel()
	r, caps, f := loadDataAt255(t, "load0x11 (a VARBINARY(1000))", "")
	cu := mysqlwire.ChangeUser{User: testiam.OtherUser, Database: testiam.Database, Charset: 33, Plugin: mysqlwire.NativePassword}
	r.send(0, cu.Append(nil, caps)) // the file's data, beginning with 0x11
	r.send(1, nil)
	p, err := mysqlwire.ReadPacket(r.c, 1<<20)
	if _, msg, isErr := mysqlwire.ErrMessage(p.Payload); err != nil || !isErr || p.Seq != 1 || !strings.Contains(msg, "cannot be told from one") {
		t.Fatalf("app read seq %d %q, %v; want the refusal of its file's first packet at 1", p.Seq, p.Payload, err)
	}
	root, err := sql.Open("mysql", "root@unix("+f.Server.Socket+")/"+testiam.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var n int
	if err := root.QueryRow("SELECT COUNT(*) FROM load0x11").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the table has %d rows (%v); want none: the server loaded something in place of the file", n, err)
	}
}

// TestIAMTokenCache: concurrent logins as one user share one signing.
func TestIAMTokenCache(t *testing.T) {
	t.Parallel()
	f := testiam.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// A hundred TLS handshakes at once on a busy CI machine can outlast
	// the default CONNECT_TIMEOUT, which bounds each; the cache is the test.
	via, env, _ := iamSidecar(t, f, map[string]string{"CONNECT_TIMEOUT": "60s"})
	const n = 100
	var wg sync.WaitGroup
	var failed atomic.Int64
	start := make(chan struct{})
	dbs := make([]*sql.DB, n)
	for i := range dbs {
		dbs[i] = iamDB(t, via, testiam.User, "")
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := dbs[i].PingContext(ctx); err != nil {
				failed.Add(1)
				t.Log(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d logins failed", failed.Load(), n)
	}
	signed, reused := metric(t, env, "sidecar_iam_tokens_signed_total"), metric(t, env, "sidecar_iam_tokens_reused_total")
	if signed != 1 || reused != n-1 {
		t.Fatalf("%d logins: %v tokens signed, %v reused; want 1 and %d", n, signed, reused, n-1)
	}
	if vs := f.Verdicts(t); len(vs) != n {
		t.Fatalf("the server checked %d tokens for %d logins", len(vs), n)
	}
}

// TestIAMContainerCredentials: the ECS task role's endpoint, with its
// authorization token; /readyz holds until credentials come.
func TestIAMContainerCredentials(t *testing.T) {
	t.Parallel()
	f := testiam.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const agentToken = "ecs-agent-authorization-token"
	var asked atomic.Int64
	var open atomic.Bool // refuse until the test has seen /readyz wait
	creds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != agentToken {
			http.Error(w, "no authorization", http.StatusUnauthorized)
			return
		}
		asked.Add(1)
		if !open.Load() {
			http.Error(w, "not yet", http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"AccessKeyId": f.Creds.AccessKeyID, "SecretAccessKey": f.Creds.SecretAccessKey,
			"Token": f.Creds.SessionToken, "Expiration": time.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339)})
	}))
	defer creds.Close()
	env := iamEnv(t, f, map[string]string{"LOG_LEVEL": "debug",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI": creds.URL + "/v2/credentials/task", "AWS_CONTAINER_AUTHORIZATION_TOKEN": agentToken})
	listen := env["LISTEN_PORT"]
	_, _, logs := runAsync(t, env)
	readyz := func() (int, string) {
		resp, err := http.Get("http://127.0.0.1:" + env["ADMIN_PORT"] + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(30 * time.Second)
	sawWaiting := false
	for {
		code, body := readyz()
		// Open once the endpoint has refused at least once: /readyz may
		// say it waits before the first request has gone out.
		if code == http.StatusServiceUnavailable && strings.Contains(body, "waiting for AWS credentials from container credentials endpoint") && asked.Load() > 0 {
			sawWaiting = true
			open.Store(true)
		}
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never became ready: %d %q", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !sawWaiting {
		t.Error("/readyz never said it was waiting for credentials while the endpoint refused")
	}
	if got, err := whoAmI(ctx, iamDB(t, "127.0.0.1:"+listen, testiam.User, "")); err != nil || !strings.HasPrefix(got, testiam.User+"@%") {
		t.Fatalf("login with task-role credentials: %q, %v", got, err)
	}
	if asked.Load() < 2 {
		t.Fatalf("the credentials endpoint was asked %d times", asked.Load())
	}
	if found := secretsIn(logs.String(), map[string]string{"secret key": f.Creds.SecretAccessKey, "session token": f.Creds.SessionToken,
		"agent token": agentToken}); len(found) > 0 {
		t.Fatalf("the logs show %v", found)
	}
}

// TestIAMCredentialsUnavailable: no credentials → the app gets an ERR
// naming the cause, and the sidecar stays up.
func TestIAMCredentialsUnavailable(t *testing.T) {
	t.Parallel()
	f := testiam.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dead := "http://127.0.0.1:" + strconv.Itoa(testkit.RefusedPort(t)) + "/creds"
	env := iamEnv(t, f, map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": dead})
	listen := env["LISTEN_PORT"]
	_, done, _ := runAsync(t, env)
	waitListening(t, "127.0.0.1:"+listen)
	for range 2 {
		err := iamDB(t, "127.0.0.1:"+listen, testiam.User, "").PingContext(ctx)
		if err == nil || !strings.Contains(err.Error(), "AWS credentials") || !strings.Contains(err.Error(), "container credentials endpoint") {
			t.Fatalf("got %v, want an ERR naming the credential source", err)
		}
	}
	select {
	case code := <-done:
		t.Fatalf("the sidecar exited (%d) when credentials were unavailable", code)
	default:
	}
	if v := metric(t, env, `sidecar_iam_failures_total{reason="endpoint_unreachable"}`); v < 2 {
		t.Fatalf("endpoint_unreachable failures: %v", v)
	}
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(safety)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never listened: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestIAMRulesExit2(t *testing.T) {
	for name, extra := range map[string]map[string]string{
		"without TLS":                    {"TARGET_TLS": "disabled", "LISTEN_ADDR": "127.0.0.1"},
		"0.0.0.0 without LOCAL_PASSWORD": {"TARGET_TLS": "verify-ca"},
	} {
		env := map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", "TARGET_AUTH": "iam", "AWS_REGION": "us-east-1"}
		for k, v := range extra {
			env[k] = v
		}
		var stderr testkit.LockedBuffer
		if code := run(context.Background(), nil, environ(env), io.Discard, &stderr); code != 2 {
			t.Errorf("%s: exit %d, want 2:\n%s", name, code, stderr.String())
		}
		if !strings.Contains(stderr.String(), "TARGET_AUTH=iam") {
			t.Errorf("%s: the error does not say why:\n%s", name, stderr.String())
		}
	}
}

// go-sql-driver's own suite logs in as the IAM user: directly with a token
// it signs as an app would, and through the sidecar with no password. The
// outcomes must be the same.
func TestGoSQLDriverSuiteThroughIAMSidecar(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: go-sql-driver's whole suite, directly and through the sidecar (about a minute); TestIAMThroughSidecar still logs in through it with go-sql-driver, the mariadb client and PyMySQL")
	}
	t.Parallel()
	f := testiam.Start(t)
	f.AddDatabase(t, testiam.Database+"_sidecar")
	suite := driverSuiteBinary(t)
	via, _, _ := iamSidecar(t, f, nil)
	token := f.Token(t, f.Endpoint, testiam.User, f.Creds) // valid 15 minutes: longer than the suite runs
	compareDriverSuites(t, suite,
		suiteRun{user: testiam.User, password: token, addr: f.Server.Addr,
			dbname: testiam.Database + "?tls=skip-verify&allowCleartextPasswords=true&connectionAttributes=suite:direct"},
		suiteRun{user: testiam.User, addr: via, dbname: testiam.Database + "_sidecar?tls=false&connectionAttributes=suite:sidecar"},
		map[string]suiteDifference{
			"TestEmptyPassword": {"fail", "pass", "an empty password is how an app logs in through the sidecar; directly, MariaDB's PAM " +
				"closes the connection (2013) where the test wants 1045"},
			"TestTLS":       tlsFromTheApp["TestTLS"],
			"TestIssue1567": tlsFromTheApp["TestIssue1567"],
		})
}

// Two commands sent together, the first answered by a result of more than
// 255 packets: its row at sequence id 1, after the wrap, was counted as the
// second answer's start, so a COM_CHANGE_USER sent once the first answer
// was read, before the second's began, went to MariaDB, and the second
// command's ERR was taken for the server's verdict on the change. It is
// refused as pipelined.
func TestIAMChangeUserBeforeTheAnswerAfterAWrappedOne(t *testing.T) {
	t.Parallel()
	f := testiam.Start(t)
	via, _, _ := iamSidecar(t, f, nil)
	r := iamRawLogin(t, via, testiam.User, nil)
	// Column count, definition and EOF at 1 to 3, 300 rows from 4 (the
	// ids wrap after 255), EOF at 48; the second's whole answer, an ERR
	// at 1, comes after its sleep.
	big, _ := mysqlwire.AppendPacket(nil, 0, []byte("\x03SELECT seq FROM seq_1_to_300"))
	slow, _ := mysqlwire.AppendPacket(nil, 0, []byte("\x03SELECT SLEEP(1), seq FROM seq_1_to_2 INTO @a, @b"))
	if _, err := r.c.Write(append(big, slow...)); err != nil {
		t.Fatal(err)
	}
	for eofs := 0; eofs < 2; {
		if p := r.recv(); p.Payload[0] == 0xfe && len(p.Payload) < 9 {
			eofs++
		}
	}
	cu := mysqlwire.ChangeUser{User: testiam.OtherUser, Database: testiam.Database, Charset: 33, Plugin: mysqlwire.NativePassword}
	r.send(0, cu.Append(nil, iamRawCaps))
	p, err := mysqlwire.ReadPacket(r.c, 1<<20)
	if _, msg, isErr := mysqlwire.ErrMessage(p.Payload); err != nil || !isErr || p.Seq != 1 || !strings.Contains(msg, "before reading the answer") {
		t.Fatalf("app read seq %d %q, %v; want the refusal of its pipelined COM_CHANGE_USER at 1", p.Seq, p.Payload, err)
	}
}
