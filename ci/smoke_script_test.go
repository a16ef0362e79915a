package ci

// The smoke steps are shell scripts run inside the images. No engine runs
// here, but busybox sh (the image's shell) does: run the real scripts
// against stand-ins for the sidecar binary and the mysql client.

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/ci/smokesql"
	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/internal/testmysql"
)

func busybox(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("busybox")
	if err != nil {
		testenv.Unavailable(t, "busybox is not installed (apt-get install busybox-static)")
	}
	return p
}

// standIn writes an executable shell script.
func standIn(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// sidecarStandIn behaves like the sidecar: `healthcheck` passes once the
// server has been up for a moment; the server runs until SIGTERM and then
// exits 0. With exitAt >= 0 the server instead exits with that code.
func sidecarStandIn(t *testing.T, dir string, exitAt int) string {
	t.Helper()
	state := filepath.Join(dir, "up")
	body := `if [ "$1" = healthcheck ]; then [ -f "` + state + `" ]; exit $?; fi
`
	if exitAt >= 0 {
		body += "exit " + strconv.Itoa(exitAt) + "\n"
	}
	body += `trap 'rm -f "` + state + `"; exit 0' TERM
sleep 1
touch "` + state + `"
while :; do sleep 1; done
`
	return standIn(t, dir, "sidecar", body)
}

func runScript(t *testing.T, script string, env ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // safety net
	defer cancel()
	cmd := exec.CommandContext(ctx, busybox(t), "sh", "-c", script)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	return string(out) + stderr.String(), err
}

func TestRunningCheckScript(t *testing.T) {
	t.Parallel()
	uid := "uid=" + strconv.Itoa(os.Getuid())
	t.Run("healthy sidecar", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		out, err := runScript(t, runningCheckScript(), "SIDECAR="+sidecarStandIn(t, dir, -1))
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if err := expectLines(out, uid, "healthcheck=ok", "exit=0"); err != nil {
			t.Error(err)
		}
	})
	t.Run("sidecar exits at start", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		out, err := runScript(t, runningCheckScript(), "SIDECAR="+sidecarStandIn(t, dir, 2))
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.Contains(out, "sidecar exited with 2 before becoming healthy") {
			t.Fatalf("err = %v, output:\n%s", err, out)
		}
	})
}

func TestSleepCheckScript(t *testing.T) {
	t.Parallel()
	t.Run("stays up", func(t *testing.T) {
		t.Parallel()
		out, err := runScript(t, sleepCheckScript(), "SIDECAR="+sidecarStandIn(t, t.TempDir(), -1))
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if err := expectLines(out, "stayed-up", "healthcheck=ok", "exit=0"); err != nil {
			t.Error(err)
		}
	})
	t.Run("exits early", func(t *testing.T) {
		t.Parallel()
		out, err := runScript(t, sleepCheckScript(), "SIDECAR="+sidecarStandIn(t, t.TempDir(), 3))
		if err == nil || !strings.Contains(out, "sleep mode exited with 3 within") {
			t.Fatalf("err = %v, output:\n%s", err, out)
		}
	})
}

func TestClientScript(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"mysql", "mariadb"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testClientScript(t, name)
		})
	}
}

func testClientScript(t *testing.T, client string) {
	// Client stand-in: refuses the first two connections (MySQL still
	// starting), then answers; it checks it was given the option file,
	// the sidecar address and the batch flags.
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	standIn(t, dir, client, `n=$(cat "`+count+`" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "`+count+`"
[ "$1" = "--defaults-extra-file=`+clientCnf+`" ] || { echo "bad first arg $1" >&2; exit 9; }
case "$*" in *"-h sidecar -P 8080"*) ;; *) echo "not through the sidecar: $*" >&2; exit 9;; esac
if [ "$n" -le 2 ]; then echo "ERROR 2003 (HY000): Can't connect" >&2; exit 1; fi
case "$*" in *"SELECT 1"*) exit 0;; esac
case "$*" in *"`+strings.Join(smokesql.ClientArgs(), " ")+`"*) ;; *) echo "no batch flags: $*" >&2; exit 9;; esac
[ "$*" != "${*%REPEAT*}" ] || { echo "SQL not passed" >&2; exit 9; }
echo "`+smokesql.Expected()+`"
`)
	// PATH: the stand-in and the few tools the scripts use, so a real
	// client on this machine cannot be picked up instead.
	tools := t.TempDir()
	for _, tool := range []string{"cat", "sleep"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(tools, tool)); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runScript(t, clientScript(), "PATH="+dir+":"+tools, "SMOKE_SQL="+smokesql.SQL)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if err := smokesql.Check(out); err != nil {
		t.Error(err)
	}
}

// TestSmokeScriptsAgainstRealSidecar runs the three smoke scripts as the
// pipeline does, but on this machine: the real sidecar binary, a real
// MariaDB, the real client; only the Dagger wiring (services, hostnames)
// is replaced by loopback ports.
func TestSmokeScriptsAgainstRealSidecar(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end to end: builds the sidecar and runs the smoke scripts against it and a real MariaDB; not run with -short")
	}
	busybox(t)
	client := ""
	for _, name := range []string{"mysql", "mariadb"} {
		if _, err := exec.LookPath(name); err == nil {
			client = name
			break
		}
	}
	if client == "" {
		testenv.Unavailable(t, "no mysql/mariadb client (apt-get install mariadb-client)")
	}
	db := testmysql.Start(t)

	bin := filepath.Join(t.TempDir(), "sidecar")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // safety net
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./sidecar")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./sidecar: %v\n%s", err, out)
	}
	// proxyEnv is the sidecar's proxy-mode environment on fresh ports.
	proxyEnv := func() (env []string, listen string) {
		listen = strconv.Itoa(testkit.FreePort(t))
		return []string{"MODE=proxy", "TARGET_HOST=127.0.0.1", "TARGET_PORT=" + strconv.Itoa(db.Port),
			"LISTEN_ADDR=127.0.0.1", "LISTEN_PORT=" + listen, "ADMIN_PORT=" + strconv.Itoa(testkit.FreePort(t))}, listen
	}

	t.Run("running sidecar", func(t *testing.T) {
		env, _ := proxyEnv()
		out, err := runScript(t, runningCheckScript(), append(env, "SIDECAR="+bin)...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if err := expectLines(out, "uid="+strconv.Itoa(os.Getuid()), "healthcheck=ok", "exit=0"); err != nil {
			t.Error(err)
		}
	})
	t.Run("sleep mode", func(t *testing.T) {
		out, err := runScript(t, sleepCheckScript(), "SIDECAR="+bin, "MODE=sleep", "ADMIN_PORT="+strconv.Itoa(testkit.FreePort(t)))
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if err := expectLines(out, "stayed-up", "healthcheck=ok", "exit=0"); err != nil {
			t.Error(err)
		}
	})
	t.Run("SQL round trip through the sidecar", func(t *testing.T) {
		env, listen := proxyEnv()
		side := exec.CommandContext(ctx, bin)
		side.Env = append(os.Environ(), env...)
		logs := &testkit.LockedBuffer{} // the sidecar writes while a failing test reads
		side.Stderr = logs
		if err := side.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			_ = side.Process.Signal(os.Interrupt)
			_ = side.Wait()
		}()
		cnf := filepath.Join(t.TempDir(), "client.cnf")
		if err := os.WriteFile(cnf, []byte("[client]\nuser="+db.User+"\npassword="+db.Password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := runScript(t, clientScript(), "SMOKE_HOST=127.0.0.1", "SMOKE_PORT="+listen, "SMOKE_CNF="+cnf, "SMOKE_SQL="+smokesql.SQL)
		if err != nil {
			t.Fatalf("%v\n%s\nsidecar log:\n%s", err, out, logs.String())
		}
		if err := smokesql.Check(out); err != nil {
			t.Errorf("%v\nsidecar log:\n%s", err, logs.String())
		}
	})
}
