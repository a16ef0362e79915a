package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"dagger.io/dagger"

	"github.com/example/sidecar/ci/daggertest"
	"github.com/example/sidecar/internal/testkit"
)

// A session that accepts but never answers is given up at the bound, with
// a line every Every meanwhile, and the error names the session the
// variables lead to (never a secret in its address) and what to do.
func TestPlatformGivesUpOnASilentSession(t *testing.T) {
	t.Parallel()
	silent := testkit.Serve(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	port := strconv.Itoa(silent.Addr().(*net.TCPAddr).Port)
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"dagger run session", map[string]string{"DAGGER_SESSION_PORT": port, "DAGGER_SESSION_TOKEN": "x"},
			[]string{"the session at DAGGER_SESSION_PORT=" + port + " accepted the connection", "unset DAGGER_SESSION_PORT and DAGGER_SESSION_TOKEN"}},
		{"remote engine", map[string]string{"_EXPERIMENTAL_DAGGER_RUNNER_HOST": "tcp://u:SECRET1@127.0.0.1:1234?token=SECRET2"},
			[]string{"the engine at _EXPERIMENTAL_DAGGER_RUNNER_HOST=tcp://xxxxx@127.0.0.1:1234?xxxxx accepted", "look at its log"}},
		{"engine the CLI started", nil, []string{"the engine session the Dagger CLI opened accepted", "docker logs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := dagger.Connect(testCtx(t), dagger.WithConn(daggertest.ConnTo(silent.Addr().(*net.TCPAddr).Port, "x")))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var lines []string
			env := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			_, err = Platform(testCtx(t), c, env, Wait{Report: func(l string) { lines = append(lines, l) }, Bound: time.Second, Every: 100 * time.Millisecond})
			var ee *Error
			if !errors.As(err, &ee) || !strings.Contains(err.Error(), "did not answer its first query (the engine's platform) within 1s") {
				t.Fatalf("err = %v, want an *Error giving the bound", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			// How many lines a loaded machine's ticker gives in the bound
			// is its scheduler's; the pace is progress.Every's, tested
			// there. Here: the wait shows progress, each line as it should.
			if len(lines) == 0 {
				t.Error("no progress line during the wait")
			}
			for _, l := range lines {
				if !strings.HasPrefix(l, "still waiting for ") || !strings.HasSuffix(l, "giving up after 1s") {
					t.Errorf("progress line %q, want \"still waiting for …; giving up after 1s\"", l)
				}
			}
			if all := err.Error() + strings.Join(lines, "\n"); strings.Contains(all, "SECRET") {
				t.Errorf("a secret of the address was printed: %s", all)
			}
		})
	}
}

// The caller's cancellation is not the bound: the SDK's error is returned
// as it is, for the caller to report (Ctrl-C).
func TestPlatformCancelledIsNotTheBound(t *testing.T) {
	t.Parallel()
	silent := testkit.Serve(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	c, err := dagger.Connect(testCtx(t), dagger.WithConn(daggertest.ConnTo(silent.Addr().(*net.TCPAddr).Port, "x")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	defer cancel()
	_, err = Platform(ctx, c, func(string) (string, bool) { return "", false }, Wait{Report: func(string) {}, Bound: time.Minute})
	var ee *Error
	if err == nil || errors.As(err, &ee) {
		t.Errorf("err = %v, want the SDK's error, not an *Error", err)
	}
}

// The docs state the wait's bound and pace that the code applies.
func TestDocsStateTheAnswerWait(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{"../../docs/pipeline.md", "../../docs/troubleshooting.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			fmt.Sprintf("at most %d s", int(AnswerBound.Seconds())),
			fmt.Sprintf("every %d s", int(AnswerProgress.Seconds())),
		} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s does not say %q", doc, want)
			}
		}
	}
}
