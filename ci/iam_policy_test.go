package ci

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/ci/ecr/ecrtest"
)

// policyActions reads the actions of the permissions policy in
// docs/pipeline.md (the JSON block after "Attach this permissions policy").
func policyActions(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("../docs/pipeline.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "Attach this permissions policy")
	if !ok {
		t.Fatal("docs/pipeline.md has no permissions policy")
	}
	_, rest, _ = strings.Cut(rest, "```json\n")
	block, _, _ := strings.Cut(rest, "```")
	var policy struct {
		Statement []struct {
			Action json.RawMessage
		}
	}
	if err := json.Unmarshal([]byte(block), &policy); err != nil {
		t.Fatalf("the documented policy is not JSON: %v\n%s", err, block)
	}
	var actions []string
	for _, st := range policy.Statement {
		var list []string
		if err := json.Unmarshal(st.Action, &list); err != nil {
			var one string
			if err := json.Unmarshal(st.Action, &one); err != nil {
				t.Fatalf("Action %s", st.Action)
			}
			list = []string{one}
		}
		actions = append(actions, list...)
	}
	return actions
}

// Every ECR API operation a push makes is in the documented policy: a
// fresh repository (created, pushed, gated, promoted with a version
// tag) and a reused candidate without a scan (StartImageScan). Layer
// uploads go to the registry, not the API, and are not recorded here.
func TestDocumentedPolicyCoversThePushOperations(t *testing.T) {
	t.Parallel()
	actions := policyActions(t)
	for _, enhanced := range []string{"inspector2:ListFindings", "inspector2:ListCoverage"} {
		if !slices.Contains(actions, enhanced) {
			t.Errorf("policy lacks %s, which DescribeImageScanFindings needs under enhanced scanning", enhanced)
		}
	}
	var ops []string
	t.Run("fresh repository", func(t *testing.T) {
		ecrSrv := pushEnv(t, nil)
		fe := newLightPushEngine(t, ecrSrv, nil)
		fe.runner.scanPoll, fe.runner.scanProgress = 5*time.Millisecond, time.Hour
		gitTag(t, fe.dir, "v1.0.0")
		err := fe.runner.Push(testCtx(t))
		ops = append(ops, ecrSrv.Operations()...)
		if err != nil {
			t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
		}
	})
	t.Run("reused candidate without a scan", func(t *testing.T) {
		immutable := true
		ecrSrv := pushEnv(t, &immutable)
		ecrSrv.SetScanning("sidecar", "BASIC", "SCAN_ON_PUSH")
		fe := newLightPushEngine(t, ecrSrv, nil)
		fe.runner.scanPoll, fe.runner.scanProgress = 5*time.Millisecond, time.Hour
		ecrSrv.PushImage("sidecar", gitHead(t, fe.dir)[:12], fe.topType, fe.top)
		for _, d := range fe.platformDigests(t) {
			ecrSrv.ScriptScan(d, ecrtest.ScanState{})
		}
		if err := fe.runner.Push(testCtx(t)); err != nil {
			t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
		}
		ops = append(ops, ecrSrv.Operations()...)
	})
	t.Run("latest to move", func(t *testing.T) {
		mutable := false
		ecrSrv := pushEnv(t, &mutable)
		ecrSrv.SetTag("sidecar", "latest", "sha256:"+strings.Repeat("1", 64))
		fe := newLightPushEngine(t, ecrSrv, map[string]string{"PUSH_LATEST": "true"})
		gitTag(t, fe.dir, "v1.1.0")
		if err := fe.runner.Push(testCtx(t)); err != nil {
			t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
		}
		ops = append(ops, ecrSrv.Operations()...)
	})
	for _, want := range []string{"CreateRepository", "PutImage", "StartImageScan", "DescribeImageScanFindings", "DescribeImages"} {
		if !slices.Contains(ops, want) {
			t.Errorf("the pushes did not call %s (the scenarios no longer cover it): %v", want, ops)
		}
	}
	slices.Sort(ops)
	for _, op := range slices.Compact(ops) {
		if !slices.Contains(actions, "ecr:"+op) {
			t.Errorf("the push calls ecr:%s, which the documented policy (docs/pipeline.md) lacks", op)
		}
	}
}
