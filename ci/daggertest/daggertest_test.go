package daggertest_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"dagger.io/dagger"
	"dagger.io/dagger/engineconn"

	"github.com/example/sidecar/ci/daggertest"
)

// connect serves a session and connects to it through Conn; the test
// runs in parallel with the others.
func connect(t *testing.T) (*daggertest.Server, *dagger.Client, context.Context) {
	t.Helper()
	srv := daggertest.Serve(t)
	return srv, dial(t, srv.Conn()), testCtx(t)
}

// connectEnv serves a session and connects to it as the SDK finds it,
// through DAGGER_SESSION_PORT and DAGGER_SESSION_TOKEN (Start).
func connectEnv(t *testing.T) (*daggertest.Server, *dagger.Client, context.Context) {
	t.Helper()
	srv := daggertest.Start(t)
	return srv, dial(t), testCtx(t)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // safety net
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, conn ...engineconn.EngineConn) *dagger.Client {
	t.Helper()
	var opts []dagger.ClientOpt
	for _, c := range conn {
		opts = append(opts, dagger.WithConn(c))
	}
	c, err := dagger.Connect(testCtx(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRecordsChainsAndResolvesIDs(t *testing.T) {
	t.Parallel()
	srv, c, ctx := connect(t)
	amd := c.Container(dagger.ContainerOpts{Platform: "linux/amd64"}).From("alpine:3.22")
	arm := c.Container(dagger.ContainerOpts{Platform: "linux/arm64"}).From("alpine:3.22")
	ref, err := c.Container().Publish(ctx, "registry.example/x:1", dagger.ContainerPublishOpts{PlatformVariants: []*dagger.Container{amd, arm}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ref, "registry.example/x:1@sha256:") {
		t.Errorf("publish answered %q", ref)
	}
	pubs := srv.Select(func(q daggertest.Query) bool { return q.Leaf().Field == "publish" })
	if len(pubs) != 1 {
		t.Fatalf("recorded %d publishes", len(pubs))
	}
	ex := srv.Expand(pubs[0])
	for _, want := range []string{`container.publish(address:"registry.example/x:1"`, `{container(platform:"linux/amd64").from(address:"alpine:3.22")}`, `{container(platform:"linux/arm64").from(address:"alpine:3.22")}`} {
		if !strings.Contains(ex, want) {
			t.Errorf("expanded publish lacks %s:\n%s", want, ex)
		}
	}
	// The ID queries came first, the publish last.
	qs := srv.Queries()
	if qs[len(qs)-1].Leaf().Field != "publish" || qs[0].Leaf().Field != "id" {
		t.Errorf("order: %v", qs)
	}
}

func TestExecFailureBecomesExecError(t *testing.T) {
	t.Parallel()
	srv, c, ctx := connect(t)
	srv.Handle("stdout", func(q daggertest.Query) (any, error) {
		return nil, daggertest.ExecFailure([]string{"sh", "-c", "exit 7"}, 7, "out\n", "err\n")
	})
	_, err := c.Container().From("alpine").WithExec([]string{"sh", "-c", "exit 7"}).Stdout(ctx)
	var ee *dagger.ExecError
	if !errors.As(err, &ee) {
		t.Fatalf("err = %T %v, want *dagger.ExecError", err, err)
	}
	// Trimmed, and the message is the engine's (core/exec_error.go).
	if ee.ExitCode != 7 || ee.Stdout != "out" || ee.Stderr != "err" || strings.Join(ee.Cmd, " ") != "sh -c exit 7" {
		t.Errorf("ExecError = %+v", ee)
	}
	if !regexp.MustCompile(`exit code: 7 \[traceparent:00-[0-9a-f]{32}-[0-9a-f]{16}-01\]`).MatchString(err.Error()) {
		t.Errorf("message %q, want exit code: 7 [traceparent:…]", err)
	}
}

func TestRejectsWrongToken(t *testing.T) {
	_, c, ctx := connectEnv(t)
	t.Setenv("DAGGER_SESSION_TOKEN", "wrong")
	c2, err := dagger.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Container().From("alpine").ID(ctx); err == nil {
		t.Error("a query with the wrong session token was answered")
	}
	if _, err := c.Container().From("alpine").ID(ctx); err != nil {
		t.Errorf("right token refused: %v", err)
	}
}
