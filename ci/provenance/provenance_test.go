package provenance

import (
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
)

func TestBuildAndParse(t *testing.T) {
	idx, amd, arm := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64), "sha256:"+strings.Repeat("3", 64)
	env := map[string]string{
		"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "example/sidecar",
		"GITHUB_RUN_ID": "42", "GITHUB_RUN_ATTEMPT": "2", "GITHUB_WORKFLOW_REF": "example/sidecar/.github/workflows/ci.yml@refs/tags/v1.2.3",
		"RUNNER_OS": "Linux", "RUNNER_ENVIRONMENT": "github-hosted",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	start := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	st, err := Build(Input{
		Subjects:  []Subject{{"reg/sidecar@index", idx}, {"reg/sidecar:linux/amd64", amd}, {"reg/sidecar:linux/arm64", arm}},
		Source:    Source{Repository: "https://github.com/example/sidecar", Commit: strings.Repeat("c", 40), Ref: "refs/tags/v1.2.3"},
		BuildArgs: map[string]string{"VERSION": "v1.2.3", "REVISION": strings.Repeat("c", 40), "RUNTIME_IMAGE": "alpine:3.22"},
		Platforms: []string{"linux/amd64", "linux/arm64"},
		BaseImages: []BaseImage{{Arg: "GO_IMAGE", Ref: "golang:1.26-alpine"},
			{Arg: "RUNTIME_IMAGE", Ref: "mirror.example/alpine:3.22", Pinned: "mirror.example/alpine:3.22@sha256:" + strings.Repeat("d", 64)}},
		Builder: DetectBuilder(lookup, ""), Started: start, Finished: start.Add(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := JSON(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`"_type": "https://in-toto.io/Statement/v1"`, `"predicateType": "https://slsa.dev/provenance/v1"`, `"buildDefinition"`} {
		if !strings.Contains(string(raw), w) {
			t.Errorf("JSON lacks %s:\n%s", w, raw)
		}
	}
	back, p, err := Parse(raw)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, raw)
	}
	if len(back.Subject) != 3 || back.Subject[0].Digest["sha256"] != strings.Repeat("1", 64) || back.Subject[2].Name != "reg/sidecar:linux/arm64" {
		t.Errorf("subjects %v", back.Subject)
	}
	ext := p.BuildDefinition.ExternalParameters.AsMap()
	src := ext["source"].(map[string]any)
	if src["repository"] != "https://github.com/example/sidecar" || src["ref"] != "refs/tags/v1.2.3" || src["commit"] != strings.Repeat("c", 40) {
		t.Errorf("source %v", src)
	}
	if ext["buildArgs"].(map[string]any)["VERSION"] != "v1.2.3" {
		t.Errorf("build args %v", ext["buildArgs"])
	}
	deps := p.BuildDefinition.ResolvedDependencies
	if len(deps) != 3 || deps[0].Digest["gitCommit"] != strings.Repeat("c", 40) || deps[0].Uri != "git+https://github.com/example/sidecar@refs/tags/v1.2.3" ||
		deps[2].Uri != "oci://mirror.example/alpine:3.22@sha256:"+strings.Repeat("d", 64) || deps[2].Digest["sha256"] != strings.Repeat("d", 64) || deps[2].Annotations != nil {
		t.Errorf("resolved dependencies %v", deps)
	}
	// A base image without a digest says so; it has no digest to guess.
	if d := deps[1]; d.Uri != "oci://golang:1.26-alpine" || d.Digest != nil || d.Annotations.AsMap()[UnresolvedAnnotation] == nil {
		t.Errorf("unresolved base image %v", d)
	}
	b := p.RunDetails.Builder
	if b.Id != "https://github.com/example/sidecar/.github/workflows/ci.yml@refs/tags/v1.2.3" || b.Version["RUNNER_ENVIRONMENT"] != "github-hosted" {
		t.Errorf("builder %v", b)
	}
	if got := p.RunDetails.Metadata.InvocationId; got != "https://github.com/example/sidecar/actions/runs/42/attempts/2" {
		t.Errorf("invocation %q", got)
	}
	if !p.RunDetails.Metadata.StartedOn.AsTime().Equal(start) {
		t.Errorf("started %v", p.RunDetails.Metadata.StartedOn.AsTime())
	}
}

// In a reusable workflow (pipeline.yml, called by ci.yml) the builder is
// the called workflow at the run's ref: what GitHub's attestation
// (actions/attest's builder.id, the OIDC job_workflow_ref) and its
// signing certificate's SAN name. The caller, GITHUB_WORKFLOW_REF, is the
// run's workflow, in externalParameters as GitHub's build type has it.
func TestBuilderOfAReusableWorkflow(t *testing.T) {
	env := map[string]string{
		"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "example/sidecar",
		"GITHUB_RUN_ID": "42", "GITHUB_REF": "refs/heads/main", "GITHUB_WORKFLOW_REF": "example/sidecar/.github/workflows/ci.yml@refs/heads/main",
	}
	b := DetectBuilder(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, ".github/workflows/pipeline.yml")
	if want := "https://github.com/example/sidecar/.github/workflows/pipeline.yml@refs/heads/main"; b.ID != want {
		t.Errorf("builder id %q, want %q (the job's workflow, as GitHub signs it)", b.ID, want)
	}
	_, _, p := roundTrip(t, Input{Subjects: []Subject{{"x", "sha256:" + strings.Repeat("1", 64)}},
		Source: Source{Commit: strings.Repeat("c", 40), Ref: "refs/heads/main"}, Builder: b})
	w, _ := p.BuildDefinition.ExternalParameters.AsMap()["workflow"].(map[string]any)
	if w["path"] != ".github/workflows/ci.yml" || w["ref"] != "refs/heads/main" || w["repository"] != "https://github.com/example/sidecar" {
		t.Errorf("externalParameters.workflow %v, want ci.yml at refs/heads/main (GitHub's workflow_ref)", w)
	}
}

func TestBuilderOutsideActions(t *testing.T) {
	b := DetectBuilder(func(string) (string, bool) { return "", false }, ".github/workflows/pipeline.yml")
	host, _ := os.Hostname()
	if b.ID != HostBuilderPrefix+url.PathEscape(host) || b.InvocationID != "" {
		t.Errorf("host builder %+v, want %s%s", b, HostBuilderPrefix, host)
	}
	if strings.Contains(b.ID, "example") || strings.Contains(b.ID, "github.com") {
		t.Errorf("host builder id %q names a builder it is not", b.ID)
	}
}

func TestBuildRefusesInvalid(t *testing.T) {
	src := Source{Repository: "https://github.com/example/sidecar", Commit: strings.Repeat("c", 40), Ref: "refs/heads/main"}
	ok := Input{Subjects: []Subject{{"x", "sha256:" + strings.Repeat("1", 64)}}, Source: src, Builder: Builder{ID: "https://b"}}
	if _, err := Build(ok); err != nil {
		t.Fatalf("minimal input: %v", err)
	}
	for name, in := range map[string]Input{
		"no subject":    {Source: src, Builder: Builder{ID: "https://b"}},
		"bad digest":    {Subjects: []Subject{{"x", "nodigest"}}, Source: src, Builder: Builder{ID: "https://b"}},
		"short digest":  {Subjects: []Subject{{"x", "sha256:abc"}}, Source: src, Builder: Builder{ID: "https://b"}},
		"no builder id": {Subjects: []Subject{{"x", "sha256:" + strings.Repeat("1", 64)}}, Source: src},
		"no commit":     {Subjects: []Subject{{"x", "sha256:" + strings.Repeat("1", 64)}}, Builder: Builder{ID: "https://b"}},
	} {
		if _, err := Build(in); err == nil {
			t.Errorf("%s: Build passed", name)
		}
	}
	if _, _, err := Parse([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"x","predicate":{}}`)); err == nil {
		t.Error("Parse of a statement without subjects passed")
	}
}

// roundTrip builds a statement from in and reads its JSON back.
func roundTrip(t *testing.T, in Input) (*intoto.Statement, []byte, *slsa.Provenance) {
	t.Helper()
	st, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := JSON(st)
	if err != nil {
		t.Fatal(err)
	}
	_, p, err := Parse(raw)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, raw)
	}
	return st, raw, p
}

// Without a known repository the provenance leaves it out rather than
// naming one; the commit is still recorded.
func TestBuildWithoutRepository(t *testing.T) {
	st, raw, p := roundTrip(t, Input{
		Subjects: []Subject{{SubjectName("reg/sidecar", "3f9c2a7b1d04", "linux/amd64"), "sha256:" + strings.Repeat("1", 64)}},
		Source:   Source{Commit: strings.Repeat("c", 40), Ref: "refs/heads/main"},
		Builder:  Builder{ID: HostBuilderPrefix + "build-01"},
	})
	if src := p.BuildDefinition.ExternalParameters.AsMap()["source"].(map[string]any); src["repository"] != nil || src["commit"] != strings.Repeat("c", 40) {
		t.Errorf("source %v", src)
	}
	if d := p.BuildDefinition.ResolvedDependencies[0]; d.Uri != "" || d.Digest["gitCommit"] != strings.Repeat("c", 40) {
		t.Errorf("source dependency %v", d)
	}
	if strings.Contains(string(raw), `"repository"`) || strings.Contains(string(raw), "git+") {
		t.Errorf("provenance names a repository it does not know:\n%s", raw)
	}
	if n := st.Subject[0].Name; n != "reg/sidecar:3f9c2a7b1d04@linux/amd64" || strings.ContainsAny(n, " \t") {
		t.Errorf("subject name %q", n)
	}
}

// The source dependency's uri is a URI whatever form the origin remote
// has: git's scp-like syntax is the ssh:// URL it stands for, and a local
// path, which is no URI, is left out (the commit digest still names the
// source). "git+git@github.com:…" is no URI: its scheme would hold "@".
func TestSourceURIIsAURI(t *testing.T) {
	for _, tc := range []struct{ repo, want string }{
		{"https://github.com/example/sidecar", "git+https://github.com/example/sidecar@refs/heads/main"},
		{"git@github.com:example/sidecar.git", "git+ssh://git@github.com/example/sidecar.git@refs/heads/main"},
		{"github.com:example/sidecar.git", "git+ssh://github.com/example/sidecar.git@refs/heads/main"},
		{"ssh://git@github.com/example/sidecar.git", "git+ssh://git@github.com/example/sidecar.git@refs/heads/main"},
		{"/srv/git/sidecar.git", ""},
		{"../sidecar", ""},
		{"./a:b", ""},
	} {
		t.Run(tc.repo, func(t *testing.T) {
			_, _, p := roundTrip(t, Input{
				Subjects: []Subject{{"x", "sha256:" + strings.Repeat("1", 64)}},
				Source:   Source{Repository: tc.repo, Commit: strings.Repeat("c", 40), Ref: "refs/heads/main"},
				Builder:  Builder{ID: "https://b"},
			})
			got := p.BuildDefinition.ResolvedDependencies[0].Uri
			if got != tc.want {
				t.Errorf("source uri %q, want %q", got, tc.want)
			}
			if u, err := url.Parse(got); got != "" && (err != nil || !u.IsAbs()) {
				t.Errorf("source uri %q is not an absolute URI: %v", got, err)
			}
			if repo := p.BuildDefinition.ExternalParameters.AsMap()["source"].(map[string]any)["repository"]; repo != tc.repo {
				t.Errorf("externalParameters source.repository %v, want the remote as given, %q", repo, tc.repo)
			}
		})
	}
}
