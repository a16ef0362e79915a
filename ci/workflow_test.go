package ci

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The verification command docs/pipeline.md gives a security team is the
// one the release job runs on every pushed digest.
func TestDocumentedVerifyCommandIsRun(t *testing.T) {
	t.Parallel()
	wf, err := os.ReadFile("../.github/workflows/pipeline.yml")
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile("../docs/pipeline.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*run: (gh attestation verify .*)$`).FindSubmatch(wf)
	if m == nil {
		t.Fatal("pipeline.yml runs no gh attestation verify")
	}
	cmd := strings.TrimSpace(string(m[1]))
	if !strings.Contains(string(md), "```sh\n"+cmd+"\n```") {
		t.Errorf("docs/pipeline.md does not give the workflow's verification command in a sh block:\n%s", cmd)
	}
}

// Only the job that runs on push may mint an OIDC token or write
// attestations.
func TestWorkflowPermissions(t *testing.T) {
	t.Parallel()
	wf, err := os.ReadFile("../.github/workflows/ci.yml")
	if err != nil {
		t.Fatal(err)
	}
	_, jobs, ok := strings.Cut(string(wf), "\njobs:\n")
	if !ok {
		t.Fatal("ci.yml has no jobs")
	}
	top := strings.Split(string(wf), "\njobs:\n")[0]
	for _, w := range []string{"id-token", "attestations"} {
		if strings.Contains(top, w+":") {
			t.Errorf("ci.yml grants %s at the top level", w)
		}
	}
	parts := regexp.MustCompile(`(?m)^  \w+:\n`).Split(jobs, -1)[1:]
	if len(parts) != 2 {
		t.Fatalf("%d jobs in ci.yml, want check and release", len(parts))
	}
	for _, job := range parts {
		push := strings.Contains(job, "if: github.event_name == 'push'")
		for _, w := range []string{"id-token: write", "attestations: write"} {
			if strings.Contains(job, w) != push {
				t.Errorf("a job (push-only %v) has %s %v:\n%s", push, w, strings.Contains(job, w), job)
			}
		}
	}
	if p, err := os.ReadFile("../.github/workflows/pipeline.yml"); err != nil || strings.Contains(string(p), "permissions:") {
		t.Errorf("pipeline.yml must take its permissions from the calling job (%v)", err)
	}
}

// runnerHas are .ci/run's packages that GitHub's Ubuntu runner image
// already has (its Docker is docker-ce, which docker.io would conflict with;
// iptables and iproute2 are in every Ubuntu image; jq is in the runner's
// tool list).
var runnerHas = []string{"git", "curl", "openssl", "jq", "iptables", "iproute2", "docker.io"}

// The workflow runs the same tests as .ci/run, with CI set, so a service
// it does not install fails a test there: it installs every package
// .ci/run does, and runs the unit tests as root, as .ci/run does.
func TestWorkflowInstallsWhatTheTestsNeed(t *testing.T) {
	t.Parallel()
	run, err := os.ReadFile("../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^pkgs=\(([^)]*)\)$`).FindSubmatch(run)
	if m == nil {
		t.Fatal(".ci/run has no pkgs=(…) line")
	}
	wf, err := os.ReadFile("../.github/workflows/pipeline.yml")
	if err != nil {
		t.Fatal(err)
	}
	installed := map[string]bool{}
	im := regexp.MustCompile(`apt-get install[^\n]*?((?:[a-z0-9.+-]+[ \t]*(?:\\\n[ \t]*)?)+)\n`).FindSubmatch(wf)
	if im == nil {
		t.Fatal("pipeline.yml runs no apt-get install")
	}
	for _, p := range strings.Fields(strings.ReplaceAll(string(im[1]), `\`, " ")) {
		installed[p] = true
	}
	for _, p := range strings.Fields(string(m[1])) {
		if !installed[p] && !slices.Contains(runnerHas, p) {
			t.Errorf("pipeline.yml does not install %s, which .ci/run installs for the tests", p)
		}
	}
	step := regexp.MustCompile(`(?m)^\s*- name: Unit tests\n\s*run: (.*)$`).FindSubmatch(wf)
	if step == nil {
		t.Fatal("pipeline.yml has no Unit tests step")
	}
	if cmd := string(step[1]); !strings.HasPrefix(cmd, "sudo ") || !strings.Contains(cmd, "go test -race") {
		t.Errorf("pipeline.yml's unit tests run as %q; want them under sudo (the IAM fixture needs root), with -race", cmd)
	}
}
