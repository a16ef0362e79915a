package engine

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeDaggerCLI is a Dagger CLI that never brings up a session, as the
// real one waits for an engine container that died; it ends when the SDK
// closes its stdin (and keeps stdout open until then, writing nothing).
func fakeDaggerCLI(t *testing.T) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dagger")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec /bin/cat\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("_EXPERIMENTAL_DAGGER_CLI_BIN", bin)
}

// engineDocker is a docker CLI whose daemon answers, listing one engine
// container in the given `docker inspect` state (NOW is the current time).
func engineDocker(t *testing.T, inspect string) {
	t.Helper()
	fakeDockerCLI(t, `case "$1" in
version) echo 20.10.99-fake ;;
ps) echo dagger-engine-v0.21.8 ;;
inspect) NOW=$(/bin/date -u +%Y-%m-%dT%H:%M:%S.000000000Z); echo "`+inspect+`" ;;
logs) echo 'time="…" level=info msg="starting engine"'; echo 'time="…" level=fatal msg="failed to create snapshotter: overlay not supported"' >&2 ;;
*) exit 1 ;;
esac`)
}

// An engine container that dies while the CLI starts it fails Connect
// within seconds with its last log lines; one that died before this run
// (an old leftover) is not taken for it.
func TestConnectSeesTheEngineContainerFail(t *testing.T) {
	for _, tc := range []struct {
		name, inspect string
		want          []string // nil: not detected
	}{
		{"exited", "/dagger-engine-v0.21.8|exited|1|$NOW|", []string{"engine container dagger-engine-v0.21.8 exited with code 1",
			`level=info msg="starting engine" | time="…" level=fatal msg="failed to create snapshotter: overlay not supported"`,
			"docker ps -a --filter name=dagger-engine-", "docker logs dagger-engine-v0.21.8"}},
		{"could not start", "/dagger-engine-v0.21.8|created|0|0001-01-01T00:00:00Z|OCI runtime create failed: privileged mode not permitted",
			[]string{"could not start (OCI runtime create failed: privileged mode not permitted)"}},
		{"old leftover", "/dagger-engine-v0.21.8|exited|1|2020-01-01T00:00:00.000000000Z|", nil},
		{"running", "/dagger-engine-v0.21.8|running|0|0001-01-01T00:00:00Z|", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noEngineEnv(t)
			engineDocker(t, tc.inspect)
			fakeDaggerCLI(t)
			wait := 20 * time.Second
			if tc.want == nil {
				wait = 2500 * time.Millisecond // two polls
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			start := time.Now()
			c, err := Connect(ctx, io.Discard)
			if err == nil {
				c.Close()
				t.Fatal("connected to no engine")
			}
			var ee *Error
			if !errors.As(err, &ee) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line naming Dagger", err)
			}
			if tc.want == nil {
				if strings.Contains(err.Error(), "engine container") {
					t.Errorf("took %s for a failure of this run: %v", tc.name, err)
				}
				return
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			t.Logf("reported after %s", time.Since(start).Round(100*time.Millisecond))
		})
	}
}
