package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
)

// startupEnv is an iam-mode sidecar's environment that never dials its
// target (no app connects), on free loopback ports, plus extra.
func startupEnv(t *testing.T, extra map[string]string) map[string]string {
	env := map[string]string{
		"TARGET_HOST": "127.0.0.1", "TARGET_PORT": strconv.Itoa(testkit.RefusedPort(t)),
		"LISTEN_ADDR": "127.0.0.1", "LISTEN_PORT": strconv.Itoa(testkit.FreePort(t)), "ADMIN_PORT": strconv.Itoa(testkit.FreePort(t)),
		"TARGET_TLS": "verify-identity", "TARGET_SERVER_NAME": "db.cluster-abc.us-east-1.rds.amazonaws.com",
		"TARGET_AUTH": "iam", "AWS_REGION": "us-east-1",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// waitLine waits for a JSON log line whose msg has prefix and returns it
// with the lines before it.
func waitLine(t *testing.T, logs *testkit.LockedBuffer, prefix string) (line map[string]any, before []map[string]any) {
	t.Helper()
	deadline := time.Now().Add(safety)
	for {
		lines := jsonLines(t, logs.String())
		for i, l := range lines {
			if msg, _ := l["msg"].(string); strings.HasPrefix(msg, prefix) {
				return l, lines[:i]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line %q within %v:\n%s", prefix, safety, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A credentials endpoint that accepts and never answers: the log says at
// once what start-up waits for, then shows progress while the request
// hangs (the SDK's retries make one attempt last about 15 s), all without
// the endpoint's path (the task's credential id) or the agent's token;
// /readyz names the wait, and SIGTERM during it ends the run cleanly.
func TestIAMStartupWaitIsShown(t *testing.T) {
	t.Parallel()
	const agentToken = "ecs-agent-authorization-token"
	const credentialID = "4f0c-task-credential-id"
	var asked atomic.Int64
	creds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		<-r.Context().Done() // never answers
	}))
	defer creds.Close()
	env := startupEnv(t, map[string]string{
		"AWS_CONTAINER_CREDENTIALS_FULL_URI": creds.URL + "/v2/credentials/" + credentialID, "AWS_CONTAINER_AUTHORIZATION_TOKEN": agentToken})
	cancel, done, logs := runAsync(t, env)

	first, before := waitLine(t, logs, "getting AWS credentials for IAM authentication")
	if src, _ := first["credential_source"].(string); !strings.Contains(src, "AWS_CONTAINER_CREDENTIALS_FULL_URI") {
		t.Errorf("the first line names no credential source: %v", first)
	}
	for _, l := range before {
		if strings.Contains(l["msg"].(string), "not ready, retrying") {
			t.Fatalf("a failed attempt was logged before the wait was: %v", l)
		}
	}
	progress, before := waitLine(t, logs, "still waiting for AWS credentials")
	for _, l := range before {
		if strings.Contains(l["msg"].(string), "not ready, retrying") {
			t.Fatalf("the first attempt ended before any progress line: %v", l)
		}
	}
	if progress["level"] != "WARN" || progress["credential_source"] == nil || progress["waited_ms"] == nil {
		t.Errorf("progress line %v; want WARN with credential_source and waited_ms", progress)
	}
	if asked.Load() == 0 {
		t.Fatal("the endpoint was never asked")
	}
	resp, err := http.Get("http://127.0.0.1:" + env["ADMIN_PORT"] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "waiting for AWS credentials from container credentials endpoint") {
		t.Errorf("/readyz: %d %q; want 503 naming the wait", resp.StatusCode, body)
	}
	n := len(jsonLines(t, logs.String()))
	stopClean(t, cancel, done, logs)
	lines := jsonLines(t, logs.String())
	if last := lines[len(lines)-1]["msg"]; last != "stopped" {
		t.Errorf("last line %q after SIGTERM, want \"stopped\"", last)
	}
	for _, l := range lines[n:] {
		if strings.Contains(l["msg"].(string), "not ready, retrying") || l["level"] == "ERROR" {
			t.Errorf("SIGTERM during the wait logged %v", l)
		}
	}
	if found := secretsIn(logs.String()+string(body), map[string]string{"credential id": credentialID, "agent token": agentToken}); len(found) > 0 {
		t.Fatalf("the logs or /readyz show %v", found)
	}
}

// A role that is no role ARN stops the start with exit 2 and a line
// naming the variable, its value and what is accepted; a token file that
// is not there yet does not (a mount may fill it later).
func TestIAMWebIdentityAtStart(t *testing.T) {
	env := startupEnv(t, map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": t.TempDir() + "/token", "AWS_ROLE_ARN": "orders-task"})
	var stderr testkit.LockedBuffer
	ctx, stop := context.WithTimeout(context.Background(), safety) // a start that is not refused ends here
	defer stop()
	if code := run(ctx, nil, environ(env), io.Discard, &stderr); code != exitUsage {
		t.Fatalf("exit %d, want %d:\n%s", code, exitUsage, stderr.String())
	}
	found := false
	for _, l := range jsonLines(t, stderr.String()) {
		if l["variable"] == "AWS_ROLE_ARN" && l["value"] == "orders-task" && strings.Contains(fmt.Sprint(l["accepted"]), "arn:<partition>:iam::<12-digit account>:role/") {
			found = true
		}
	}
	if !found {
		t.Errorf("no line naming AWS_ROLE_ARN, its value and what is accepted:\n%s", stderr.String())
	}

	env["AWS_ROLE_ARN"] = "arn:aws:iam::123456789012:role/orders-task"
	cancel, done, logs := runAsync(t, env)
	waitLine(t, logs, "getting AWS credentials for IAM authentication")
	stopClean(t, cancel, done, logs)
}
