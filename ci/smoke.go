package ci

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"dagger.io/dagger"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/progress"
	"github.com/example/sidecar/ci/secrets"
	"github.com/example/sidecar/ci/smokesql"
)

// Smoke-test wiring. The sidecar forwards its port to the MySQL service;
// the client reaches MySQL only through the sidecar.
const (
	mysqlAlias   = "mysql"   // MySQL service hostname, seen by the sidecar
	sidecarAlias = "sidecar" // sidecar service hostname, seen by the client
	// The image's own EXPOSE port, where the sidecar service listens. The
	// engine does not dial it: an image with a HEALTHCHECK is ready when
	// that passes (core/service.go, Service.startContainer); only services
	// without one, like MySQL, are probed on their exposed ports.
	sidecarPort = 8080
	// sidecarBin is where the Dockerfile puts the binary.
	sidecarBin = "/usr/local/bin/sidecar"
	clientCnf  = "/run/secrets/smoke-client.cnf"
	sleepUpFor = 3 // seconds sleep mode must stay up
)

// clientScript waits (bounded) until MySQL answers through the sidecar,
// then runs the smoke SQL. The password comes from a mounted option file
// (a Dagger secret), never from the command line.
// MariaDB images (MYSQL_IMAGE=mariadb:11) name the client mariadb. The
// SMOKE_HOST/SMOKE_PORT/SMOKE_CNF overrides exist for the test that runs
// this script on the host against the real binary; the pipeline uses the
// defaults.
func clientScript() string {
	base := fmt.Sprintf(`"$client" --defaults-extra-file="${SMOKE_CNF:-%s}" -h "${SMOKE_HOST:-%s}" -P "${SMOKE_PORT:-%d}"`, clientCnf, sidecarAlias, sidecarPort)
	return fmt.Sprintf(`client=$(command -v mysql || command -v mariadb) || { echo "no mysql or mariadb client in MYSQL_IMAGE" >&2; exit 1; }
i=0
until %[1]s -e 'SELECT 1' >/dev/null 2>&1; do
  i=$((i+1))
  if [ "$i" -ge 90 ]; then echo "MySQL not reachable through the sidecar after 90 tries; last attempt:" >&2; %[1]s -e 'SELECT 1'; exit 1; fi
  sleep 1
done
exec %[1]s %[2]s -e "$SMOKE_SQL"`, base, strings.Join(smokesql.ClientArgs(), " "))
}

// sidecarVar names the binary (where the Dockerfile puts it); tests of
// the scripts point SIDECAR at a stand-in.
const sidecarVar = `SIDECAR="${SIDECAR:-` + sidecarBin + `}"
`

// runningCheckScript starts the sidecar in the background inside its own
// image and checks it from the same container: the admin port is bound to
// 127.0.0.1, so `sidecar healthcheck` must run where the sidecar runs.
func runningCheckScript() string {
	return sidecarVar + `echo "uid=$(id -u)"
"$SIDECAR" & pid=$!
i=0
until "$SIDECAR" healthcheck; do
  i=$((i+1))
  if ! kill -0 "$pid" 2>/dev/null; then wait "$pid"; echo "sidecar exited with $? before becoming healthy" >&2; exit 1; fi
  if [ "$i" -ge 30 ]; then echo "sidecar healthcheck still failing after 30 tries" >&2; kill "$pid"; exit 1; fi
  sleep 1
done
echo healthcheck=ok
kill -TERM "$pid"; wait "$pid"; echo "exit=$?"`
}

// sleepCheckScript runs sleep mode and checks it stays up, reports
// healthy, and exits 0 on SIGTERM.
func sleepCheckScript() string {
	return sidecarVar + fmt.Sprintf(`"$SIDECAR" & pid=$!
sleep %d
if ! kill -0 "$pid" 2>/dev/null; then wait "$pid"; echo "sleep mode exited with $? within %ds" >&2; exit 1; fi
echo stayed-up
"$SIDECAR" healthcheck && echo healthcheck=ok
kill -TERM "$pid"; wait "$pid"; echo "exit=$?"`, sleepUpFor, sleepUpFor)
}

// smokeHealthcheck is the image's HEALTHCHECK command (the Dockerfile's;
// a test ties them).
func smokeHealthcheck() []string { return []string{sidecarBin, "healthcheck"} }

// smokeRun is one smoke test's fixtures: the image variant it runs, the
// secrets, and the run id that makes every exec fresh.
type smokeRun struct {
	native   *dagger.Container
	rootPW   *dagger.Secret
	cnf      *dagger.Secret
	runID    string // fresh exec every run: a smoke test must not be a cache hit
	platform dagger.Platform
}

// smoke runs the image (host platform) against a throwaway MySQL:
// a SQL round trip through the sidecar service, then the checks of a
// running sidecar (UID 1000, healthcheck) and of sleep mode.
func (s *run) smoke(ctx context.Context, client *dagger.Client, img *Image) error {
	// Run the variant native to the engine, which is not this machine's
	// platform when a shared remote engine is used.
	native, ok := img.variant(img.Engine)
	if !ok {
		return fmt.Errorf("the engine runs %s, which PLATFORMS (%v) does not build: add it so the smoke test runs natively", img.Engine, img.Platforms)
	}
	secretFiles, err := secrets.NewFiles()
	if err != nil {
		return err
	}
	defer secretFiles.Close()
	password := secrets.RandomHex(24)
	s.scrub.Add(password) // in the step's error, whichever path it takes (runStepList)
	sr := &smokeRun{native: native, runID: secrets.RandomHex(8), platform: img.Engine}
	if sr.rootPW, err = secretFiles.Secret(client, "mysql-root-password", password); err != nil {
		return err
	}
	if sr.cnf, err = secretFiles.Secret(client, "smoke-client.cnf", "[client]\nuser=root\npassword="+password+"\n"); err != nil {
		return err
	}
	if err := s.smokeSQL(ctx, client, sr); err != nil {
		return err
	}
	s.step("%s: running sidecar: UID and healthcheck", s.target)
	if err := sr.checkIn(ctx, proxyEnv(native, sidecarPort+1), smokeCheck{script: runningCheckScript(),
		execWhat: "healthcheck inside the running sidecar", outWhat: "running sidecar", want: []string{"uid=1000", "healthcheck=ok", "exit=0"}}); err != nil {
		return err
	}
	s.step("%s: sleep mode stays up for %ds", s.target, sleepUpFor)
	if err := sr.checkIn(ctx, native.WithEnvVariable("MODE", "sleep"), smokeCheck{script: sleepCheckScript(),
		execWhat: "sleep mode", outWhat: "sleep mode", want: []string{"stayed-up", "healthcheck=ok", "exit=0"}}); err != nil {
		return err
	}
	s.step("%s: smoke test passed", s.target)
	return nil
}

// proxyEnv configures c as a sidecar in proxy mode in front of the MySQL
// service. The sidecar resolves and dials TARGET_HOST per connection, so
// a sidecar that is never connected to needs no database bound.
func proxyEnv(c *dagger.Container, listen int) *dagger.Container {
	return c.WithEnvVariable("MODE", "proxy").
		WithEnvVariable("TARGET_HOST", mysqlAlias).
		WithEnvVariable("TARGET_PORT", "3306").
		WithEnvVariable("LISTEN_PORT", fmt.Sprint(listen)).
		WithEnvVariable("LOG_LEVEL", "debug")
}

// smokeSQL makes the SQL round trip: MySQL as a service, the sidecar as a
// service in front of it, and the mysql client through the sidecar.
func (s *run) smokeSQL(ctx context.Context, client *dagger.Client, sr *smokeRun) error {
	s.step("%s: starting MySQL (%s) and the %s sidecar in proxy mode", s.target, config.Shown("MYSQL_IMAGE", s.Config.MySQLImage), sr.platform)
	mysql := client.Container().From(s.Config.MySQLImage).
		WithSecretVariable("MYSQL_ROOT_PASSWORD", sr.rootPW).
		WithEnvVariable("SMOKE_RUN", sr.runID).
		WithExposedPort(3306).
		AsService(dagger.ContainerAsServiceOpts{UseEntrypoint: true})
	// The engine runs the image's HEALTHCHECK as the service's readiness
	// check, waiting its interval (10s) between tries; the sidecar is not
	// up at the first one, so the same check at a 1s interval makes the
	// smoke test wait about a second. The image keeps its own HEALTHCHECK.
	sidecar := proxyEnv(sr.native, sidecarPort).
		WithServiceBinding(mysqlAlias, mysql).
		WithExposedPort(sidecarPort).
		WithDockerHealthcheck(smokeHealthcheck(), dagger.ContainerWithDockerHealthcheckOpts{
			Interval: "1s", StartPeriod: "30s", Retries: 3,
		}).
		AsService(dagger.ContainerAsServiceOpts{UseEntrypoint: true})

	s.step("%s: SQL round trip through the sidecar", s.target)
	var out string
	err := s.roundTripWatched(ctx, func(ctx context.Context) (err error) {
		out, err = client.Container().From(s.Config.MySQLImage).
			WithServiceBinding(sidecarAlias, sidecar).
			WithMountedSecret(clientCnf, sr.cnf).
			WithEnvVariable("SMOKE_SQL", smokesql.SQL).
			WithEnvVariable("SMOKE_RUN", sr.runID).
			WithExec([]string{"sh", "-c", clientScript()}).
			Stdout(ctx)
		return err
	})
	var late *roundTripTimeout
	if errors.As(err, &late) {
		return fmt.Errorf("smoke test failed (nothing pushed): SQL round trip through the sidecar: not done within %s: "+
			"MySQL (MYSQL_IMAGE=%s) did not start or open port 3306, or the sidecar did not get healthy; the engine's log above shows which: %w",
			late.bound, config.Shown("MYSQL_IMAGE", s.Config.MySQLImage), config.ShownErr("MYSQL_IMAGE", s.Config.MySQLImage, late.err))
	}
	if err != nil {
		// The engine's error may quote MYSQL_IMAGE, as a failed pull does.
		return smokeFailure("SQL round trip through the sidecar", config.ShownErr("MYSQL_IMAGE", s.Config.MySQLImage, err))
	}
	// Masked before Check cuts it short, which could leave part of the
	// password unmasked.
	if err := smokesql.Check(s.scrub.String(out)); err != nil {
		return fmt.Errorf("smoke test failed (nothing pushed): %w", err)
	}
	return nil
}

// SmokeSQLBound bounds the SQL round trip: the MYSQL_IMAGE pull, MySQL's
// start, the sidecar's healthcheck and the client's tries. The engine
// alone would wait 15 minutes for a MySQL port that never opens
// (core/healthcheck.go, portHealthChecker: backoff's MaxElapsedTime);
// MySQL 8.4's first start takes well under a minute, and a first pull
// of the image over a slow link may take minutes. docs/pipeline.md
// states it.
const SmokeSQLBound = 10 * time.Minute

// SmokeProgress is how often the round trip's wait says it still waits.
const SmokeProgress = 10 * time.Second

// roundTripTimeout is a round trip that ran out of its bound.
type roundTripTimeout struct {
	bound time.Duration
	err   error
}

func (e *roundTripTimeout) Error() string { return e.err.Error() }
func (e *roundTripTimeout) Unwrap() error { return e.err }

// roundTripWatched runs fn, the SQL round trip, within its bound, with a
// progress line every smokeProgress: the engine's own log may show
// nothing while it waits for a service's port.
func (s *run) roundTripWatched(ctx context.Context, fn func(context.Context) error) error {
	bound, every := cmp.Or(s.smokeBound, SmokeSQLBound), cmp.Or(s.smokeProgress, SmokeProgress)
	timedOut, err := progress.Bounded(ctx, bound, every, func(waited time.Duration) {
		s.step("%s: still waiting for the SQL round trip through the sidecar (MySQL and the sidecar starting, then the client): %s so far; giving up after %s",
			s.target, waited.Round(time.Second), bound)
	}, fn)
	if timedOut {
		return &roundTripTimeout{bound: bound, err: err}
	}
	return err
}

// smokeCheck is a script run in the image and the lines it must print;
// execWhat and outWhat name the check in the error for a failed exec and
// for missing lines.
type smokeCheck struct {
	script, execWhat, outWhat string
	want                      []string
}

// checkIn runs the check's script in c, a fresh exec each run.
func (sr *smokeRun) checkIn(ctx context.Context, c *dagger.Container, check smokeCheck) error {
	out, err := c.WithEnvVariable("SMOKE_RUN", sr.runID).
		WithExec([]string{"sh", "-c", check.script}).
		Stdout(ctx)
	if err != nil {
		return smokeFailure(check.execWhat, err)
	}
	if err := expectLines(out, check.want...); err != nil {
		return fmt.Errorf("smoke test failed (nothing pushed): %s: %w", check.outWhat, err)
	}
	return nil
}

// expectLines checks that each wanted line appears in out.
func expectLines(out string, want ...string) error {
	lines := strings.Split(out, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	for _, w := range want {
		found := false
		for _, l := range lines {
			found = found || l == w
		}
		if !found {
			return fmt.Errorf("want line %q in the output, got:\n%s", w, indent(out))
		}
	}
	return nil
}

// smokeFailure reports a failed step with the container's output (the
// password masked by runStepList, as in every step's error).
func smokeFailure(what string, err error) error {
	var ee *dagger.ExecError
	if errors.As(err, &ee) {
		return fmt.Errorf("smoke test failed (nothing pushed): %s: exit code %d\n--- stdout ---\n%s--- stderr ---\n%s",
			what, ee.ExitCode, indent(ee.Stdout), indent(ee.Stderr))
	}
	return fmt.Errorf("smoke test failed (nothing pushed): %s: %w", what, err)
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "  (empty)\n"
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ") + "\n"
}

func stepSmoke() Step {
	return Step{Name: "smoke", Doc: "runs the engine platform's image in proxy mode in front of a throwaway MySQL (MYSQL_IMAGE) and makes a SQL round trip through it, then checks UID 1000, sidecar healthcheck inside a running sidecar, and that sleep mode stays up.",
		do: func(ctx context.Context, s *run) error { return s.smoke(ctx, s.client, s.img) }}
}
