package provenance

import (
	"strings"
	"testing"
	"time"
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
		Subjects:   []Subject{{"reg/sidecar@index", idx}, {"reg/sidecar:linux/amd64", amd}, {"reg/sidecar:linux/arm64", arm}},
		Source:     Source{Repository: "https://github.com/example/sidecar", Commit: strings.Repeat("c", 40), Ref: "refs/tags/v1.2.3"},
		BuildArgs:  map[string]string{"VERSION": "v1.2.3", "REVISION": strings.Repeat("c", 40), "RUNTIME_IMAGE": "alpine:3.22"},
		Platforms:  []string{"linux/amd64", "linux/arm64"},
		BaseImages: []BaseImage{{"GO_IMAGE", "golang:1.26-alpine"}, {"RUNTIME_IMAGE", "mirror.example/alpine@sha256:" + strings.Repeat("d", 64)}},
		Builder:    DetectBuilder(lookup), Started: start, Finished: start.Add(time.Minute),
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
	if len(deps) != 3 || deps[0].Digest["gitCommit"] != strings.Repeat("c", 40) || deps[1].Uri != "oci://golang:1.26-alpine" || deps[2].Digest["sha256"] != strings.Repeat("d", 64) {
		t.Errorf("resolved dependencies %v", deps)
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

func TestBuilderOutsideActions(t *testing.T) {
	b := DetectBuilder(func(string) (string, bool) { return "", false })
	if !strings.HasPrefix(b.ID, "https://github.com/example/sidecar/ci/builders/host#") || b.InvocationID != "" {
		t.Errorf("host builder %+v", b)
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
