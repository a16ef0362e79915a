package ci

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/daggertest"
	"github.com/example/sidecar/ci/gitref"
	"github.com/example/sidecar/ci/provenance"
)

// Outside GitHub Actions, in a clone without an origin remote, the
// provenance records only what the run knows: no source repository, a
// builder id naming this host as unverified, subject names without
// spaces, and base images by the digests the build was pinned to.
func TestProvenanceRecordsOnlyKnownFacts(t *testing.T) {
	t.Parallel()
	immutable := true
	ecrSrv := pushEnv(t, &immutable)
	fe := newLightPushEngine(t, ecrSrv, map[string]string{"RUNTIME_IMAGE": "mirror.example/alpine:3.22"})
	fe.runner.scanPoll, fe.runner.scanProgress = 5*time.Millisecond, time.Hour
	if err := fe.runner.Push(testCtx(t)); err != nil {
		t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
	}
	st, pred := distProvenance(t, fe)
	if src := pred.BuildDefinition.ExternalParameters.AsMap()["source"].(map[string]any); src["repository"] != nil {
		t.Errorf("source repository %v recorded without GITHUB_REPOSITORY or an origin remote", src["repository"])
	}
	deps := pred.BuildDefinition.ResolvedDependencies
	if deps[0].Uri != "" || deps[0].Digest["gitCommit"] != gitHead(t, fe.dir) {
		t.Errorf("source dependency %v", deps[0])
	}
	if id := pred.RunDetails.Builder.Id; !strings.HasPrefix(id, provenance.HostBuilderPrefix) {
		t.Errorf("builder id %q, want %s<hostname>", id, provenance.HostBuilderPrefix)
	}
	tag := gitHead(t, fe.dir)[:gitref.ShortLen]
	want := []string{ecrSrv.Host() + "/sidecar:" + tag, ecrSrv.Host() + "/sidecar:" + tag + "@linux/amd64", ecrSrv.Host() + "/sidecar:" + tag + "@linux/arm64"}
	var names []string
	for _, s := range st.Subject {
		names = append(names, s.Name)
	}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("subject names %q, want %q", names, want)
	}
	// What is recorded is what was built from.
	pinned := map[string]string{
		"GO_IMAGE":      daggertest.ImageRef(config.DefaultGoImage),
		"RUNTIME_IMAGE": daggertest.ImageRef("mirror.example/alpine:3.22"),
	}
	for _, d := range deps[1:] {
		p := pinned[d.Name]
		if d.Uri != "oci://"+p || "sha256:"+d.Digest["sha256"] != strings.SplitN(p, "@", 2)[1] || d.Annotations != nil {
			t.Errorf("%s recorded as %v, want pinned %s", d.Name, d, p)
		}
	}
	for _, q := range fe.srv.Select(func(q daggertest.Query) bool { return q.Leaf().Field == "id" && q.Has("dockerBuild") }) {
		b, _ := q.Find("dockerBuild")
		args := fmt.Sprint(b.Args["buildArgs"])
		for arg, p := range pinned {
			if !strings.Contains(args, "name:"+arg+" value:"+p+"]") {
				t.Errorf("%s build args %s lack %s=%s", b.Arg("platform"), args, arg, p)
			}
		}
	}
	// The SBOMs name the same digests (as purl versions).
	for _, plat := range []string{"linux/amd64", "linux/arm64"} {
		doc, err := os.ReadFile(filepath.Join(fe.dir, distDir, sbomTitle(plat)))
		if err != nil {
			t.Fatal(err)
		}
		for arg, p := range pinned {
			if digest := strings.SplitN(p, "@", 2)[1]; !strings.Contains(string(doc), "@"+strings.ReplaceAll(digest, ":", "%3A")+"?") {
				t.Errorf("%s SBOM does not name %s by its pinned digest %s", plat, arg, digest)
			}
		}
	}
	if !strings.Contains(fe.log.String(), "push: RUNTIME_IMAGE mirror.example/alpine:3.22 is "+pinned["RUNTIME_IMAGE"]) {
		t.Errorf("log does not say what the base images were pinned to:\n%s", fe.log)
	}
}

// A base image that cannot be resolved stops the build before it starts,
// naming the variable.
func TestBuildStopsWhenABaseImageDoesNotResolve(t *testing.T) {
	t.Parallel()
	fe := newEngine(t, map[string]string{"RUNTIME_IMAGE": "mirror.example/alpine:3.99"}, nil)
	fe.srv.Handle("imageRef", func(q daggertest.Query) (any, error) {
		if from, _ := q.Find("from"); from.Arg("address") == "mirror.example/alpine:3.99" {
			return nil, daggertest.Failure("failed to resolve image: mirror.example/alpine:3.99: not found")
		}
		return daggertest.ImageRef(q.Chain[len(q.Chain)-2].Arg("address")), nil
	})
	err := fe.runner.Build(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "resolve RUNTIME_IMAGE=mirror.example/alpine:3.99 to a digest") || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("err = %v", err)
	}
	if n := len(fe.srv.Select(func(q daggertest.Query) bool { return q.Has("dockerBuild") })); n != 0 {
		t.Errorf("%d build queries after the failed resolution", n)
	}
}

// A v* tag on a commit main already pushed releases that image with the
// documents attached to it: the provenance stays the main run's, ref and
// builder, and docs/pipeline.md says so rather than naming the tag's ref.
func TestTagOfAPushedCommitKeepsItsProvenance(t *testing.T) {
	t.Parallel()
	immutable := true
	ecrSrv := pushEnv(t, &immutable)
	fe := newLightPushEngine(t, ecrSrv, map[string]string{"BUILD_WORKFLOW": ".github/workflows/pipeline.yml"})
	run := func(ref string) *slsa.Provenance {
		fe.setEnv(map[string]string{"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "example/sidecar", "GITHUB_REF": ref,
			"GITHUB_WORKFLOW_REF": "example/sidecar/.github/workflows/ci.yml@" + ref, "GITHUB_RUN_ID": "1"})
		if err := fe.runner.Push(testCtx(t)); err != nil {
			t.Fatalf("Push on %s: %v\nlog:\n%s", ref, err, fe.log)
		}
		_, pred := distProvenance(t, fe)
		return pred
	}
	run("refs/heads/main")
	gitTag(t, fe.dir, "v1.4.0")
	pred := run("refs/tags/v1.4.0")
	if repo, _ := ecrSrv.Repository("sidecar"); repo.Tags["1.4.0"] == "" {
		t.Fatalf("1.4.0 not released: %v", repo.Tags)
	}
	ref := pred.BuildDefinition.ExternalParameters.AsMap()["source"].(map[string]any)["ref"]
	if id := pred.RunDetails.Builder.Id; ref != "refs/heads/main" || id != "https://github.com/example/sidecar/.github/workflows/pipeline.yml@refs/heads/main" {
		t.Errorf("the released 1.4.0's provenance has ref %v and builder %s, want main's", ref, id)
	}
	md, err := os.ReadFile("../docs/pipeline.md")
	if err != nil {
		t.Fatal(err)
	}
	_, bullet, _ := strings.Cut(string(md), "- **Releasing a commit that is already pushed.**")
	bullet, _, _ = strings.Cut(bullet, "\n- ")
	bullet = strings.Join(strings.Fields(bullet), " ")
	if !strings.Contains(bullet, "the provenance attached in ECR is the `main` run's (`refs/heads/main`") || strings.Contains(bullet, "provenance's `refs/tags/") {
		t.Errorf("docs/pipeline.md's bullet on releasing a pushed commit does not say its provenance stays main's:\n%s", bullet)
	}
}

// distProvenance reads back the provenance push wrote to dist/.
func distProvenance(t *testing.T, fe *fakeEngine) (*intoto.Statement, *slsa.Provenance) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fe.dir, distDir, "provenance.intoto.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, pred, err := provenance.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return st, pred
}
