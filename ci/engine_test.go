package ci

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// noEngineEnv removes every way to an engine the test machine might have,
// for the rest of the test (t.Setenv restores them).
func noEngineEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"DAGGER_SESSION_PORT", "DAGGER_SESSION_TOKEN", "_EXPERIMENTAL_DAGGER_RUNNER_HOST", "_EXPERIMENTAL_DAGGER_CLI_BIN", "DOCKER_HOST"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	return port
}

// fakeDockerCLI puts a `docker` stub first on PATH (the probe only looks
// it up; the daemon is what it talks to).
func fakeDockerCLI(t *testing.T, withDocker bool) {
	t.Helper()
	bin := t.TempDir()
	if withDocker {
		if err := os.WriteFile(filepath.Join(bin, "docker"), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
}

// fakeDockerDaemon answers GET /_ping on a unix socket, like dockerd.
func fakeDockerDaemon(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_ping" {
			_, _ = w.Write([]byte("OK"))
			return
		}
		http.NotFound(w, r)
	}))
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return "unix://" + sock
}

func TestConnectNamesWhatIsMissing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T)
		want  []string
	}{
		{"no docker daemon", func(t *testing.T) {
			fakeDockerCLI(t, true)
			t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "absent.sock"))
		}, []string{"Docker daemon is not reachable at unix://", "_EXPERIMENTAL_DAGGER_RUNNER_HOST"}},
		{"docker daemon refuses tcp", func(t *testing.T) {
			fakeDockerCLI(t, true)
			t.Setenv("DOCKER_HOST", "tcp://127.0.0.1:"+closedPort(t))
		}, []string{"Docker daemon is not reachable at tcp://127.0.0.1:"}},
		{"no docker installed", func(t *testing.T) {
			fakeDockerCLI(t, false)
		}, []string{"Docker is not installed"}},
		{"remote engine unreachable", func(t *testing.T) {
			t.Setenv("_EXPERIMENTAL_DAGGER_RUNNER_HOST", "tcp://127.0.0.1:"+closedPort(t))
		}, []string{"remote engine _EXPERIMENTAL_DAGGER_RUNNER_HOST=tcp://127.0.0.1:", "not reachable"}},
		{"stale session", func(t *testing.T) {
			t.Setenv("DAGGER_SESSION_PORT", closedPort(t))
			t.Setenv("DAGGER_SESSION_TOKEN", "x")
		}, []string{"DAGGER_SESSION_PORT="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noEngineEnv(t)
			tc.setup(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // safety net
			defer cancel()
			var log bytes.Buffer
			c, err := Connect(ctx, &log)
			if err == nil {
				c.Close()
				t.Fatal("Connect succeeded with no engine")
			}
			var ee *EngineError
			if !errors.As(err, &ee) {
				t.Fatalf("err is %T (%v), want *EngineError", err, err)
			}
			msg := err.Error()
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
	fakeDockerCLI(t, true)
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second) // safety net
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestConnectWithoutCLI$", "-test.count=1")
	proxy := "http://127.0.0.1:" + closedPort(t)
	cmd.Env = append(os.Environ(),
		"CI_TEST_CONNECT_CHILD=1",
		"DOCKER_HOST="+fakeDockerDaemon(t),
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
