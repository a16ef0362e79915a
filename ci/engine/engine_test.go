package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testkit"
)

// noEngineEnv removes every way to an engine the test machine might have,
// for the rest of the test (t.Setenv restores them).
func noEngineEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"DAGGER_SESSION_PORT", "DAGGER_SESSION_TOKEN", "_EXPERIMENTAL_DAGGER_RUNNER_HOST", "_EXPERIMENTAL_DAGGER_CLI_BIN", "DOCKER_HOST", "DOCKER_CONTEXT"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // safety net
	t.Cleanup(cancel)
	return ctx
}

// fakeDockerCLI makes PATH hold only a `docker` running script (none
// when script is empty), and points DOCKER_CONFIG at an empty directory.
func fakeDockerCLI(t *testing.T, script string) {
	t.Helper()
	bin := t.TempDir()
	if script != "" {
		if err := os.WriteFile(filepath.Join(bin, "docker"), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
}

// dockerDown is a docker CLI whose daemon does not answer.
const dockerDown = `echo "Client: 20.10.24"; echo "Cannot connect to the Docker daemon at unix:///nowhere/docker.sock. Is the docker daemon running?" >&2; exit 1`

// fakeDockerDaemon answers the Docker API calls `docker version` makes
// (GET /_ping, GET /v1.NN/version) on a unix socket, like dockerd, and
// counts the version requests.
func fakeDockerDaemon(t *testing.T) (host string, versions *atomic.Int32) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	versions = &atomic.Int32{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("API-Version", "1.41")
		switch {
		case r.URL.Path == "/_ping":
			_, _ = w.Write([]byte("OK"))
		case strings.HasSuffix(r.URL.Path, "/version"):
			versions.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"Version":"20.10.99-fake","ApiVersion":"1.41","MinAPIVersion":"1.12","Os":"linux","Arch":"amd64","Components":[{"Name":"Engine","Version":"20.10.99-fake"}]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return "unix://" + sock, versions
}

// realDockerCLI puts the real docker client alone on PATH, with its config
// (and so its contexts) in a fresh DOCKER_CONFIG.
func realDockerCLI(t *testing.T) (docker, config string) {
	t.Helper()
	docker = "/usr/bin/docker"
	if _, err := os.Stat(docker); err != nil {
		testenv.Unavailable(t, "Docker CLI: no /usr/bin/docker (install Debian's docker.io package)")
	}
	bin := t.TempDir()
	if err := os.Symlink(docker, filepath.Join(bin, "docker")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	config = t.TempDir()
	t.Setenv("DOCKER_CONFIG", config)
	return docker, config
}

func dockerCmd(t *testing.T, docker string, args ...string) {
	t.Helper()
	if out, err := exec.Command(docker, args...).CombinedOutput(); err != nil {
		t.Fatalf("docker %v: %v\n%s", args, err, out)
	}
}

// The probe finds Docker the way Dagger does, through the CLI: a context
// whose endpoint is a socket served here works although DOCKER_HOST is
// unset, and a context whose daemon is gone fails naming that context,
// although this machine's /var/run/docker.sock may answer.
func TestProbeDockerFollowsTheContext(t *testing.T) {
	for _, how := range []string{"docker context use", "DOCKER_CONTEXT"} {
		t.Run(how, func(t *testing.T) {
			noEngineEnv(t)
			docker, _ := realDockerCLI(t)
			host, versions := fakeDockerDaemon(t)
			dockerCmd(t, docker, "context", "create", "vm", "--docker", "host="+host)
			dead := "unix://" + filepath.Join(t.TempDir(), "gone.sock")
			dockerCmd(t, docker, "context", "create", "gone", "--docker", "host="+dead)
			use := func(name string) {
				if how == "DOCKER_CONTEXT" {
					t.Setenv("DOCKER_CONTEXT", name)
				} else {
					dockerCmd(t, docker, "context", "use", name)
				}
			}
			use("vm")
			if err := Probe(testCtx(t), os.LookupEnv); err != nil {
				t.Fatalf("probe through context vm at %s: %v", host, err)
			}
			if versions.Load() == 0 {
				t.Error("the probe succeeded without asking the context's daemon")
			}
			use("gone")
			err := Probe(testCtx(t), os.LookupEnv)
			if err == nil {
				t.Fatal("probe succeeded through a context whose daemon is gone")
			}
			for _, w := range []string{`Docker context "gone"`, dead, "docker context use"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q: %v", w, err)
				}
			}
		})
	}
}

func TestConnectNamesWhatIsMissing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T)
		want  []string
	}{
		{"docker fails, DOCKER_HOST set", func(t *testing.T) {
			fakeDockerCLI(t, dockerDown)
			t.Setenv("DOCKER_HOST", "unix:///nowhere/docker.sock")
		}, []string{"Docker daemon is not reachable through DOCKER_HOST=unix:///nowhere/docker.sock", "Cannot connect to the Docker daemon", "_EXPERIMENTAL_DAGGER_RUNNER_HOST"}},
		{"docker fails, default context", func(t *testing.T) {
			fakeDockerCLI(t, dockerDown)
		}, []string{"through the default Docker context", "Is the docker daemon running?"}},
		{"docker fails, configured context", func(t *testing.T) {
			fakeDockerCLI(t, dockerDown)
			cfg := os.Getenv("DOCKER_CONFIG")
			if err := os.WriteFile(filepath.Join(cfg, "config.json"), []byte(`{"currentContext":"colima"}`), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{`through Docker context "colima" (current context in `, "config.json", "Cannot connect"}},
		{"docker fails, DOCKER_CONTEXT", func(t *testing.T) {
			fakeDockerCLI(t, dockerDown)
			t.Setenv("DOCKER_CONTEXT", "orbstack")
		}, []string{`Docker context "orbstack" (DOCKER_CONTEXT`}},
		{"no docker installed", func(t *testing.T) {
			fakeDockerCLI(t, "")
		}, []string{"Docker is not installed"}},
		{"remote engine unreachable", func(t *testing.T) {
			t.Setenv("_EXPERIMENTAL_DAGGER_RUNNER_HOST", "tcp://127.0.0.1:"+strconv.Itoa(testkit.RefusedPort(t)))
		}, []string{"remote engine _EXPERIMENTAL_DAGGER_RUNNER_HOST=tcp://127.0.0.1:", "not reachable"}},
		{"stale session", func(t *testing.T) {
			t.Setenv("DAGGER_SESSION_PORT", strconv.Itoa(testkit.RefusedPort(t)))
			t.Setenv("DAGGER_SESSION_TOKEN", "x")
		}, []string{"DAGGER_SESSION_PORT="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noEngineEnv(t)
			tc.setup(t)
			msg := connectFails(t, 30*time.Second) // a safety net
			if !strings.HasPrefix(msg, "Dagger engine unavailable: ") || strings.Contains(msg, "\n") {
				t.Errorf("want one line naming Dagger, got %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message does not mention %q: %s", w, msg)
				}
			}
		})
	}
}

// A docker CLI that hangs is given up on within the caller's deadline
// (or dockerload.PingTimeout, if sooner), and the message says so.
func TestConnectWhenDockerHangs(t *testing.T) {
	noEngineEnv(t)
	fakeDockerCLI(t, "exec /bin/sleep 60")
	const bound = time.Second // under PingTimeout, so the caller's deadline bounds Ping
	msg := connectFails(t, bound)
	// Ping is given what is left of the bound when it starts: how much
	// that is depends on the machine's speed, so only its range is checked.
	_, after, ok := strings.Cut(msg, "`docker version`: no answer within ")
	within, _, _ := strings.Cut(after, ")")
	waited, err := time.ParseDuration(within)
	if !ok || err != nil || waited <= 0 || waited > bound {
		t.Errorf("err = %q, want it to say docker gave no answer within the time left of the %s deadline (over 0, at most %s)", msg, bound, bound)
	}
}

// connectFails runs Connect with a deadline of within and returns its
// error's message, failing the test unless it is an *Error.
func connectFails(t *testing.T, within time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var log bytes.Buffer
	c, err := Connect(ctx, &log)
	if err == nil {
		c.Close()
		t.Fatal("Connect succeeded with no engine")
	}
	var ee *Error
	if !errors.As(err, &ee) {
		t.Fatalf("err is %T (%v), want *Error", err, err)
	}
	return err.Error()
}

// TestConnectWithoutCLI runs the real SDK path with a reachable Docker but
// no Dagger CLI: the SDK tries to download it, which fails (through a
// loopback proxy that refuses, so the test sends nothing off the machine).
// It runs in a child process because Go reads proxy settings once.
func TestConnectWithoutCLI(t *testing.T) {
	if os.Getenv("CI_TEST_CONNECT_CHILD") == "1" {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c, err := Connect(ctx, os.Stderr)
		if err == nil {
			c.Close()
			os.Stdout.WriteString("CONNECTED\n")
			return
		}
		os.Stdout.WriteString("ERR " + err.Error() + "\n")
		os.Exit(3)
	}
	noEngineEnv(t)
	host, _ := fakeDockerDaemon(t)
	fakeDockerCLI(t, `[ "$1" = version ] && echo 20.10.99-fake`)
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second) // safety net
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestConnectWithoutCLI$", "-test.count=1")
	proxy := "http://127.0.0.1:" + strconv.Itoa(testkit.RefusedPort(t))
	cmd.Env = append(os.Environ(),
		"CI_TEST_CONNECT_CHILD=1",
		"DOCKER_HOST="+host,
		"HOME="+home, "XDG_CACHE_HOME="+filepath.Join(home, ".cache"), // no cached CLI
		"HTTPS_PROXY="+proxy, "https_proxy="+proxy, "HTTP_PROXY="+proxy, "http_proxy="+proxy,
		"NO_PROXY=", "no_proxy=",
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := stdout.String()
	if strings.Contains(out, "CONNECTED") {
		t.Fatalf("connected without an engine?\n%s", stderr.String())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("child: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	line, _, _ := strings.Cut(out[strings.Index(out, "ERR "):], "\n")
	for _, w := range []string{"Dagger engine unavailable", "Dagger CLI", "could not be downloaded", "_EXPERIMENTAL_DAGGER_CLI_BIN"} {
		if !strings.Contains(line, w) {
			t.Errorf("message does not mention %q: %s", w, line)
		}
	}
	if strings.Contains(out+stderr.String(), "goroutine ") {
		t.Errorf("stack trace in output:\n%s%s", out, stderr.String())
	}
}

// Credentials in an engine or Docker address are never printed, not even
// inside a dial error.
func TestAddressCredentialsNeverPrinted(t *testing.T) {
	const secret = "S3CRET-in-the-address"
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T)
		want  string
	}{
		{"remote engine", func(t *testing.T) {
			t.Setenv("_EXPERIMENTAL_DAGGER_RUNNER_HOST", "tcp://user:"+secret+"@127.0.0.1:"+strconv.Itoa(testkit.RefusedPort(t)))
		}, "_EXPERIMENTAL_DAGGER_RUNNER_HOST=tcp://xxxxx@127.0.0.1:"},
		{"Docker daemon", func(t *testing.T) {
			fakeDockerCLI(t, dockerDown)
			t.Setenv("DOCKER_HOST", "tcp://"+secret+"@127.0.0.1:"+strconv.Itoa(testkit.RefusedPort(t)))
		}, "DOCKER_HOST=tcp://xxxxx@127.0.0.1:"},
		{"remote engine, token in the query", func(t *testing.T) {
			t.Setenv("_EXPERIMENTAL_DAGGER_RUNNER_HOST", "tcp://127.0.0.1:"+strconv.Itoa(testkit.RefusedPort(t))+"?token="+secret)
		}, "?xxxxx is not reachable"},
		{"Docker daemon, token in the query", func(t *testing.T) {
			fakeDockerCLI(t, dockerDown)
			t.Setenv("DOCKER_HOST", "tcp://127.0.0.1:"+strconv.Itoa(testkit.RefusedPort(t))+"?token="+secret)
		}, "DOCKER_HOST=tcp://127.0.0.1:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noEngineEnv(t)
			tc.setup(t)
			msg := connectFails(t, 30*time.Second)
			if strings.Contains(msg, secret) || !strings.Contains(msg, tc.want) {
				t.Errorf("message %q: want it to show %q and never the secret", msg, tc.want)
			}
		})
	}
}

// A failed connect ends the SDK's unterminated line, and adds no blank
// line when the SDK wrote nothing or ended its line.
func TestLineEnd(t *testing.T) {
	for _, tc := range []struct{ written, want string }{
		{"", ""},
		{"Downloading CLI... ", "Downloading CLI... \n"},
		{"engine started\n", "engine started\n"},
	} {
		var b strings.Builder
		l := &lineEnd{w: &b, ended: true}
		fmt.Fprint(l, tc.written)
		l.end()
		if b.String() != tc.want {
			t.Errorf("after %q: %q, want %q", tc.written, b.String(), tc.want)
		}
	}
}

// A connect that fails is blamed on _EXPERIMENTAL_DAGGER_CLI_BIN only when
// the SDK could not run the CLI it names (dagger.io/dagger
// engineconn/cli.go, FromLocalCLI: exec.LookPath), not when the CLI ran and
// reported a missing file of its own, nor when the variable is unset.
func TestConnectBlamesTheCLIBinOnlyWhenItCannotRun(t *testing.T) {
	const engineGone = "Error: dial unix /run/dagger/engine.sock: connect: no such file or directory"
	for _, tc := range []struct {
		name    string
		cliBin  func(t *testing.T) string // "" leaves it unset
		want    []string
		notWant []string
	}{
		{"missing path", func(t *testing.T) string { return filepath.Join(t.TempDir(), "dagger") },
			[]string{"_EXPERIMENTAL_DAGGER_CLI_BIN=", "cannot be run", "no such file or directory"}, nil},
		{"not executable", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "dagger")
			if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, []string{"_EXPERIMENTAL_DAGGER_CLI_BIN=", "cannot be run", "permission denied"}, nil},
		{"not on PATH", func(t *testing.T) string { return "dagger-not-installed-here" },
			[]string{"_EXPERIMENTAL_DAGGER_CLI_BIN=dagger-not-installed-here", "cannot be run"}, nil},
		{"the CLI ran and reported a missing socket", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "dagger")
			if err := os.WriteFile(p, []byte("#!/bin/sh\necho '"+engineGone+"' >&2\nexit 1\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			return p
		}, []string{"could not start an engine session", "engine.sock"}, []string{"_EXPERIMENTAL_DAGGER_CLI_BIN", "was not found", "cannot be run"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noEngineEnv(t)
			// An engine socket that accepts, so the probe passes and the
			// SDK runs the CLI.
			sock := filepath.Join(t.TempDir(), "engine.sock")
			l, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			t.Setenv("_EXPERIMENTAL_DAGGER_RUNNER_HOST", "unix://"+sock)
			t.Setenv("_EXPERIMENTAL_DAGGER_CLI_BIN", tc.cliBin(t))
			msg := connectFails(t, 30*time.Second)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q: %s", w, msg)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(msg, w) {
					t.Errorf("message says %q: %s", w, msg)
				}
			}
		})
	}
}

// An error naming a missing file is the CLI's own when the variable is
// unset: the SDK then runs the CLI it downloaded.
func TestExplainConnectWithoutCLIBin(t *testing.T) {
	t.Parallel()
	_, lookErr := exec.LookPath(filepath.Join(t.TempDir(), "dagger"))
	for _, err := range []error{
		fmt.Errorf("failed to read session params: %w: %s", io.EOF, "Error: dial unix /run/dagger/engine.sock: connect: no such file or directory"),
		lookErr,
	} {
		msg := explainConnect(err, func(string) (string, bool) { return "", false })
		if strings.Contains(msg, "_EXPERIMENTAL_DAGGER_CLI_BIN") || !strings.HasPrefix(msg, "could not start an engine session — ") {
			t.Errorf("explainConnect(%v) = %q, want the session's failure, not the CLI variable", err, msg)
		}
	}
}

// DockerTarget names the daemon as the docker CLI picks it: a DOCKER_HOST
// that is set, even blank, selects the default context
// (cli/command/cli.go, resolveContextName), and its value is trimmed, a
// blank one meaning the default socket (opts/hosts.go, ParseHost). Neither
// credentials nor a query (a token) are shown.
func TestDockerTarget(t *testing.T) {
	t.Parallel()
	cfg := t.TempDir() // no config.json: no current context
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"DOCKER_HOST": "tcp://127.0.0.1:1?token=SECRET15"}, "DOCKER_HOST=tcp://127.0.0.1:1?xxxxx"},
		{map[string]string{"DOCKER_HOST": "tcp://127.0.0.1:1#SECRET15"}, "DOCKER_HOST=tcp://127.0.0.1:1#xxxxx"},
		{map[string]string{"DOCKER_HOST": "tcp://user:SECRET15@127.0.0.1:1"}, "DOCKER_HOST=tcp://xxxxx@127.0.0.1:1"},
		{map[string]string{"DOCKER_HOST": " unix:///run/user/1000/docker.sock "}, "DOCKER_HOST=unix:///run/user/1000/docker.sock"},
		{map[string]string{"DOCKER_HOST": " "}, "the default Docker context (unix:///var/run/docker.sock)"},
		{map[string]string{"DOCKER_HOST": " ", "DOCKER_CONTEXT": "colima"}, "the default Docker context (unix:///var/run/docker.sock)"},
		{map[string]string{"DOCKER_HOST": "", "DOCKER_CONTEXT": "colima"}, `Docker context "colima" (DOCKER_CONTEXT)`},
		{nil, "the default Docker context (unix:///var/run/docker.sock)"},
	} {
		env := map[string]string{"DOCKER_CONFIG": cfg}
		maps.Copy(env, tc.env)
		got := DockerTarget(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if got != tc.want {
			t.Errorf("DockerTarget(%q) = %q, want %q", tc.env, got, tc.want)
		}
	}
}

// The SDK appends the CLI's stderr to "failed to read session params: EOF"
// only when its stderr copy wins a race with its stdout read; join adds
// what the SDK lost, and leaves every other error alone.
func TestCLIOutputJoinsWhatTheSDKLost(t *testing.T) {
	t.Parallel()
	const said = "Error: dial unix /run/dagger/engine.sock: connect: no such file or directory\n"
	sdkEOF := fmt.Errorf("failed to read session params: %w", io.EOF)
	for _, tc := range []struct {
		name   string
		err    error
		writes []string      // the SDK's log output, in order
		late   time.Duration // how long after the error the CLI's output arrives
		want   string
	}{
		{"lost, arrives late", sdkEOF, []string{"Creating new Engine session... ", "OK!\nEstablishing connection to Engine... ", said}, 50 * time.Millisecond,
			"failed to read session params: EOF: " + strings.TrimSpace(said)},
		{"lost, already written", sdkEOF, []string{"Creating new Engine session... ", said}, 0,
			"failed to read session params: EOF: " + strings.TrimSpace(said)},
		{"kept by the SDK", fmt.Errorf("%w: %s", sdkEOF, said), []string{said}, 0,
			"failed to read session params: EOF: " + said},
		{"the CLI said nothing", sdkEOF, []string{"Creating new Engine session... ", "OK!\nEstablishing connection to Engine... "}, 0,
			"failed to read session params: EOF"},
		{"not the session's end", errors.New("download checksums: refused"), []string{said}, 0,
			"download checksums: refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &cliOutput{said: make(chan struct{})}
			write := func() {
				for _, w := range tc.writes {
					c.Write([]byte(w))
				}
			}
			if tc.late > 0 {
				time.AfterFunc(tc.late, write)
			} else {
				write()
			}
			got := c.join(tc.err, time.Second)
			if got.Error() != tc.want {
				t.Errorf("join = %q, want %q", got, tc.want)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("join lost the SDK's error: %v", got)
			}
		})
	}
}
