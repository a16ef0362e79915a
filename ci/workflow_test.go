package ci

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spdx/tools-golang/spdx"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/provenance"
	"github.com/example/sidecar/internal/testenv"
)

// The verification commands docs/pipeline.md gives a security team are
// the ones the release job runs on every pushed digest.
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
	cmds := regexp.MustCompile(`(?m)^\s*(?:run: )?(gh attestation verify .*)$`).FindAllSubmatch(wf, -1)
	if len(cmds) != 2 {
		t.Fatalf("pipeline.yml runs gh attestation verify %d times; want 2 (the provenance, the SBOMs)", len(cmds))
	}
	for _, m := range cmds {
		cmd := strings.TrimSpace(string(m[1]))
		// bash, as the workflow's run: its ${GITHUB_REPOSITORY//./\\.} is no sh.
		if !strings.Contains(string(md), "```bash\n"+cmd+"\n```") {
			t.Errorf("docs/pipeline.md does not give the workflow's verification command in a bash block:\n%s", cmd)
		}
	}
}

// The verification commands' --cert-identity-regex, as bash expands it,
// matches the repository's own signing identity only: a repository name
// may hold a ., which a regexp takes for any character.
func TestVerifyCommandIdentityRegex(t *testing.T) {
	t.Parallel()
	wf, err := os.ReadFile("../.github/workflows/pipeline.yml")
	if err != nil {
		t.Fatal(err)
	}
	args := regexp.MustCompile(`gh attestation verify .* --cert-identity-regex ("[^"]*")`).FindAllSubmatch(wf, -1)
	if len(args) != 2 {
		t.Fatalf("found %d --cert-identity-regex in pipeline.yml's gh attestation verify commands; want 2", len(args))
	}
	const repo = "my-org/side.car"
	const identity = "https://github.com/" + repo + "/.github/workflows/pipeline.yml@refs/"
	for _, arg := range args {
		re := identityRegex(t, string(arg[1]), repo)
		out := re.String()
		for _, id := range []string{identity + "heads/main", identity + "tags/v1.4.0"} {
			if !re.MatchString(id) {
				t.Errorf("%q (from %s) does not match the repository's identity %s", out, arg[1], id)
			}
		}
		for _, id := range []string{
			strings.Replace(identity, "side.car", "sideXcar", 1) + "heads/main",
			strings.Replace(identity, "side.car", "side/car", 1) + "heads/main",
			identity + "heads/feature",
		} {
			if re.MatchString(id) {
				t.Errorf("%q (from %s) matches %s, not the repository's identity", out, arg[1], id)
			}
		}
	}
}

// identityRegex is a --cert-identity-regex argument, quoted as in the
// command, as bash expands it with GITHUB_REPOSITORY=repo.
func identityRegex(t *testing.T, quoted, repo string) *regexp.Regexp {
	t.Helper()
	cmd := exec.Command("bash", "-c", "printf %s "+quoted)
	cmd.Env = append(os.Environ(), "GITHUB_REPOSITORY="+repo)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash expanding %s: %v", quoted, err)
	}
	re, err := regexp.Compile(string(out))
	if err != nil {
		t.Fatalf("%s expands to %q, no regexp: %v", quoted, out, err)
	}
	return re
}

// The provenance push writes in the release job names as its builder the
// identity the docs' verify command accepts: pipeline.yml at the run's
// ref, as GitHub's attestation and its certificate do (job_workflow_ref),
// not ci.yml, the caller GITHUB_WORKFLOW_REF names; and ci.yml as the
// workflow the run was started with.
func TestProvenanceBuilderIsTheSigner(t *testing.T) {
	t.Parallel()
	read := func(name string) string {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	wf, caller, md := read("../.github/workflows/pipeline.yml"), read("../.github/workflows/ci.yml"), read("../docs/pipeline.md")
	m := regexp.MustCompile(`\n      BUILD_WORKFLOW: (\S+)\n`).FindStringSubmatch(wf)
	if m == nil {
		t.Fatal("pipeline.yml's job env does not set BUILD_WORKFLOW")
	}
	c, err := config.Load("..", func(k string) (string, bool) { return m[1], k == "BUILD_WORKFLOW" }) // this checkout, as the release job's
	if err != nil {
		t.Fatal(err)
	}
	if got := regexp.MustCompile(`(?m)^    uses: \./(\S+)$`).FindAllStringSubmatch(caller, -1); len(got) != 2 || got[0][1] != m[1] || got[1][1] != m[1] {
		t.Errorf("ci.yml's jobs call %v; pipeline.yml says it is %s", got, m[1])
	}
	idRE := regexp.MustCompile(`--cert-identity-regex ("[^"]+")`).FindStringSubmatch(md)
	if idRE == nil {
		t.Fatal("docs/pipeline.md gives no --cert-identity-regex")
	}
	signer := identityRegex(t, idRE[1], "example/sidecar") // as the docs' bash block runs it
	for _, ref := range []string{"refs/heads/main", "refs/tags/v1.4.0"} {
		env := map[string]string{"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "example/sidecar",
			"GITHUB_REF": ref, "GITHUB_WORKFLOW_REF": "example/sidecar/.github/workflows/ci.yml@" + ref, "GITHUB_RUN_ID": "7"}
		b := provenance.DetectBuilder(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, c.BuildWorkflow)
		if !signer.MatchString(b.ID) {
			t.Errorf("on %s the provenance's builder is %s, which the docs' --cert-identity-regex %s does not accept", ref, b.ID, signer)
		}
		if b.Workflow == nil || b.Workflow.Path != ".github/workflows/ci.yml" || b.Workflow.Ref != ref {
			t.Errorf("on %s the run's workflow is %+v, want .github/workflows/ci.yml at %s", ref, b.Workflow, ref)
		}
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
	// Releases run for version tags only (gitref takes v and a digit as
	// one), not for every tag that starts with v.
	if !strings.Contains(string(wf), "\n    tags: [\"v[0-9]*\"]") {
		t.Errorf("ci.yml's push trigger does not take tags v[0-9]* only")
	}
	// Two refs pushed at once (main and its v* tag) release one commit:
	// their release jobs must not run side by side.
	for _, job := range parts {
		if strings.Contains(job, "if: github.event_name == 'push'") &&
			!strings.Contains(job, "concurrency:\n      group: release-${{ github.sha }}\n      cancel-in-progress: false\n") {
			t.Errorf("the release job has no per-commit concurrency group that waits (group: release-${{ github.sha }}, cancel-in-progress: false):\n%s", job)
		}
	}
	if p, err := os.ReadFile("../.github/workflows/pipeline.yml"); err != nil || strings.Contains(string(p), "permissions:") {
		t.Errorf("pipeline.yml must take its permissions from the calling job (%v)", err)
	}
}

// runnerHas are .ci/run's packages that GitHub's Ubuntu runner image
// already has (its Docker is docker-ce, which docker.io would conflict with;
// iptables and iproute2 are in every Ubuntu image).
var runnerHas = []string{"git", "curl", "openssl", "iptables", "iproute2", "docker.io"}

// The workflow runs the same tests as .ci/run, with CI set, so a service
// it does not install fails a test there: it installs every package and
// go-installed tool .ci/run does, and runs the unit tests as root, as
// .ci/run does.
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
	// A tool .ci/run installs with go install (oras, for the docs' check)
	// is one a test looks for, and fails without in CI.
	for _, tool := range regexp.MustCompile(`(?m)\bgo install (\S+@\S+)`).FindAllSubmatch(run, -1) {
		if !regexp.MustCompile(`\bgo install ` + regexp.QuoteMeta(string(tool[1])) + `\s`).Match(wf) {
			t.Errorf("pipeline.yml does not go install %s, which .ci/run installs for the tests", tool[1])
		}
	}
	step := regexp.MustCompile(`(?m)^\s*- name: Unit tests\n\s*run: (.*)$`).FindSubmatch(wf)
	if step == nil {
		t.Fatal("pipeline.yml has no Unit tests step")
	}
	// The command itself is .ci/run's (internal/doclinks ties them).
	if cmd := string(step[1]); !strings.HasPrefix(cmd, "sudo ") || !strings.Contains(cmd, " -race ") {
		t.Errorf("pipeline.yml's unit tests run as %q; want them under sudo (the IAM fixture needs root), with -race", cmd)
	}
}

// The release job's step that finds each SBOM's subject (the platform
// image its Image package names) gives, run on what push wrote to dist/,
// the digest of that platform's manifest in the pushed index.
func TestWorkflowFindsTheSBOMSubjects(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("jq"); err != nil {
		testenv.Unavailable(t, "jq is not installed (apt-get install jq)")
	}
	wf, err := os.ReadFile("../.github/workflows/pipeline.yml")
	if err != nil {
		t.Fatal(err)
	}
	script := stepRun(t, string(wf), "sboms")
	ecrSrv := pushEnv(t, new(bool))
	fe := newLightPushEngine(t, ecrSrv, nil)
	if err := fe.runner.Push(testCtx(t)); err != nil {
		t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
	}
	var idx struct {
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform struct {
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(fe.top, &idx); err != nil || len(idx.Manifests) != 2 {
		t.Fatalf("pushed index: %v %s", err, fe.top)
	}
	want := map[string]string{}
	for _, m := range idx.Manifests {
		want[m.Platform.Architecture] = m.Digest
	}
	out := filepath.Join(t.TempDir(), "github_output")
	if b, err := runStep(script, fe.dir, out).CombinedOutput(); err != nil {
		t.Fatalf("the step failed: %v\n%s", err, b)
	}
	b, _ := os.ReadFile(out)
	got := map[string]string{}
	for _, line := range strings.Fields(string(b)) {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	if !maps.Equal(got, want) {
		t.Errorf("step outputs %v; want each platform's manifest digest %v", got, want)
	}
	// The second release of the commit (main and its v* tag pushed
	// together) finds it in ECR and writes the SBOMs attached to it: the
	// step finds the same images.
	if err := os.RemoveAll(filepath.Join(fe.dir, "dist")); err != nil {
		t.Fatal(err)
	}
	if err := fe.runner.Push(testCtx(t)); err != nil {
		t.Fatalf("second Push: %v\nlog:\n%s", err, fe.log)
	}
	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	if b, err := runStep(script, fe.dir, out).CombinedOutput(); err != nil {
		t.Fatalf("after the second push the step failed: %v\n%s", err, b)
	}
	b, _ = os.ReadFile(out)
	clear(got)
	for _, line := range strings.Fields(string(b)) {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	if !maps.Equal(got, want) {
		t.Errorf("after the second push, step outputs %v; want each platform's manifest digest %v", got, want)
	}

	// An SBOM that names no digest stops the job rather than attest nothing.
	f := filepath.Join(fe.dir, "dist", "sbom-linux-arm64.spdx.json")
	doc, _ := os.ReadFile(f)
	if err := os.WriteFile(f, []byte(strings.ReplaceAll(string(doc), "@"+want["arm64"], "")), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := runStep(script, fe.dir, out).CombinedOutput(); err == nil || !strings.Contains(string(b), "names no image digest") {
		t.Errorf("with an SBOM naming no digest the step gave %v:\n%s", err, b)
	}
	// No SBOM at all stops it too: nothing would be attested, and the
	// verification would pass on nothing.
	if err := os.RemoveAll(filepath.Join(fe.dir, "dist")); err != nil {
		t.Fatal(err)
	}
	if b, err := runStep(script, fe.dir, out).CombinedOutput(); err == nil || !strings.Contains(string(b), "push wrote no SBOM") {
		t.Errorf("with no SBOM the step gave %v:\n%s", err, b)
	}
}

// The release job's SBOM steps name the files push writes (sbomTitle) for
// every platform it can build, and verify the predicate type actions/attest
// gives the SPDX version the SBOMs are written in
// (https://spdx.dev/Document/v<version>, its src/sbom.ts).
func TestWorkflowSBOMStepsMatchWhatPushWrites(t *testing.T) {
	t.Parallel()
	wf, err := os.ReadFile("../.github/workflows/pipeline.yml")
	if err != nil {
		t.Fatal(err)
	}
	var platforms string
	for _, v := range config.Vars() {
		if v.Name == "PLATFORMS" {
			platforms = v.Default // every platform push can build
		}
	}
	for _, p := range strings.Split(platforms, ",") {
		if want := "sbom-path: dist/" + sbomTitle(p); !strings.Contains(string(wf), want) {
			t.Errorf("pipeline.yml has no %q", want)
		}
	}
	if want := "--predicate-type https://spdx.dev/Document/v" + strings.TrimPrefix(spdx.Version, "SPDX-"); !strings.Contains(string(wf), want) {
		t.Errorf("pipeline.yml does not verify with %q", want)
	}
}

// runStep runs a step's script in dir as the runner runs a shell: bash
// step (bash --noprofile --norc -eo pipefail {0}), with GITHUB_OUTPUT at
// out.
func runStep(script, dir, out string) *exec.Cmd {
	cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GITHUB_OUTPUT="+out)
	return cmd
}

// stepRun is the run: | block of the workflow step with this id.
func stepRun(t *testing.T, wf, id string) string {
	t.Helper()
	_, after, ok := strings.Cut(wf, "\n        id: "+id+"\n")
	if !ok {
		t.Fatalf("pipeline.yml has no step with id %s", id)
	}
	_, after, ok = strings.Cut(after, "        run: |\n")
	if !ok {
		t.Fatalf("step %s has no run: | block", id)
	}
	var lines []string
	for _, l := range strings.Split(after, "\n") {
		if !strings.HasPrefix(l, "          ") && strings.TrimSpace(l) != "" {
			break
		}
		lines = append(lines, strings.TrimPrefix(l, "          "))
	}
	return strings.Join(lines, "\n")
}

// The release job decides first, before the build, whether it can push: a
// repository without AWS_ROLE_ARN (a fork) builds and tests and says so; a
// role without a region, or a value that is no role ARN, stops the job
// there rather than after the build. Every push step follows that decision.
func TestWorkflowReleaseSettings(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../.github/workflows/pipeline.yml")
	if err != nil {
		t.Fatal(err)
	}
	wf := string(b)
	script := stepRun(t, wf, "release")
	const role = "arn:aws:iam::123456789012:role/sidecar-ci"
	for _, tc := range []struct {
		name, push, role, region string
		wantPush                 string // "" when the step must fail
		wantOut                  []string
	}{
		{"pull request", "false", "", "", "false", nil},
		{"pull request in a set-up repository", "false", role, "eu-west-1", "false", nil},
		{"no role (a fork)", "true", "", "eu-west-1", "false", []string{"::warning", "AWS_ROLE_ARN is not set", "pushes nothing"}},
		{"role without region", "true", role, "", "", []string{"::error", "AWS_REGION is not set", "eu-west-1"}},
		{"not a role ARN", "true", "sidecar-ci", "eu-west-1", "", []string{"::error", "AWS_ROLE_ARN is 'sidecar-ci'", "arn:aws:iam::123456789012:role/"}},
		{"a user ARN", "true", "arn:aws:iam::123456789012:user/ci", "eu-west-1", "", []string{"AWS_ROLE_ARN is 'arn:aws:iam::123456789012:user/ci'"}},
		{"China partition", "true", "arn:aws-cn:iam::123456789012:role/ci", "cn-north-1", "true", nil},
		{"European Sovereign Cloud", "true", "arn:aws-eusc:iam::123456789012:role/ci", "eusc-de-east-1", "true", nil},
		{"set up", "true", role, "eu-west-1", "true", nil},
		{"region by name", "true", role, "Ireland", "", []string{"::error", "AWS_REGION is 'Ireland'", "eu-west-1"}},
		{"region with a zone", "true", role, "eu-west-1a", "", []string{"AWS_REGION is 'eu-west-1a'"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "github_output")
			cmd := runStep(script, dir, out)
			cmd.Env = append(cmd.Env, "PUSH="+tc.push, "AWS_ROLE_ARN="+tc.role, "AWS_REGION="+tc.region,
				"GITHUB_STEP_SUMMARY="+filepath.Join(dir, "summary"))
			b, err := cmd.CombinedOutput()
			if (err != nil) != (tc.wantPush == "") {
				t.Fatalf("step exit %v; want failure %v:\n%s", err, tc.wantPush == "", b)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(string(b), w) {
					t.Errorf("step output lacks %q:\n%s", w, b)
				}
			}
			got, _ := os.ReadFile(out)
			if want := "push=" + tc.wantPush + "\n"; tc.wantPush != "" && string(got) != want {
				t.Errorf("GITHUB_OUTPUT %q; want %q", got, want)
			}
		})
	}

	if !strings.Contains(script, `[[ "$AWS_REGION" =~ `+ecr.RegionPattern+` ]]`) {
		t.Errorf("the Release settings step does not check AWS_REGION with ecr.RegionPattern (%s)", ecr.RegionPattern)
	}
	// ECR_REPOSITORY is the job's, so mage config refuses a bad one before
	// anything slow; its default is the configuration's.
	if want := "      ECR_REPOSITORY: ${{ vars.ECR_REPOSITORY || '" + configDefault("ECR_REPOSITORY") + "' }}\n"; !strings.Contains(wf, "    env:\n      CI: \"true\"\n") || !strings.Contains(wf, want) || strings.Count(wf, "ECR_REPOSITORY:") != 1 {
		t.Errorf("pipeline.yml does not set ECR_REPOSITORY once, in the job's env: %q", want)
	}

	// The step comes first, and no step pushes, logs in or attests on
	// inputs.push alone.
	if first := regexp.MustCompile(`(?m)^      - `).FindStringIndex(wf); first == nil ||
		!strings.HasPrefix(wf[first[0]:], "      - name: Release settings\n        id: release\n") {
		t.Error("pipeline.yml's first step is not Release settings (id: release)")
	}
	if n := strings.Count(wf, "inputs.push"); n != 1 {
		t.Errorf("pipeline.yml uses inputs.push %d times; want once, in the Release settings step", n)
	}
	for _, step := range []string{"AWS credentials (OIDC)", "Push to ECR (go tool mage push)", "Attest the pushed image"} {
		_, after, _ := strings.Cut(wf, "- name: "+step)
		_, next, _ := strings.Cut(after, "\n")
		if !strings.HasPrefix(next, "        if: steps.release.outputs.push == 'true'\n") {
			t.Errorf("step %q does not run on steps.release.outputs.push", step)
		}
	}
}

// configDefault is the configuration's default for the variable name.
func configDefault(name string) string {
	for _, v := range config.Vars() {
		if v.Name == name {
			return v.Default
		}
	}
	return ""
}

// docs/pipeline.md's Dagger Cloud engine: a DAGGER_CLOUD_TOKEN secret
// reaches pipeline.yml from both of ci.yml's jobs, and only with it is the
// engine Dagger Cloud's (a value the configuration accepts); without it the
// runner host is empty, the Dagger CLI's default.
func TestWorkflowDaggerCloud(t *testing.T) {
	t.Parallel()
	read := func(name string) string {
		b, err := os.ReadFile("../.github/workflows/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	pipeline, ci := read("pipeline.yml"), read("ci.yml")
	for _, want := range []string{
		"    secrets:\n      DAGGER_CLOUD_TOKEN:\n",
		"    defaults:\n      run:\n        shell: bash",
	} {
		if !strings.Contains(pipeline, want) {
			t.Errorf("pipeline.yml lacks %q", want)
		}
	}
	// Each mage step that reaches the engine, and no other, sees the token
	// and the runner host; mage config and mage lint reach none.
	const token = "          DAGGER_CLOUD_TOKEN: ${{ secrets.DAGGER_CLOUD_TOKEN }}\n          _EXPERIMENTAL_DAGGER_RUNNER_HOST: ${{ secrets.DAGGER_CLOUD_TOKEN != '' && 'dagger-cloud://' || '' }}\n"
	for _, step := range strings.Split(pipeline, "\n      - ")[1:] {
		mage := strings.Contains(step, "go tool mage ") && !strings.Contains(step, "go tool mage config") && !strings.Contains(step, "go tool mage lint")
		if has := strings.Contains(step, token); has != mage {
			t.Errorf("step %q: DAGGER_CLOUD_TOKEN and the runner host in its env: %v; want them exactly on the mage steps that reach the engine", strings.SplitN(step, "\n", 2)[0], has)
		}
	}
	if n := strings.Count(pipeline, "secrets.DAGGER_CLOUD_TOKEN }}"); n != 3 {
		t.Errorf("pipeline.yml reads secrets.DAGGER_CLOUD_TOKEN %d times; want 3 (the mage steps)", n)
	}
	if n := strings.Count(ci, "    secrets:\n      DAGGER_CLOUD_TOKEN: ${{ secrets.DAGGER_CLOUD_TOKEN }}"); n != 2 {
		t.Errorf("ci.yml passes DAGGER_CLOUD_TOKEN to pipeline.yml in %d jobs; want 2", n)
	}
	for _, host := range []string{"dagger-cloud://", ""} {
		if _, err := config.Load(t.TempDir(), func(k string) (string, bool) {
			return map[string]string{"_EXPERIMENTAL_DAGGER_RUNNER_HOST": host, "LOCAL_IMAGE": "none"}[k], k == "_EXPERIMENTAL_DAGGER_RUNNER_HOST" || k == "LOCAL_IMAGE"
		}); err != nil {
			t.Errorf("_EXPERIMENTAL_DAGGER_RUNNER_HOST=%q, as the workflow sets it, is refused: %v", host, err)
		}
	}
}

// The configuration is checked in seconds, before the steps that take
// minutes: a push with a bad ECR_REPOSITORY (which only push uses) must
// not first install the test services, vet and run the unit tests.
func TestWorkflowChecksConfigurationFirst(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../.github/workflows/pipeline.yml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, step := range strings.Split(string(b), "\n      - ")[1:] {
		name, _, _ := strings.Cut(step, "\n")
		names = append(names, name)
	}
	check := slices.Index(names, "name: Pipeline configuration (go tool mage config)")
	if check < 0 || !strings.Contains(string(b), "      - name: Pipeline configuration (go tool mage config)\n        run: go tool mage config\n") {
		t.Fatalf("pipeline.yml has no step running go tool mage config: %q", names)
	}
	for _, before := range []string{"uses: actions/checkout@", "uses: actions/setup-go@"} {
		if i := slices.IndexFunc(names, func(n string) bool { return strings.HasPrefix(n, before) }); i < 0 || i > check {
			t.Errorf("step %q is not before the configuration check (it needs the source and Go): %q", before, names)
		}
	}
	for _, after := range []string{"name: Install test services", "name: Vet and format (go tool mage lint)", "name: Unit tests", "name: Build image (go tool mage build)"} {
		if i := slices.Index(names, after); i < check {
			t.Errorf("step %q is not after the configuration check: %q", after, names)
		}
	}
}

// The push step hands the later steps what go tool mage push printed
// first, the candidate (<repository URI>:<commit tag>@<digest>), as the
// image name and digest; it fails when push fails; and it leaves the
// checkout as it was: push runs while the step writes, and would list any
// file the step left there as an untracked path it keeps out of the image.
func TestWorkflowPushStepOutputs(t *testing.T) {
	t.Parallel()
	wf, err := os.ReadFile("../.github/workflows/pipeline.yml")
	if err != nil {
		t.Fatal(err)
	}
	script := stepRun(t, string(wf), "push")
	ecrSrv := pushEnv(t, new(bool))
	fe := newLightPushEngine(t, ecrSrv, nil)
	if err := fe.runner.Push(testCtx(t)); err != nil {
		t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
	}
	repo, _ := ecrSrv.Repository("sidecar")
	candidate := repo.Tags[gitHead(t, fe.dir)[:12]]
	if candidate == "" {
		t.Fatalf("push left no commit tag in the stand-in: %v", repo.Tags)
	}
	// go tool mage push, as the step calls it: what the real push printed.
	printed := filepath.Join(t.TempDir(), "stdout")
	if err := os.WriteFile(printed, []byte(fe.out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte("#!/bin/sh\ncat \"$PUSH_PRINTED\"\nexit \"${PUSH_EXIT:-0}\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	status := func() string {
		out, err := exec.Command("git", "-C", fe.dir, "status", "--porcelain", "--untracked-files=all").CombinedOutput()
		if err != nil {
			t.Fatalf("git status: %v %s", err, out)
		}
		return string(out)
	}
	before := status()
	run := func(exit string) (map[string]string, []byte, error) {
		out := filepath.Join(t.TempDir(), "github_output")
		cmd := runStep(script, fe.dir, out)
		cmd.Env = append(cmd.Env, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
			"PUSH_PRINTED="+printed, "PUSH_EXIT="+exit, "RUNNER_TEMP="+t.TempDir())
		b, err := cmd.CombinedOutput()
		got := map[string]string{}
		o, _ := os.ReadFile(out)
		for _, line := range strings.Fields(string(o)) {
			k, v, _ := strings.Cut(line, "=")
			got[k] = v
		}
		return got, b, err
	}

	got, b, err := run("0")
	if err != nil {
		t.Fatalf("the step failed: %v\n%s", err, b)
	}
	if want := map[string]string{"name": ecrSrv.Host() + "/sidecar", "digest": candidate}; !maps.Equal(got, want) {
		t.Errorf("step outputs %v; want the candidate's %v (push printed:\n%s)", got, want, fe.out)
	}
	if after := status(); after != before {
		t.Errorf("the step left files in the checkout, which push would report as untracked paths it leaves out:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// A failed push fails the step (pipefail: tee succeeds), so nothing
	// is attested.
	if _, b, err := run("1"); err == nil {
		t.Errorf("the step passed with go tool mage push exiting 1:\n%s", b)
	}
}

// workflowOnlyVars are the variables pipeline.yml gives the mage steps that
// the pipeline itself does not read (config.Vars), with the file that
// says who does.
var workflowOnlyVars = map[string]string{
	"CI":                 "../internal/testenv/testenv.go", // the unit tests: fail, not skip
	"DAGGER_CLOUD_TOKEN": "../docs/pipeline.md",            // the Dagger CLI
}

// readByCommand are variables a run step sets for a command it runs, not
// for its script.
var readByCommand = map[string]string{"GH_TOKEN": "gh attestation "}

// What pipeline.yml runs exists: every go tool mage target it names is
// one of magefiles/, a step named after a mage command runs it, every
// variable a mage step (or the job) gets is one the pipeline reads
// (config.Vars, or workflowOnlyVars), and every other run step uses each
// variable its env sets. docs/pipeline.md's GitHub Actions section names
// the targets the workflow runs, no more and no fewer.
func TestWorkflowUsesWhatTheRepositoryHas(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../.github/workflows/pipeline.yml")
	if err != nil {
		t.Fatal(err)
	}
	wf := string(b)
	targets := mageTargets(t, "../magefiles")
	mageRE := regexp.MustCompile(`go tool mage ([a-z]\w*)`)
	ran := map[string]bool{}
	for _, m := range mageRE.FindAllStringSubmatch(wf, -1) {
		ran[m[1]] = true
		if !targets[m[1]] {
			t.Errorf("pipeline.yml runs go tool mage %s; magefiles/ has no such target (%v)", m[1], slices.Sorted(maps.Keys(targets)))
		}
	}

	// ci.yml's header names them too.
	caller, err := os.ReadFile("../.github/workflows/ci.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("`mage ([a-z]\\w*)`").FindAllStringSubmatch(string(caller), -1) {
		if !targets[m[1]] {
			t.Errorf("ci.yml names mage %s; magefiles/ has no such target", m[1])
		}
	}

	read := map[string]bool{}
	for _, v := range config.Vars() {
		read[v.Name] = true
	}
	for name, file := range workflowOnlyVars {
		if doc, err := os.ReadFile(file); err != nil || !strings.Contains(string(doc), name) {
			t.Errorf("%s, which pipeline.yml passes on, is not in %s (%v), which says who reads it", name, file, err)
		}
		read[name] = true
	}
	job, steps, ok := strings.Cut(wf, "\n    steps:\n")
	if !ok {
		t.Fatal("pipeline.yml has no steps")
	}
	for _, k := range envKeys(job, "    ") {
		if !read[k] {
			t.Errorf("pipeline.yml's job env sets %s, which neither the pipeline (config.Vars) nor workflowOnlyVars reads", k)
		}
	}
	for _, step := range strings.Split(steps, "\n      - ")[1:] {
		head, _, _ := strings.Cut(step, "\n")
		_, script, hasRun := strings.Cut(step, "\n        run: ")
		if m := regexp.MustCompile(`\((go tool mage \w+)\)$`).FindStringSubmatch(head); m != nil && !strings.Contains(script, m[1]) {
			t.Errorf("step %q does not run %s", head, m[1])
		}
		for _, k := range envKeys(step, "        ") {
			switch {
			case mageRE.MatchString(script):
				if !read[k] {
					t.Errorf("step %q sets %s, which neither the pipeline (config.Vars) nor workflowOnlyVars reads", head, k)
				}
			case hasRun:
				cmd, byCmd := readByCommand[k]
				if !regexp.MustCompile(`\$\{?`+k+`\b`).MatchString(script) && !(byCmd && strings.Contains(script, cmd)) {
					t.Errorf("step %q sets %s, which its script does not use", head, k)
				}
			}
		}
	}

	md, err := os.ReadFile("../docs/pipeline.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(md), "\n## GitHub Actions\n")
	section, _, _ = strings.Cut(section, "\nAll actions are pinned")
	documented := map[string]bool{}
	for _, m := range mageRE.FindAllStringSubmatch(section, -1) {
		documented[m[1]] = true
	}
	if !maps.Equal(documented, ran) {
		t.Errorf("docs/pipeline.md's GitHub Actions section names go tool mage %v; pipeline.yml runs %v",
			slices.Sorted(maps.Keys(documented)), slices.Sorted(maps.Keys(ran)))
	}
}

// mageTargets are the targets of the magefiles in dir: their exported
// functions, as go tool mage names them (lower case).
func mageTargets(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no magefiles in %s: %v", dir, err)
	}
	targets := map[string]bool{}
	for _, file := range files {
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && fn.Name.IsExported() {
				targets[strings.ToLower(fn.Name.Name)] = true
			}
		}
	}
	return targets
}

// envKeys are the variables of the env: block at indent in yaml (a job's
// or a step's), the first one only.
func envKeys(yaml, indent string) []string {
	_, block, ok := strings.Cut(yaml, "\n"+indent+"env:\n")
	if !ok {
		return nil
	}
	var keys []string
	for _, line := range strings.Split(block, "\n") {
		rest, ok := strings.CutPrefix(line, indent+"  ")
		if !ok {
			break
		}
		if k, _, ok := strings.Cut(rest, ":"); ok && !strings.HasPrefix(rest, " ") && !strings.HasPrefix(rest, "#") {
			keys = append(keys, k)
		}
	}
	return keys
}

// docs/troubleshooting.md explains every annotation pipeline.yml's own
// steps print (::error, ::warning), as it does the pipeline's messages:
// with … for what the shell fills in.
func TestTroubleshootingCoversWorkflowMessages(t *testing.T) {
	t.Parallel()
	wf, err := os.ReadFile("../.github/workflows/pipeline.yml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../docs/troubleshooting.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(doc), "\n### GitHub Actions workflow messages\n")
	// A message kept in a variable first (msg="…"; echo "::warning …::$msg").
	assigned := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(\w+)="([^"]*)"$`).FindAllStringSubmatch(string(wf), -1) {
		assigned[m[1]] = m[2]
	}
	annotations := regexp.MustCompile(`echo "::(?:error|warning)[^:]*::([^"]*)"`).FindAllStringSubmatch(string(wf), -1)
	if len(annotations) < 6 {
		t.Fatalf("found %d annotations in pipeline.yml; the collector no longer sees them", len(annotations))
	}
	shell := regexp.MustCompile(`\$\{?\w+[^}'" ]*\}?`)
	for _, m := range annotations {
		msg := m[1]
		if v, ok := strings.CutPrefix(msg, "$"); ok && assigned[v] != "" {
			msg = assigned[v]
		}
		msg = shell.ReplaceAllString(msg, "…")
		if !strings.Contains(section, "| `"+msg+"` |") {
			t.Errorf("docs/troubleshooting.md's GitHub Actions workflow messages have no row for %q", msg)
		}
	}
}

// Supply chain and bounds: every action the workflows use is this
// repository's or pinned to a full commit SHA with the release it is as a
// comment (Dependabot's form, which it keeps up to date); the job has a
// timeout, and ci.yml a concurrency group.
func TestWorkflowPinsActionsAndBoundsRuns(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../.github/workflows/*.yml")
	if err != nil || len(files) < 2 {
		t.Fatalf("workflows: %v %v", files, err)
	}
	pinned := regexp.MustCompile(`^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$`)
	uses := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?m)^\s*(?:- )?uses: (.*)$`).FindAllStringSubmatch(string(b), -1) {
			uses++
			if !strings.HasPrefix(m[1], "./") && !pinned.MatchString(m[1]) {
				t.Errorf("%s uses %q; want owner/repo@<full commit SHA> # vX.Y.Z", filepath.Base(f), m[1])
			}
		}
	}
	if uses < 8 {
		t.Fatalf("found %d uses: in the workflows; the pattern no longer sees them", uses)
	}
	read := func(name string) string {
		b, err := os.ReadFile("../.github/workflows/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if !regexp.MustCompile(`\n  pipeline:\n(    .*\n)*    timeout-minutes: \d+\n`).MatchString(read("pipeline.yml")) {
		t.Error("pipeline.yml's job has no timeout-minutes")
	}
	if !strings.Contains(read("ci.yml"), "\nconcurrency:\n  group: ci-${{ github.ref }}\n") {
		t.Error("ci.yml has no concurrency group per ref")
	}
}

// The longest SCAN_TIMEOUT is the release job's timeout-minutes: a longer
// wait would be cancelled with the job, never end by its own bound.
func TestScanTimeoutBoundIsTheJobTimeout(t *testing.T) {
	t.Parallel()
	wf, err := os.ReadFile("../.github/workflows/pipeline.yml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\n  pipeline:\n(?:    .*\n)*?    timeout-minutes: (\d+)\n`).FindSubmatch(wf)
	if m == nil {
		t.Fatal("pipeline.yml's job has no timeout-minutes")
	}
	if job, err := time.ParseDuration(string(m[1]) + "m"); err != nil || job != config.MaxScanTimeout {
		t.Errorf("pipeline.yml's timeout-minutes is %s, config.MaxScanTimeout %s: change both", m[1], config.MaxScanTimeout)
	}
}
