package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/config"
)

// safety bounds every wait; reaching it means a hang.
const safety = 30 * time.Second

// jsonLines decodes stderr's JSON log lines, failing on any other line.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("stderr line is not JSON: %q", l)
			continue
		}
		out = append(out, m)
	}
	return out
}

func TestBadConfigurationExits2WithEveryProblem(t *testing.T) {
	var stdout, stderr testkit.LockedBuffer
	code := run(context.Background(), nil, environ(map[string]string{
		"TARGET_PORT": "mysql", "LOG_LEVEL": "loud", "MAX_CONNECTIONS": "-5",
	}), &stdout, &stderr)
	if code != 2 {
		t.Fatalf("exit code %d, want 2; stderr:\n%s", code, stderr.String())
	}
	var msgs []string
	for _, l := range jsonLines(t, stderr.String()) {
		if l["level"] != "ERROR" {
			t.Errorf("line %v not at ERROR", l)
		}
		msgs = append(msgs, l["msg"].(string))
	}
	for _, want := range []string{`LOG_LEVEL="loud"`, `MAX_CONNECTIONS="-5"`, `TARGET_HOST is not set`, `TARGET_PORT="mysql"`} {
		found := false
		for _, m := range msgs {
			found = found || strings.Contains(m, want)
		}
		if !found {
			t.Errorf("no line mentions %s; got %q", want, msgs)
		}
	}
}

// Each problem is one line whose fields say the variable, its value (when
// set) and what is accepted, so CloudWatch Logs Insights can group by them.
func TestBadConfigurationLinesHaveFields(t *testing.T) {
	var stderr testkit.LockedBuffer
	code := run(context.Background(), nil, environ(map[string]string{
		"TARGET_PORT": "mysql", "KEEPALIVE": "10h",
	}), io.Discard, &stderr)
	if code != 2 {
		t.Fatalf("exit code %d, want 2; stderr:\n%s", code, stderr.String())
	}
	want := map[string]map[string]any{
		"TARGET_HOST": {"accepted": "a hostname or IP address (required when MODE=proxy, unless FORWARDS is set)"},
		"TARGET_PORT": {"value": "mysql", "accepted": "a port number from 1 to 65535"},
		"KEEPALIVE":   {"value": "10h"},
	}
	for _, l := range jsonLines(t, stderr.String()) {
		v, ok := l["variable"].(string)
		if !ok {
			continue
		}
		w, ok := want[v]
		if !ok {
			t.Errorf("unexpected problem line %v", l)
			continue
		}
		delete(want, v)
		if _, ok := l["accepted"].(string); !ok {
			t.Errorf("line %v has no accepted field", l)
		}
		if _, hasValue := l["value"]; hasValue != (w["value"] != nil) {
			t.Errorf("line %v: value field present = %v, want %v", l, hasValue, w["value"] != nil)
		}
		for k, wv := range w {
			if l[k] != wv {
				t.Errorf("line %v: %s = %v, want %v", l, k, l[k], wv)
			}
		}
		if msg, _ := l["msg"].(string); !strings.Contains(msg, v) {
			t.Errorf("line %v: msg does not name %s", l, v)
		}
	}
	for v := range want {
		t.Errorf("no problem line with variable=%s", v)
	}
}

// A variable one or two edits from one of ours gets a warning naming the
// likely intended one; the sidecar still starts.
func TestTypoWarnings(t *testing.T) {
	up := testkit.Listen(t)
	env := map[string]string{
		"TARGET_HOST": "127.0.0.1", "TARGET_PORT": strconv.Itoa(up.Addr().(*net.TCPAddr).Port),
		"LISTEN_ADDR": "127.0.0.1", "LISTEN_PORT": strconv.Itoa(testkit.FreePort(t)), "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t)),
		"LISTN_PORT": "13306", "TARGET_HOTS": "db.example", "HOME": "/root",
	}
	cancel, done, stderr := runAsync(t, env)
	waitHealthy(t, env, true)
	stopClean(t, cancel, done, stderr)
	got := map[string]string{}
	for _, l := range jsonLines(t, stderr.String()) {
		if l["level"] == "WARN" && l["did_you_mean"] != nil {
			got[l["variable"].(string)] = l["did_you_mean"].(string)
			if strings.Contains(l["msg"].(string), "db.example") {
				t.Errorf("warning shows the value: %v", l)
			}
		}
	}
	if want := map[string]string{"LISTN_PORT": "LISTEN_PORT", "TARGET_HOTS": "TARGET_HOST"}; !reflect.DeepEqual(got, want) {
		t.Errorf("warnings %v, want %v", got, want)
	}
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		out, errst string
	}{
		{[]string{"version"}, 0, "sidecar dev (commit unknown", ""},
		{[]string{"--version"}, 0, "sidecar dev (commit unknown", ""},
		{[]string{"-version"}, 0, "sidecar dev (commit unknown", ""},
		{[]string{"help"}, 0, "usage: sidecar", ""},
		{[]string{"-h"}, 0, "usage: sidecar", ""},
		{[]string{"--help"}, 0, "usage: sidecar", ""},
		{[]string{"-v"}, 2, "", `unknown command "-v"`},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"version", "extra"}, 2, "", "unexpected arguments"},
		{[]string{"healthcheck"}, 2, "", `ADMIN_PORT="abc" is invalid`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr testkit.LockedBuffer
			code := run(context.Background(), tc.args, environ(map[string]string{"ADMIN_PORT": "abc"}), &stdout, &stderr)
			if code != tc.code || !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.errst) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, stdout.String(), stderr.String(), tc.code, tc.out, tc.errst)
			}
		})
	}
}

// Configuration passed as arguments (docker run IMAGE TARGET_HOST=db
// LOCAL_PASSWORD=…, or an ECS "command") is refused without printing a
// value: stderr goes to CloudWatch, and a value may be a password. The
// message says where configuration goes and names every such argument,
// the first (taken for the command) too.
func TestCommandLineConfigurationAsArguments(t *testing.T) {
	const secret = "hunter2-secret"
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"LOCAL_PASSWORD=" + secret}, []string{"LOCAL_PASSWORD=xxxxx", "environment"}},
		{[]string{"TARGET_HOST=db", "LOCAL_PASSWORD=" + secret}, []string{"TARGET_HOST=xxxxx", "LOCAL_PASSWORD=xxxxx", "environment"}},
		{[]string{"healthcheck", "LOCAL_PASSWORD=" + secret}, []string{"LOCAL_PASSWORD=xxxxx", "environment"}},
		{[]string{"--local-password=" + secret}, []string{"--local-password=xxxxx", "environment"}},
		{[]string{"mysql://app:" + secret + "@db:3306"}, []string{"mysql://xxxxx@db:3306", "accepted: healthcheck, version, help"}},
		{[]string{"version", "app:" + secret + "@db"}, []string{"unexpected arguments", "xxxxx@db", "accepted:"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr testkit.LockedBuffer
			if code := run(context.Background(), tc.args, nil, &stdout, &stderr); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			out := stdout.String() + stderr.String()
			if strings.Contains(out, secret) {
				t.Errorf("the secret is printed: %q", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not say %q", stderr.String(), w)
				}
			}
		})
	}
}

// stopClean cancels a run started by runAsync and fails the test unless
// it exits 0 within safety.
func stopClean(t *testing.T, cancel context.CancelFunc, done <-chan int, stderr *testkit.LockedBuffer) {
	t.Helper()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d after cancel, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(safety):
		t.Fatalf("no exit within %v after cancel", safety)
	}
}

// runAsync runs the program in-process until the returned cancel (SIGTERM).
func runAsync(t *testing.T, env map[string]string) (cancel context.CancelFunc, done <-chan int, stderr *testkit.LockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr = &testkit.LockedBuffer{}
	ch, finished := make(chan int, 1), make(chan struct{})
	go runInto(ctx, env, stderr, ch, finished)
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(safety):
			t.Errorf("run did not return within %v", safety)
		}
	})
	return cancel, ch, stderr
}

func runInto(ctx context.Context, env map[string]string, stderr io.Writer, done chan<- int, finished chan<- struct{}) {
	done <- run(ctx, nil, environ(env), io.Discard, stderr)
	close(finished)
}

// healthy runs `sidecar healthcheck` in-process.
func healthy(env map[string]string) bool {
	return run(context.Background(), []string{"healthcheck"}, environ(env), io.Discard, io.Discard) == 0
}

func waitHealthy(t *testing.T, env map[string]string, want bool) {
	t.Helper()
	deadline := time.Now().Add(safety)
	for healthy(env) != want {
		if time.Now().After(deadline) {
			t.Fatalf("healthcheck never became %v", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestProxyModeInProcess(t *testing.T) {
	env, listen := echoForward(t)
	env["LOG_LEVEL"] = "debug"
	cancel, done, stderr := runAsync(t, env)
	waitHealthy(t, env, true)

	c, err := net.Dial("tcp", "127.0.0.1:"+listen)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(safety))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo through the sidecar: %q, %v", got, err)
	}
	_ = c.Close()

	stopClean(t, cancel, done, stderr)
	var sawStart, sawConn bool
	for _, l := range jsonLines(t, stderr.String()) {
		switch l["msg"] {
		case "starting":
			sawStart = l["mode"] == "proxy" && l["max_connections"] == float64(1024)
		case "connection closed":
			sawConn = l["level"] == "DEBUG" && l["to_upstream"] == float64(4) && l["to_client"] == float64(4)
		}
	}
	if !sawStart || !sawConn {
		t.Errorf("want a startup line with the effective config and a debug line per connection; stderr:\n%s", stderr.String())
	}
}

// lookupMap looks variables up in env, as lookupIn looks them up in the
// process's environment.
func lookupMap(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// echoForward starts an echo server standing in for the database and
// returns the environment of a sidecar forwarding 127.0.0.1:listen, a free
// port, to it, with a free admin port.
func echoForward(t *testing.T) (env map[string]string, listen string) {
	t.Helper()
	up := testkit.Listen(t)
	go echoServer(up)
	listen = strconv.Itoa(testkit.FreePort(t))
	return map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": strconv.Itoa(up.Addr().(*net.TCPAddr).Port),
		"LISTEN_ADDR": "127.0.0.1", "LISTEN_PORT": listen, "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t))}, listen
}

func echoServer(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go echoConn(c)
	}
}

func echoConn(c net.Conn) {
	defer c.Close()
	_, _ = io.Copy(c, c)
}

// Port in use: exit 1, the reason named, and nothing left listening (the
// admin port in particular must not answer healthy).
func TestPortInUse(t *testing.T) {
	busy := testkit.Listen(t)
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	// IAM mode with static keys: the credentials are there at once, yet
	// a process that did not start must not log that it is ready.
	iam := map[string]string{"TARGET_TLS": "verify-identity", "TARGET_SERVER_NAME": "db.example.internal", "TARGET_AUTH": "iam",
		"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "fake", "AWS_EC2_METADATA_DISABLED": "true"}
	// An address this host does not have (TEST-NET-3): binding it fails
	// at once, and sends nothing.
	foreign := map[string]string{"LISTEN_ADDR": "203.0.113.9"}
	for _, tc := range []struct {
		name, listen, admin string
		extra               map[string]string
		variable            string // named in the line, the one to change
		why                 string
	}{
		{"listen port", busyPort, strconv.Itoa(testkit.FreePort(t)), nil, "LISTEN_PORT", "address already in use"},
		{"admin port", strconv.Itoa(testkit.FreePort(t)), busyPort, nil, "ADMIN_PORT", "address already in use"},
		{"admin port, IAM", strconv.Itoa(testkit.FreePort(t)), busyPort, iam, "ADMIN_PORT", "address already in use"},
		{"listen address not on this host", strconv.Itoa(testkit.FreePort(t)), strconv.Itoa(testkit.FreePort(t)), foreign, "LISTEN_ADDR", "cannot assign requested address"},
		{"admin port, sleep mode", strconv.Itoa(testkit.FreePort(t)), busyPort, map[string]string{"MODE": "sleep"}, "ADMIN_PORT", "address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr testkit.LockedBuffer
			env := map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": "1", "LISTEN_ADDR": "127.0.0.1",
				"LISTEN_PORT": tc.listen, "ADMIN_PORT": tc.admin}
			maps.Copy(env, tc.extra)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			code := run(ctx, nil, environ(env), io.Discard, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), tc.why) {
				t.Fatalf("exit %d, stderr:\n%s\nwant 1 and %q", code, stderr.String(), tc.why)
			}
			if lines := testkit.JSONLogLines(stderr.String(), "not started"); len(lines) != 1 || lines[0]["variable"] != tc.variable {
				t.Fatalf("want one \"not started\" line naming %s:\n%s", tc.variable, stderr.String())
			}
			time.Sleep(100 * time.Millisecond) // for a line logged after run returned
			if strings.Contains(stderr.String(), "ready for IAM logins") {
				t.Fatalf("a sidecar that did not start logged that it is ready:\n%s", stderr.String())
			}
			if tc.name == "admin port" {
				// The forward listener opened first must have been closed again.
				ln, err := net.Listen("tcp", "127.0.0.1:"+tc.listen)
				if err != nil {
					t.Fatalf("listen port left open: %v", err)
				}
				_ = ln.Close()
			}
		})
	}
}

// ADMIN_ADDR=0.0.0.0 or :: binds every address; the healthcheck reaches
// it on loopback.
func TestAdminAddrWildcardHealthcheck(t *testing.T) {
	for _, addr := range []string{"0.0.0.0", "::"} {
		t.Run(addr, func(t *testing.T) {
			env := map[string]string{"MODE": "sleep", "ADMIN_ADDR": addr, "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t))}
			cancel, done, stderr := runAsync(t, env)
			waitHealthy(t, env, true)
			stopClean(t, cancel, done, stderr)
			if !strings.Contains(stderr.String(), `"admin_addr":"`+addr+`"`) {
				t.Errorf("starting line does not say admin_addr %s:\n%s", addr, stderr.String())
			}
		})
	}
	var stderr strings.Builder
	if code := run(context.Background(), []string{"healthcheck"}, environ(map[string]string{"ADMIN_ADDR": "localhost"}), io.Discard, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), `ADMIN_ADDR="localhost" is invalid; accepted: an IP address`) {
		t.Errorf("healthcheck with ADMIN_ADDR=localhost: exit %d, %q; want 2 naming the variable", code, stderr.String())
	}
}

// Another process on the admin port answering 200 to /readyz does not make
// the healthcheck pass.
func TestHealthcheckRefusesAForeignServer(t *testing.T) {
	ln := testkit.Listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ready\n")) }),
		ReadHeaderTimeout: safety}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	var stderr strings.Builder
	env := map[string]string{"ADMIN_PORT": strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)}
	if code := run(context.Background(), []string{"healthcheck"}, environ(env), io.Discard, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "not as the sidecar") {
		t.Errorf("healthcheck against a foreign server: exit %d, %q; want 1 saying it is not the sidecar", code, stderr.String())
	}
}

func TestSleepModeInProcess(t *testing.T) {
	env := map[string]string{"MODE": "sleep", "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t)), "TARGET_PORT": "ignored-in-sleep"}
	cancel, done, stderr := runAsync(t, env)
	waitHealthy(t, env, true)
	stopClean(t, cancel, done, stderr)
}

// The listen address is written the same way in the "starting" and the
// "forwarding" lines: LISTEN_ADDR=0.0.0.0 binds IPv4 only, and both say
// 0.0.0.0:PORT (a dual-stack listener would say [::]:PORT in one of them).
func TestListenAddressSameInEveryLine(t *testing.T) {
	up := testkit.Listen(t)
	for _, addr := range []string{"0.0.0.0", "::", "127.0.0.1"} {
		t.Run(addr, func(t *testing.T) {
			listen := testkit.FreePort(t)
			env := map[string]string{
				"TARGET_HOST": "127.0.0.1", "TARGET_PORT": strconv.Itoa(up.Addr().(*net.TCPAddr).Port),
				"LISTEN_PORT": strconv.Itoa(listen), "LISTEN_ADDR": addr, "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t)),
			}
			cancel, done, stderr := runAsync(t, env)
			waitHealthy(t, env, true)
			stopClean(t, cancel, done, stderr)
			want := net.JoinHostPort(addr, strconv.Itoa(listen)) + "="
			var seen []string
			for _, l := range jsonLines(t, stderr.String()) {
				var list []any
				switch l["msg"] {
				case "starting":
					list, _ = l["forwards"].([]any)
				case "forwarding":
					list, _ = l["listeners"].([]any)
				default:
					continue
				}
				if len(list) != 1 {
					t.Fatalf("%s line lists %v", l["msg"], list)
				}
				seen = append(seen, list[0].(string))
				if s := list[0].(string); !strings.HasPrefix(s, want) {
					t.Errorf("%s line says %s, want %s…", l["msg"], s, want)
				}
			}
			if len(seen) != 2 {
				t.Errorf("found %d of the starting and forwarding lines: %v", len(seen), seen)
			}
		})
	}
}

// A port the ECS Service Connect proxy also binds gets a warning at
// startup (never an error: without Service Connect it is harmless).
func TestServiceConnectPortWarning(t *testing.T) {
	up := testkit.Listen(t)
	upPort := strconv.Itoa(up.Addr().(*net.TCPAddr).Port)
	for _, tc := range []struct {
		name, variable, what string
		port                 int
		env                  map[string]string
	}{
		{"ADMIN_PORT", "ADMIN_PORT", "Envoy admin", 9901, map[string]string{
			"TARGET_HOST": "127.0.0.1", "TARGET_PORT": upPort,
			"LISTEN_PORT": strconv.Itoa(testkit.FreePort(t)), "ADMIN_PORT": "9901"}},
		// One entry in FORWARDS: the warning names FORWARDS, the variable
		// the operator set, not LISTEN_PORT.
		{"FORWARDS with one entry", "FORWARDS", "agent management", 9902, map[string]string{
			"FORWARDS": "9902=127.0.0.1:" + upPort, "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(tc.port)); err != nil {
				testenv.Unavailable(t, "port %d is busy here: %v", tc.port, err)
			} else {
				_ = ln.Close()
			}
			env := tc.env
			env["LISTEN_ADDR"] = "127.0.0.1"
			cancel, done, stderr := runAsync(t, env)
			waitHealthy(t, env, true)
			stopClean(t, cancel, done, stderr)
			var warned []map[string]any
			for _, l := range jsonLines(t, stderr.String()) {
				if l["level"] == "WARN" && strings.Contains(l["msg"].(string), "Service Connect") {
					warned = append(warned, l)
				}
			}
			if len(warned) != 1 || warned[0]["variable"] != tc.variable || warned[0]["port"] != float64(tc.port) ||
				!strings.Contains(warned[0]["msg"].(string), tc.what) || !strings.Contains(warned[0]["msg"].(string), "("+tc.variable+")") {
				t.Errorf("Service Connect warnings %v, want one for %s %d naming the %s interface", warned, tc.variable, tc.port, tc.what)
			}
		})
	}
}

// With the sidecar making the TLS, listeners open to other hosts get a
// warning (their hop is plaintext on the network); loopback, or no TLS,
// gets none.
func TestPlaintextOnTheNetworkWarning(t *testing.T) {
	up := testkit.Listen(t)
	upPort := strconv.Itoa(up.Addr().(*net.TCPAddr).Port)
	for _, tc := range []struct {
		listen, tls string
		warn        bool
	}{
		{"0.0.0.0", "verify-ca", true},
		{"127.0.0.1", "verify-ca", false},
		{"0.0.0.0", "disabled", false},
	} {
		t.Run(tc.listen+" "+tc.tls, func(t *testing.T) {
			env := map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": upPort, "TARGET_TLS": tc.tls,
				"LISTEN_ADDR": tc.listen, "LISTEN_PORT": strconv.Itoa(testkit.FreePort(t)), "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t))}
			warned := startupWarnings(t, env, "LISTEN_ADDR")
			switch {
			case !tc.warn && len(warned) != 0:
				t.Errorf("warned %v, want no warning", warned)
			case tc.warn && (len(warned) != 1 || warned[0]["value"] != tc.listen ||
				!strings.Contains(warned[0]["msg"].(string), "TARGET_TLS="+tc.tls) || !strings.Contains(warned[0]["msg"].(string), "LISTEN_ADDR=127.0.0.1")):
				t.Errorf("warnings %v, want one naming LISTEN_ADDR=%s, TARGET_TLS=%s and the fix", warned, tc.listen, tc.tls)
			}
		})
	}
}

// IAM tokens over verify-ca get a warning: any server with a certificate
// from the trusted CAs would be sent them. verify-identity, or verify-ca
// without IAM, gets none.
func TestTokensWithoutNameWarning(t *testing.T) {
	up := testkit.Listen(t)
	upPort := strconv.Itoa(up.Addr().(*net.TCPAddr).Port)
	for _, tc := range []struct {
		tls, auth string
		warn      bool
	}{
		{"verify-ca", "iam", true},
		{"verify-identity", "iam", false},
		{"verify-ca", "passthrough", false},
	} {
		t.Run(tc.tls+" "+tc.auth, func(t *testing.T) {
			env := map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": upPort, "TARGET_TLS": tc.tls, "TARGET_AUTH": tc.auth,
				"TARGET_SERVER_NAME": "db.example.internal", "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIDTEST",
				"AWS_SECRET_ACCESS_KEY": "fake", "AWS_EC2_METADATA_DISABLED": "true",
				"LISTEN_ADDR": "127.0.0.1", "LISTEN_PORT": strconv.Itoa(testkit.FreePort(t)), "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t))}
			warned := startupWarnings(t, env, "TARGET_TLS")
			switch {
			case !tc.warn && len(warned) != 0:
				t.Errorf("warned %v, want no warning", warned)
			case tc.warn && (len(warned) != 1 || warned[0]["value"] != tc.tls || !strings.Contains(warned[0]["msg"].(string), "set TARGET_TLS=verify-identity")):
				t.Errorf("warnings %v, want one naming TARGET_TLS=verify-ca and the fix", warned)
			}
		})
	}
}

// A LOCAL_PASSWORD with a blank at an end (a secret file's newline) is
// used as written, and a warning says so, without the password: an app
// whose password lacks the newline is refused with no other clue.
func TestLocalPasswordSpaceWarning(t *testing.T) {
	up := testkit.Listen(t)
	upPort := strconv.Itoa(up.Addr().(*net.TCPAddr).Port)
	const password = "s3cret-pw"
	for _, tc := range []struct {
		name, password, want string // want: in the warning; "" = none
	}{
		{"a trailing newline", password + "\n", "LOCAL_PASSWORD ends in a newline"},
		{"a leading space", " " + password, "LOCAL_PASSWORD starts with a space"},
		{"none", password, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": upPort, "TARGET_TLS": "verify-identity",
				"TARGET_SERVER_NAME": "db.example.internal", "TARGET_AUTH": "iam", "LOCAL_PASSWORD": tc.password, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIDTEST",
				"AWS_SECRET_ACCESS_KEY": "fake", "AWS_EC2_METADATA_DISABLED": "true",
				"LISTEN_ADDR": "127.0.0.1", "LISTEN_PORT": strconv.Itoa(testkit.FreePort(t)), "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t))}
			warned := startupWarnings(t, env, "LOCAL_PASSWORD")
			switch {
			case tc.want == "" && len(warned) != 0:
				t.Errorf("warned %v, want no warning", warned)
			case tc.want != "" && (len(warned) != 1 || !strings.Contains(warned[0]["msg"].(string), tc.want)):
				t.Errorf("warnings %v, want one saying %q", warned, tc.want)
			}
			for _, w := range warned {
				if line, _ := json.Marshal(w); strings.Contains(string(line), password) {
					t.Errorf("the warning shows the password: %v", w)
				}
			}
		})
	}
}

// A block of TARGET_TLS_CA that cannot be used is named in a warning; the
// file's certificates are trusted and the sidecar starts.
func TestTLSCASkippedWarning(t *testing.T) {
	up := testkit.Listen(t)
	ca := testkit.NewCA(t, "test CA")
	file := filepath.Join(t.TempDir(), "ca.pem")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
	if err := os.WriteFile(file, append(caPEM, "-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": strconv.Itoa(up.Addr().(*net.TCPAddr).Port), "TARGET_TLS": "verify-ca",
		"TARGET_TLS_CA": file, "LISTEN_ADDR": "127.0.0.1", "LISTEN_PORT": strconv.Itoa(testkit.FreePort(t)), "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t))}
	warned := startupWarnings(t, env, "TARGET_TLS_CA")
	if len(warned) != 1 || warned[0]["value"] != file || !strings.Contains(warned[0]["msg"].(string), `PEM block 2 is "X509 CRL"`) {
		t.Errorf("warnings %v, want one naming the CRL block", warned)
	}
}

// startupWarnings runs the sidecar with env until it is healthy, stops it,
// and returns its WARN lines about variable.
func startupWarnings(t *testing.T, env map[string]string, variable string) []map[string]any {
	t.Helper()
	cancel, done, stderr := runAsync(t, env)
	waitHealthy(t, env, true)
	stopClean(t, cancel, done, stderr)
	var warned []map[string]any
	for _, l := range jsonLines(t, stderr.String()) {
		if l["level"] == "WARN" && l["variable"] == variable {
			warned = append(warned, l)
		}
	}
	return warned
}

func TestDrainPastFargateStopWarning(t *testing.T) {
	up := testkit.Listen(t)
	upPort := strconv.Itoa(up.Addr().(*net.TCPAddr).Port)
	limit := config.FargateMaxStopTimeout - config.StopMargin
	for _, tc := range []struct {
		execEnv, mode string
		drain         time.Duration
		warn          bool
	}{
		{"AWS_ECS_FARGATE", "proxy", limit + time.Second, true},
		{"AWS_ECS_FARGATE", "proxy", limit, false},
		{"AWS_ECS_EC2", "proxy", limit + time.Second, false},     // EC2 allows a longer stopTimeout
		{"AWS_ECS_FARGATE", "sleep", limit + time.Second, false}, // nothing to drain
	} {
		t.Run(tc.execEnv+" "+tc.mode+" "+tc.drain.String(), func(t *testing.T) {
			env := map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": upPort, "DRAIN_TIMEOUT": tc.drain.String(),
				"AWS_EXECUTION_ENV": tc.execEnv, "MODE": tc.mode, "LISTEN_ADDR": "127.0.0.1",
				"LISTEN_PORT": strconv.Itoa(testkit.FreePort(t)), "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t))}
			warned := startupWarnings(t, env, "DRAIN_TIMEOUT")
			switch {
			case !tc.warn && len(warned) != 0:
				t.Errorf("warned %v, want no warning", warned)
			case tc.warn && (len(warned) != 1 || warned[0]["value"] != tc.drain.String() ||
				!strings.Contains(warned[0]["msg"].(string), "set DRAIN_TIMEOUT to "+limit.String()+" or less")):
				t.Errorf("warnings %v, want one naming DRAIN_TIMEOUT=%s and the most Fargate allows, %s", warned, tc.drain, limit)
			}
		})
	}
}

// An open-files limit too low for MAX_CONNECTIONS is warned of at start,
// with the connections it holds and the limit to set; sleep mode holds no
// connections.
func TestOpenFilesLimitWarning(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     config.Mode
		maxConns int
		limit    uint64
		warn     string // in the line; "" = no line
		tls      config.TLSMode
	}{
		{"enough", config.ModeProxy, 1024, 6*1024 + fdsBase, "", ""},
		{"one short", config.ModeProxy, 1024, 6*1024 + fdsBase - 1, "holds about 1023 connections, fewer than MAX_CONNECTIONS=1024", ""},
		{"docker's old default", config.ModeProxy, 1024, 1024, "the open-files limit (1024) holds about 168 connections", ""},
		{"below the base", config.ModeProxy, 10, 16, "holds about 0 connections", ""},
		{"asks for", config.ModeProxy, 5000, 4096, "raise ulimits nofile in the task definition to 30016 or more", ""},
		{"sleep", config.ModeSleep, 1024, 64, "", ""},
		// TLS sessions take no splice pipes: two descriptors a connection.
		{"TLS enough", config.ModeProxy, 1024, 2*1024 + fdsBase, "", config.TLSVerifyIdentity},
		{"TLS one short", config.ModeProxy, 1024, 2*1024 + fdsBase - 1, "holds about 1023 connections", config.TLSVerifyCA},
		{"TLS docker's old default", config.ModeProxy, 1024, 1024, "the open-files limit (1024) holds about 504 connections", config.TLSVerifyIdentity},
		{"TLS asks for", config.ModeProxy, 5000, 4096, "raise ulimits nofile in the task definition to 10016 or more", config.TLSVerifyCA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			cfg := config.Config{Mode: tc.mode, MaxConnections: tc.maxConns, TLS: tc.tls}
			warnOpenFilesLimit(context.Background(), slog.New(slog.NewJSONHandler(&out, nil)), cfg, tc.limit)
			lines := jsonLines(t, out.String())
			switch {
			case tc.warn == "" && len(lines) != 0:
				t.Errorf("warned %v; want nothing", lines)
			case tc.warn != "" && (len(lines) != 1 || lines[0]["level"] != "WARN" || lines[0]["variable"] != "MAX_CONNECTIONS" ||
				lines[0]["open_files_limit"] != float64(tc.limit) || !strings.Contains(lines[0]["msg"].(string), tc.warn)):
				t.Errorf("warned %v; want one WARN naming MAX_CONNECTIONS, open_files_limit %d and %q", lines, tc.limit, tc.warn)
			}
		})
	}
}

// A TLS or IAM setting without its switch is warned of at start, naming
// the switch and the fix; LOCAL_PASSWORD's value stays out of the log.
func TestUnusedSettingWarning(t *testing.T) {
	up := testkit.Listen(t)
	upPort := strconv.Itoa(up.Addr().(*net.TCPAddr).Port)
	const secret = "s3cret-local-password"
	env := map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": upPort, "LISTEN_ADDR": "127.0.0.1",
		"TARGET_TLS_CA": "/etc/ssl/certs/private-ca.pem", "LOCAL_PASSWORD": secret,
		"LISTEN_PORT": strconv.Itoa(testkit.FreePort(t)), "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t))}
	cancel, done, stderr := runAsync(t, env)
	waitHealthy(t, env, true)
	stopClean(t, cancel, done, stderr)
	for variable, want := range map[string][]string{
		"TARGET_TLS_CA":  {"TARGET_TLS=disabled", "set TARGET_TLS=verify-identity"},
		"LOCAL_PASSWORD": {"TARGET_AUTH=passthrough", "set TARGET_AUTH=iam"},
	} {
		var warned []string
		for _, l := range jsonLines(t, stderr.String()) {
			if l["level"] == "WARN" && l["variable"] == variable {
				warned = append(warned, l["msg"].(string))
			}
		}
		if len(warned) != 1 {
			t.Errorf("%d warnings about %s, want 1: %q", len(warned), variable, warned)
			continue
		}
		for _, w := range want {
			if !strings.Contains(warned[0], w) {
				t.Errorf("warning about %s does not say %q: %s", variable, w, warned[0])
			}
		}
	}
	if strings.Contains(stderr.String(), secret) {
		t.Error("LOCAL_PASSWORD's value is in the log")
	}
}

func TestLogFormat(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		code int
		want string // in stderr
	}{
		{"text for a bad configuration", map[string]string{"LOG_FORMAT": "Text", "MODE": "nap"}, 2,
			`level=ERROR msg="invalid configuration: MODE=\"nap\" is invalid`},
		{"a bad LOG_FORMAT is reported in JSON", map[string]string{"LOG_FORMAT": "xml", "MODE": "sleep"}, 2,
			`{"time":`},
		{"json by default", map[string]string{"MODE": "nap"}, 2, `"level":"ERROR","msg":"invalid configuration: MODE=\"nap\"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr testkit.LockedBuffer
			code := run(context.Background(), nil, environ(tc.env), io.Discard, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr.String(), tc.code, tc.want)
			}
			if tc.env["LOG_FORMAT"] == "xml" && !strings.Contains(stderr.String(), `LOG_FORMAT=\"xml\" is invalid; accepted: json or text`) {
				t.Fatalf("the bad LOG_FORMAT is not named:\n%s", stderr.String())
			}
		})
	}
	// A running sidecar writes text too.
	env := map[string]string{"MODE": "sleep", "LOG_FORMAT": "text", "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t))}
	cancel, done, stderr := runAsync(t, env)
	waitHealthy(t, env, true)
	cancel()
	<-done
	if !strings.Contains(stderr.String(), "level=INFO msg=starting") || strings.Contains(stderr.String(), `{"time"`) {
		t.Fatalf("LOG_FORMAT=text, stderr:\n%s", stderr.String())
	}
}

// verify-identity needs a name to check: a target given as an IP address
// and no TARGET_SERVER_NAME stops the sidecar at start, naming the
// variable, before any port is opened.
func TestVerifyIdentityWithAnIPTargetExits2(t *testing.T) {
	var stdout, stderr testkit.LockedBuffer
	port := testkit.FreePort(t)
	code := run(context.Background(), nil, environ(map[string]string{
		"TARGET_HOST": "127.0.0.1", "TARGET_PORT": "3306", "TARGET_TLS": "verify-identity", "LISTEN_PORT": strconv.Itoa(port),
	}), &stdout, &stderr)
	if code != 2 {
		t.Fatalf("exit code %d, want 2; stderr:\n%s", code, stderr.String())
	}
	if out := stderr.String(); !strings.Contains(out, "TARGET_SERVER_NAME") || !strings.Contains(out, "127.0.0.1") {
		t.Errorf("the error does not name TARGET_SERVER_NAME and the address:\n%s", out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("LISTEN_PORT %d was left open: %v", port, err)
	}
	ln.Close()
}

// A listener that cannot open names the setting to change: the address's
// when the host lacks it (or its family, as ::1 on a kernel without IPv6),
// else the port's.
func TestListenVariable(t *testing.T) {
	for _, tc := range []struct {
		errno syscall.Errno
		want  string
	}{
		{syscall.EADDRINUSE, "LISTEN_PORT"},
		{syscall.EACCES, "LISTEN_PORT"},
		{syscall.EADDRNOTAVAIL, "LISTEN_ADDR"},
		{syscall.EAFNOSUPPORT, "LISTEN_ADDR"},
	} {
		err := &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", tc.errno)}
		if got := listenVariable(err, "LISTEN_ADDR", "LISTEN_PORT"); got != tc.want {
			t.Errorf("listenVariable(%v) = %s, want %s", err, got, tc.want)
		}
	}
}

// STALE_CHECK_INTERVAL with an Aurora reader or custom endpoint is warned
// of at start: its answer rotates among instances, so the check would close
// connections to healthy ones. Only the forwards whose target (or, with
// TLS, the name checked) is such an endpoint are named; IP targets are
// never checked, so they are not warned of. Parsed only: nothing resolves.
func TestStaleCheckOnReaderWarning(t *testing.T) {
	const (
		writer = "orders.cluster-c1a2b3c4d5e6.eu-west-1.rds.amazonaws.com"
		reader = "orders.cluster-ro-c1a2b3c4d5e6.eu-west-1.rds.amazonaws.com"
		custom = "analytics.cluster-custom-c1a2b3c4d5e6.eu-west-1.rds.amazonaws.com"
	)
	for _, tc := range []struct {
		name string
		env  map[string]string
		warn []string // the targets named, in order; nil = no line
	}{
		{"writer", map[string]string{"TARGET_HOST": writer, "TARGET_PORT": "3306"}, nil},
		{"reader", map[string]string{"TARGET_HOST": reader, "TARGET_PORT": "3306"}, []string{reader + ":3306"}},
		{"reader, trailing dot and capitals", map[string]string{"TARGET_HOST": "Orders.Cluster-RO-c1a2b3c4d5e6.eu-west-1.rds.amazonaws.com.", "TARGET_PORT": "3306"},
			[]string{"Orders.Cluster-RO-c1a2b3c4d5e6.eu-west-1.rds.amazonaws.com.:3306"}},
		{"custom", map[string]string{"TARGET_HOST": custom, "TARGET_PORT": "3306"}, []string{custom + ":3306"}},
		{"check off", map[string]string{"TARGET_HOST": reader, "TARGET_PORT": "3306", "STALE_CHECK_INTERVAL": "0"}, nil},
		{"writer and reader", map[string]string{"FORWARDS": "8080=" + writer + ":3306,8081=" + reader + ":3306"}, []string{reader + ":3306"}},
		{"IP target, reader name checked", map[string]string{"TARGET_HOST": "10.0.3.17", "TARGET_PORT": "3306",
			"TARGET_TLS": "verify-identity", "TARGET_SERVER_NAME": reader}, nil},
		{"alias of a reader", map[string]string{"TARGET_HOST": "db-ro.orders.internal", "TARGET_PORT": "3306",
			"TARGET_TLS": "verify-identity", "TARGET_SERVER_NAME": reader}, []string{"db-ro.orders.internal:3306"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"STALE_CHECK_INTERVAL": "10s"}
			for k, v := range tc.env {
				env[k] = v
			}
			cfg, err := config.Parse(lookupMap(env))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			warnStaleCheckOnReader(context.Background(), slog.New(slog.NewJSONHandler(&out, nil)), cfg)
			var got []string
			for _, l := range jsonLines(t, out.String()) {
				msg, _ := l["msg"].(string)
				if l["level"] != "WARN" || l["variable"] != "STALE_CHECK_INTERVAL" || l["value"] != "10s" ||
					!strings.Contains(msg, "closes connections to healthy instances") || !strings.Contains(msg, "docs/operations.md") {
					t.Errorf("line %v; want a WARN naming STALE_CHECK_INTERVAL=10s, what it does and where to read more", l)
				}
				target, _ := l["target"].(string)
				got = append(got, target)
			}
			if !slices.Equal(got, tc.warn) {
				t.Errorf("warned of targets %q, want %q", got, tc.warn)
			}
		})
	}
}

// Each problem of `sidecar healthcheck` is a line of its own that says
// whose it is, as ECS shows the check's output without context.
func TestHealthcheckProblemsEachPrefixed(t *testing.T) {
	var stderr strings.Builder
	code := run(context.Background(), []string{"healthcheck"}, environ(map[string]string{"ADMIN_ADDR": "localhost", "ADMIN_PORT": "abc"}), io.Discard, &stderr)
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if code != 2 || len(lines) != 2 {
		t.Fatalf("exit %d, %q; want 2 and two lines", code, stderr.String())
	}
	for i, want := range []string{`sidecar healthcheck: ADMIN_ADDR="localhost" is invalid`, `sidecar healthcheck: ADMIN_PORT="abc" is invalid`} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d = %q, want it to start %q", i, lines[i], want)
		}
	}
}
