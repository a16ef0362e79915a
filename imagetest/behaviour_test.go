package imagetest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/ci/smokesql"
	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/internal/testmysql"
)

// testProxy runs the image as the docs' task definitions do in front of a
// real MariaDB: host network, read-only root with no writable mounts, no
// capabilities, and checks the shared
// smoke SQL round trip, `sidecar healthcheck` and the Dockerfile's
// HEALTHCHECK, then a clean stop.
func testProxy(t *testing.T, d docker, img builtImage) {
	client := mysqlClient(t)
	srv := testmysql.Start(t)
	listen, admin := testkit.FreePort(t), testkit.FreePort(t)
	name := run(t, d, img, []string{"--read-only", "--cap-drop", "ALL"},
		"MODE=proxy", "TARGET_HOST=127.0.0.1", "TARGET_PORT="+itoa(srv.Port),
		"LISTEN_ADDR=127.0.0.1", "LISTEN_PORT="+itoa(listen), "ADMIN_PORT="+itoa(admin))
	if got := d.inspect(t, "{{.HostConfig.ReadonlyRootfs}} {{len .Mounts}} {{.HostConfig.CapDrop}}", name); got != "true 0 [ALL]" {
		t.Fatalf("read-only root, mounts and dropped capabilities = %q, want \"true 0 [ALL]\"", got)
	}
	waitHealthy(t, d, name)

	// The HEALTHCHECK that turned healthy is the Dockerfile's command; only
	// its interval was overridden.
	var hc struct {
		Test     []string
		Interval time.Duration
	}
	if err := json.Unmarshal([]byte(d.inspect(t, "{{json .Config.Healthcheck}}", name)), &hc); err != nil {
		t.Fatal(err)
	}
	if strings.Join(hc.Test, " ") != "CMD /usr/local/bin/sidecar healthcheck" || hc.Interval != time.Second {
		t.Errorf("container health check = %+v, want the Dockerfile's command every 1s", hc)
	}

	out := sqlRoundTrip(t, client, srv, listen)
	if err := smokesql.Check(out); err != nil {
		t.Errorf("through the container: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, hcOut, err := d.exitCode(ctx, "exec", name, "sidecar", "healthcheck")
	if err != nil || code != 0 {
		t.Errorf("docker exec sidecar healthcheck: exit %d, %v: %s", code, err, hcOut)
	}

	took, exit := stop(t, d, name, 30)
	t.Logf("docker stop of the idle proxy: %v, exit code %d", took.Round(time.Millisecond), exit)
	if exit != 0 {
		t.Errorf("exit code after docker stop = %d, want 0", exit)
	}
}

// mysqlClient finds the MariaDB (or MySQL) command-line client.
func mysqlClient(t *testing.T) string {
	t.Helper()
	for _, c := range []string{"mariadb", "mysql"} {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	testenv.Unavailable(t, "MariaDB client: neither mariadb nor mysql on PATH (install Debian's mariadb-client package)")
	return ""
}

// sqlRoundTrip runs the shared smoke SQL through the sidecar's listen port.
// The password travels in the environment, never on a command line.
func sqlRoundTrip(t *testing.T, client string, srv *testmysql.Server, port int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append(smokesql.ClientArgs(),
		"--protocol=TCP", "--host=127.0.0.1", "--port="+itoa(port), "--user="+srv.User,
		"--connect-timeout=10", "--execute="+smokesql.SQL)
	c := exec.CommandContext(ctx, client, args...)
	c.Env = append(os.Environ(), "MYSQL_PWD="+srv.Password)
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%s through the sidecar on port %d: %v\n%s", client, port, err, out)
	}
	return string(out)
}

// testDrain stops the container with `docker stop -t 30` while a slow bulk
// transfer is in flight through it in both directions at once (a 3 MiB
// upload to the loopback server and a 3 MiB download from it, each paced
// over about 4 s): both must complete intact, then the container exit 0.
func testDrain(t *testing.T, d docker, img builtImage) {
	const (
		size  = 3 << 20
		chunk = 32 << 10
		pause = 40 * time.Millisecond // about 4 s for the whole payload
	)
	up, down := pseudoRandom(size, 1), pseudoRandom(size, 2)

	backend := testkit.Listen(t)
	received := make(chan transferred, 1)
	go serveBulk(backend, down, chunk, pause, received)

	listen, admin := testkit.FreePort(t), testkit.FreePort(t)
	name := run(t, d, img, nil,
		"MODE=proxy", "TARGET_HOST=127.0.0.1", "TARGET_PORT="+itoa(backend.Addr().(*net.TCPAddr).Port),
		"LISTEN_ADDR=127.0.0.1", "LISTEN_PORT="+itoa(listen), "ADMIN_PORT="+itoa(admin))
	waitHealthy(t, d, name)

	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", itoa(listen)), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(90 * time.Second))
	uploaded := make(chan error, 1)
	go func() { uploaded <- sendSlowly(conn.(*net.TCPConn), up, chunk, pause) }()
	first := make([]byte, chunk)
	n, err := io.ReadAtLeast(conn, first, 1)
	if err != nil {
		t.Fatalf("first bytes through the sidecar: %v", err)
	}

	// Both directions are in flight: stop the container.
	type stopped struct {
		at   time.Time
		exit string
		err  error
	}
	stopIssued := time.Now()
	done := make(chan stopped, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_, err := d.output(ctx, "stop", "-t", "30", name)
		at := time.Now()
		exit, ierr := d.output(ctx, "inspect", "--format", "{{.State.ExitCode}}", name)
		done <- stopped{at, strings.TrimSpace(exit), errors.Join(err, ierr)}
	}()

	h := sha256.New()
	h.Write(first[:n])
	rest, err := io.Copy(h, conn)
	downEnd := time.Now()
	if err != nil {
		t.Errorf("download through the draining sidecar: %v", err)
	}
	checkTransfer(t, "download", transferred{int64(n) + rest, [32]byte(h.Sum(nil))}, down)
	if err := <-uploaded; err != nil {
		t.Errorf("upload through the draining sidecar: %v", err)
	}
	select {
	case got := <-received:
		checkTransfer(t, "upload", got, up)
	case <-time.After(time.Minute):
		t.Error("the server never saw the end of the upload")
	}
	conn.Close() // as a client does when its exchange is complete

	s := <-done
	if s.err != nil {
		t.Fatal(s.err)
	}
	t.Logf("transfer went on %v after docker stop was issued; docker stop returned after %v; exit code %s",
		downEnd.Sub(stopIssued).Round(time.Millisecond), s.at.Sub(stopIssued).Round(time.Millisecond), s.exit)
	if s.exit != "0" {
		t.Errorf("exit code after draining = %s, want 0", s.exit)
	}
}

// transferred is what one side of the bulk transfer received.
type transferred struct {
	n   int64
	sum [32]byte
}

func checkTransfer(t *testing.T, what string, got transferred, want []byte) {
	t.Helper()
	if got.n != int64(len(want)) || got.sum != sha256.Sum256(want) {
		t.Errorf("%s during docker stop: got %d bytes (sha256 %x), want %d bytes intact (sha256 %x)",
			what, got.n, got.sum, len(want), sha256.Sum256(want))
	}
}

// pseudoRandom returns n reproducible bytes; different seeds, different data
// (an echo or a mix-up of the two directions would show).
func pseudoRandom(n int, seed byte) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewChaCha8([32]byte{'s', 'i', 'd', 'e', 'c', 'a', 'r', seed}))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// serveBulk serves one connection: it sends payload paced, half-closes, and
// reports what it received up to the client's half-close.
func serveBulk(l net.Listener, payload []byte, chunk int, pause time.Duration, received chan<- transferred) {
	c, err := l.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	got := make(chan transferred, 1)
	go func() {
		h := sha256.New()
		n, _ := io.Copy(h, c)
		got <- transferred{n, [32]byte(h.Sum(nil))}
	}()
	_ = sendSlowly(c.(*net.TCPConn), payload, chunk, pause)
	received <- <-got
}

// sendSlowly writes payload in paced chunks, then half-closes: a bulk
// transfer that lasts seconds.
func sendSlowly(c *net.TCPConn, payload []byte, chunk int, pause time.Duration) error {
	for off := 0; off < len(payload); off += chunk {
		if _, err := c.Write(payload[off:min(off+chunk, len(payload))]); err != nil {
			return err
		}
		time.Sleep(pause)
	}
	return c.CloseWrite()
}

// testSleep checks sleep mode: healthy, and `docker stop` ends it at once
// (SIGTERM handled, not the SIGKILL after the 10 s grace) with exit code 0.
func testSleep(t *testing.T, d docker, img builtImage) {
	admin := testkit.FreePort(t)
	name := run(t, d, img, nil, "MODE=sleep", "ADMIN_PORT="+itoa(admin))
	waitHealthy(t, d, name)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if code, out, err := d.exitCode(ctx, "exec", name, "sidecar", "healthcheck"); err != nil || code != 0 {
		t.Errorf("docker exec sidecar healthcheck in sleep mode: exit %d, %v: %s", code, err, out)
	}
	took, exit := stop(t, d, name, 10)
	t.Logf("docker stop in sleep mode took %v, exit code %d", took.Round(time.Millisecond), exit)
	if took >= 5*time.Second {
		t.Errorf("docker stop took %v: the sidecar ignored SIGTERM until the SIGKILL", took)
	}
	if exit != 0 {
		t.Errorf("exit code after docker stop = %d, want 0", exit)
	}
}

// testBadEnv checks that a bad configuration stops the container with exit
// code 2 and a log line per problem naming the variable and its value.
func testBadEnv(t *testing.T, d docker, img builtImage) {
	for _, tc := range []struct {
		name string
		env  []string
		want [][]string // per problem: fragments expected together on one log line
	}{
		{"TARGET_PORT not a number", []string{"MODE=proxy", "TARGET_HOST=127.0.0.1", "TARGET_PORT=notaport"},
			[][]string{{"TARGET_PORT", "notaport"}}},
		{"unknown MODE", []string{"MODE=sideways"}, [][]string{{"MODE", "sideways"}}},
		{"TARGET_HOST missing", []string{"MODE=proxy", "TARGET_PORT=3306"}, [][]string{{"TARGET_HOST"}}},
		{"LOG_LEVEL unknown", []string{"MODE=sleep", "LOG_LEVEL=loud"}, [][]string{{"LOG_LEVEL", "loud"}}},
		{"all problems listed", []string{"MODE=proxy", "TARGET_HOST=127.0.0.1", "TARGET_PORT=99999", "DRAIN_TIMEOUT=soon"},
			[][]string{{"TARGET_PORT", "99999"}, {"DRAIN_TIMEOUT", "soon"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := containerName(t)
			d.removeOnCleanup(t, name)
			args := []string{"run", "--name", name, "--network", "host",
				"-e", "LISTEN_ADDR=127.0.0.1", "-e", "LISTEN_PORT=" + itoa(testkit.FreePort(t)), "-e", "ADMIN_PORT=" + itoa(testkit.FreePort(t))}
			for _, e := range tc.env {
				args = append(args, "-e", e)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, _, err := d.exitCode(ctx, append(args, img.ref)...); err != nil {
				t.Fatal(err)
			}
			if exit := d.inspect(t, "{{.State.ExitCode}}", name); exit != "2" {
				t.Errorf("exit code %s, want 2", exit)
			}
			logs, err := d.combined(ctx, "logs", name)
			if err != nil {
				t.Fatalf("docker logs: %v", err)
			}
			for _, frags := range tc.want {
				if !lineWithAll(logs, frags) {
					t.Errorf("docker logs lack a line naming %q:\n%s", frags, logs)
				}
			}
		})
	}
}

func lineWithAll(text string, frags []string) bool {
	for _, l := range strings.Split(text, "\n") {
		all := true
		for _, f := range frags {
			all = all && strings.Contains(l, f)
		}
		if all {
			return true
		}
	}
	return false
}
