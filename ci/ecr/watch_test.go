package ecr_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/ecr/ecrtest"
	"github.com/example/sidecar/internal/testkit"
)

// blackhole accepts connections and never answers, like a path that drops
// packets after the handshake.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// A wait on AWS is never silent: it says what it waits for while it waits,
// and ends in an error naming the call and the bound.
func TestWaitsAreNeverSilent(t *testing.T) {
	for _, tc := range []struct {
		name, waitsFor, err string
		setup               func(t *testing.T, o *ecr.Options, hole string)
	}{
		{"ECR API call", "still waiting for ECR (ecr:GetAuthorizationToken) at http://", "no answer from ECR (ecr:GetAuthorizationToken)",
			func(t *testing.T, o *ecr.Options, hole string) {
				t.Setenv("AWS_ACCESS_KEY_ID", "AKIDSTANDIN")
				t.Setenv("AWS_SECRET_ACCESS_KEY", "standin-secret")
				o.BaseEndpoint = "http://" + hole
			}},
		{"ECR API call at an endpoint with a password", "still waiting for ECR (ecr:GetAuthorizationToken) at http://xxxxx@127.0.0.1:", "no answer from ECR (ecr:GetAuthorizationToken)",
			func(t *testing.T, o *ecr.Options, hole string) {
				t.Setenv("AWS_ACCESS_KEY_ID", "AKIDSTANDIN")
				t.Setenv("AWS_SECRET_ACCESS_KEY", "standin-secret")
				o.BaseEndpoint = "http://proxyuser:S3CRETPW@" + hole
			}},
		{"credentials", "still waiting for AWS credentials", "AWS credentials not found",
			func(t *testing.T, o *ecr.Options, hole string) {
				t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://"+hole+"/creds")
				o.CredentialsTimeout = 2 * time.Second
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ecrtest.Isolate(t)
			t.Setenv("AWS_REGION", "us-east-2")
			var log testkit.LockedBuffer
			o := defaults()
			o.Log = &log
			o.CallTimeout, o.ProgressEvery = 2*time.Second, 300*time.Millisecond
			tc.setup(t, &o, blackhole(t))
			_, err := ecr.Preflight(ctx(t), o)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want one containing %q", err, tc.err)
			}
			if n := strings.Count(log.String(), tc.waitsFor); n < 3 {
				t.Fatalf("%d progress lines %q in:\n%s", n, tc.waitsFor, log.String())
			}
			if !strings.Contains(log.String(), "giving up after 2s") {
				t.Fatalf("the progress lines do not state the bound:\n%s", log.String())
			}
			if out := log.String() + err.Error(); strings.Contains(out, "S3CRETPW") || strings.Contains(out, "standin-secret") {
				t.Fatalf("a secret is shown:\n%s", out)
			}
		})
	}
}

// Ctrl-C while the credential chain waits says the run was stopped while
// waiting for credentials, not that they were not found (nor lists it as
// a preflight problem to fix, exit code 2's).
func TestCtrlCDuringCredentialsWaitIsNoMissingCredentials(t *testing.T) {
	ecrtest.Isolate(t)
	t.Setenv("AWS_REGION", "us-east-2")
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://"+blackhole(t)+"/creds")
	run, stop := context.WithCancel(ctx(t))
	defer stop()
	o := defaults()
	o.Log = io.Discard
	o.ProgressEvery = 100 * time.Millisecond
	o.Report = func(string) { stop() } // Ctrl-C once the wait is reported
	_, err := ecr.Preflight(run, o)
	var pe *ecr.PreflightError
	if err == nil || strings.Contains(err.Error(), "not found") || errors.As(err, &pe) ||
		!strings.Contains(err.Error(), "stopped waiting for AWS credentials: the run was stopped (Ctrl-C)") {
		t.Fatalf("err = %v; want one saying the wait for AWS credentials was stopped, not that they were not found", err)
	}
}
