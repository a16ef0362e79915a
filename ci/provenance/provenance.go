// Package provenance writes SLSA build provenance for the sidecar image:
// an in-toto Statement (https://in-toto.io/Statement/v1) with a SLSA
// Provenance v1 predicate (https://slsa.dev/provenance/v1), built with
// the in-toto attestation Go bindings and validated by them.
//
//	st, err := provenance.Build(provenance.Input{Subjects: …, Source: …, Builder: provenance.DetectBuilder(os.LookupEnv, "")})
//	b, err := provenance.JSON(st)
package provenance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// MediaType is the artifact type of an in-toto statement in a registry.
const MediaType = "application/vnd.in-toto+json"

// PredicateType is SLSA Provenance v1.
const PredicateType = "https://slsa.dev/provenance/v1"

// BuildType names how this pipeline builds: the Dockerfile through Dagger,
// per platform, published as one index.
const BuildType = "https://github.com/example/sidecar/ci/buildtypes/dagger-dockerfile/v1"

// Subject is an image manifest by name and digest ("sha256:…").
type Subject struct {
	Name   string // SubjectName: repo:tag for the index, repo:tag@os/arch for a platform manifest
	Digest string
}

// SubjectName names a subject without spaces: the repository URI and tag
// (the image index), with "@" and the platform for a platform manifest,
// e.g. 1234.dkr.ecr.eu-west-1.amazonaws.com/sidecar:3f9c2a7b1d04@linux/arm64.
func SubjectName(repo, tag, platform string) string {
	n := repo + ":" + tag
	if platform != "" {
		n += "@" + platform
	}
	return n
}

// Source is where the build came from.
type Source struct {
	Repository string // e.g. https://github.com/example/sidecar; "" when unknown (left out)
	Commit     string // full commit hash
	Ref        string // refs/heads/main, refs/tags/v1.2.3
}

// BaseImage is a base image build argument: the reference as configured
// and, when resolved, pinned to its digest (name:tag@sha256:…).
type BaseImage struct {
	Arg, Ref, Pinned string
}

// UnresolvedAnnotation marks a base image recorded without a digest.
const UnresolvedAnnotation = "unresolved"

// Builder is who ran the build.
type Builder struct {
	ID           string            // URI
	InvocationID string            // e.g. the Actions run URL
	Version      map[string]string // e.g. runner OS, environment
	// Workflow is the GitHub Actions run's top-level workflow, recorded
	// in externalParameters.workflow as GitHub's build type records it
	// (nil outside Actions).
	Workflow *Workflow
}

// Workflow is the workflow a GitHub Actions run was started with: the
// signing certificate's Build Config URI, and actions/attest's
// externalParameters.workflow.
type Workflow struct {
	Ref, Repository, Path string
}

// HostBuilderPrefix starts the builder id of a run outside GitHub
// Actions: an unregistered URN naming the machine by its hostname
// (urn:sidecar-ci:unverified-host:<hostname>). It says only which host
// claims to have built the image: self-hosted, and nothing verifies it.
const HostBuilderPrefix = "urn:sidecar-ci:unverified-host:"

// DetectBuilder is the GitHub Actions run when GITHUB_ACTIONS=true,
// otherwise this host (HostBuilderPrefix). jobWorkflow is the path of the
// reusable workflow whose job runs the build (.github/workflows/x.yml,
// config BUILD_WORKFLOW), "" when the run's own workflow runs it.
func DetectBuilder(lookup func(string) (string, bool), jobWorkflow string) Builder {
	get := func(k string) string { v, _ := lookup(k); return v }
	if get("GITHUB_ACTIONS") == "true" {
		server := get("GITHUB_SERVER_URL")
		if server == "" {
			server = "https://github.com"
		}
		repo, ref, top := get("GITHUB_REPOSITORY"), get("GITHUB_REF"), get("GITHUB_WORKFLOW_REF")
		b := Builder{
			// The workflow whose job ran the build, at its ref: the OIDC
			// token's job_workflow_ref, which actions/attest (@actions/attest
			// 3.2.0, buildSLSAProvenancePredicate) writes as builder.id and
			// Fulcio as the certificate's SAN and Build Signer URI. For a
			// reusable workflow, GITHUB_WORKFLOW_REF names the caller
			// instead, and no variable names the callee: a local one
			// (uses: ./…) runs at the caller's ref.
			ID: server + "/" + top,
			InvocationID: fmt.Sprintf("%s/%s/actions/runs/%s/attempts/%s", server, repo,
				get("GITHUB_RUN_ID"), orDefault(get("GITHUB_RUN_ATTEMPT"), "1")),
			Version: map[string]string{},
		}
		switch {
		case jobWorkflow != "" && repo != "" && ref != "":
			b.ID = server + "/" + repo + "/" + jobWorkflow + "@" + ref
		case top == "":
			b.ID = server + "/" + repo + "/actions"
		}
		if path, _, ok := strings.Cut(strings.TrimPrefix(top, repo+"/"), "@"); ok && repo != "" {
			b.Workflow = &Workflow{Ref: ref, Repository: server + "/" + repo, Path: path}
		}
		for _, k := range []string{"RUNNER_OS", "RUNNER_ARCH", "RUNNER_ENVIRONMENT", "ImageOS", "ImageVersion"} {
			if v := get(k); v != "" {
				b.Version[k] = v
			}
		}
		return b
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return Builder{ID: HostBuilderPrefix + url.PathEscape(host), Version: map[string]string{}}
}

// Input is what the provenance records.
type Input struct {
	Subjects   []Subject // the image index first, then each platform manifest
	Source     Source
	BuildArgs  map[string]string // Dockerfile build arguments
	Platforms  []string
	BaseImages []BaseImage
	Builder    Builder
	Started    time.Time
	Finished   time.Time
}

// Build makes the statement and validates it with the in-toto library.
func Build(in Input) (*intoto.Statement, error) {
	var subjects []*intoto.ResourceDescriptor
	for _, s := range in.Subjects {
		alg, hex, ok := strings.Cut(s.Digest, ":")
		if !ok {
			return nil, fmt.Errorf("subject %s: digest %q is not alg:hex", s.Name, s.Digest)
		}
		subjects = append(subjects, &intoto.ResourceDescriptor{Name: s.Name, Digest: map[string]string{alg: hex}})
	}
	ext, err := externalParameters(in)
	if err != nil {
		return nil, err
	}
	deps, err := dependencies(in)
	if err != nil {
		return nil, err
	}
	var versions map[string]string
	if len(in.Builder.Version) > 0 {
		versions = in.Builder.Version
	}
	pred := &slsa.Provenance{
		BuildDefinition: &slsa.BuildDefinition{
			BuildType: BuildType, ExternalParameters: ext, ResolvedDependencies: deps,
		},
		RunDetails: &slsa.RunDetails{
			Builder: &slsa.Builder{Id: in.Builder.ID, Version: versions},
			Metadata: &slsa.BuildMetadata{
				InvocationId: in.Builder.InvocationID,
				StartedOn:    timestamppb.New(in.Started), FinishedOn: timestamppb.New(in.Finished),
			},
		},
	}
	if err := pred.Validate(); err != nil {
		return nil, fmt.Errorf("SLSA provenance: %w", err)
	}
	raw, err := protojson.Marshal(pred)
	if err != nil {
		return nil, err
	}
	predStruct := &structpb.Struct{}
	if err := protojson.Unmarshal(raw, predStruct); err != nil {
		return nil, err
	}
	st := &intoto.Statement{Type: intoto.StatementTypeUri, Subject: subjects, PredicateType: PredicateType, Predicate: predStruct}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("in-toto statement: %w", err)
	}
	return st, nil
}

// externalParameters are what the build was asked for: the source, the
// Dockerfile, its build arguments, the platforms and, in GitHub Actions,
// the workflow run.
func externalParameters(in Input) (*structpb.Struct, error) {
	args := map[string]any{}
	for _, k := range sortedKeys(in.BuildArgs) {
		args[k] = in.BuildArgs[k]
	}
	plats := make([]any, len(in.Platforms))
	for i, p := range in.Platforms {
		plats[i] = p
	}
	source := map[string]any{"ref": in.Source.Ref, "commit": in.Source.Commit}
	if in.Source.Repository != "" {
		source["repository"] = in.Source.Repository
	}
	ext := map[string]any{
		"source":     source,
		"dockerfile": "Dockerfile",
		"buildArgs":  args,
		"platforms":  plats,
	}
	if w := in.Builder.Workflow; w != nil {
		ext["workflow"] = map[string]any{"ref": w.Ref, "repository": w.Repository, "path": w.Path}
	}
	return structpb.NewStruct(ext)
}

// dependencies are the resolved dependencies: the commit (its repository
// only when known: no invented URL), then the base images, by digest
// where pinned, else by tag with an annotation saying so.
func dependencies(in Input) ([]*intoto.ResourceDescriptor, error) {
	src := &intoto.ResourceDescriptor{Name: "source", Digest: map[string]string{"gitCommit": in.Source.Commit}}
	if repo := repositoryURI(in.Source.Repository); repo != "" {
		src.Uri = "git+" + repo + "@" + in.Source.Ref
	}
	deps := []*intoto.ResourceDescriptor{src}
	for _, b := range in.BaseImages {
		ref := b.Ref
		if b.Pinned != "" {
			ref = b.Pinned
		}
		d := &intoto.ResourceDescriptor{Name: b.Arg, Uri: "oci://" + ref}
		if _, digest, ok := strings.Cut(ref, "@"); ok {
			alg, hex, _ := strings.Cut(digest, ":")
			d.Digest = map[string]string{alg: hex}
		} else {
			ann, err := structpb.NewStruct(map[string]any{UnresolvedAnnotation: "a tag, not resolved to a digest: the image it named at build time is not recorded"})
			if err != nil {
				return nil, err
			}
			d.Annotations = ann
		}
		deps = append(deps, d)
	}
	return deps, nil
}

// repositoryURI is a git remote as a URI, for the source dependency's
// uri (SPDX's download location form, git+<URI>@<ref>): an address with
// a scheme as it is, git's scp-like user@host:path as the ssh:// URL it
// stands for; "" for what is no URI (a local path), left out rather than
// written as one. The remote stays as given in externalParameters.
func repositoryURI(repo string) string {
	if strings.Contains(repo, "://") {
		return repo
	}
	// git reads host:path as scp-like only when no slash comes before the
	// colon (git-clone(1), "GIT URLS"); otherwise it is a path.
	host, path, ok := strings.Cut(repo, ":")
	if !ok || host == "" || path == "" || strings.Contains(host, "/") {
		return ""
	}
	return "ssh://" + host + "/" + strings.TrimPrefix(path, "/")
}

// JSON renders the statement in its canonical JSON form (protojson with
// in-toto's field names: _type, predicateType, …).
func JSON(st *intoto.Statement) ([]byte, error) {
	raw, err := protojson.Marshal(st)
	if err != nil {
		return nil, err
	}
	// protojson's own indentation varies on purpose; encoding/json's is stable.
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// Parse reads a statement back and returns it with its SLSA predicate,
// both validated.
func Parse(b []byte) (*intoto.Statement, *slsa.Provenance, error) {
	st := &intoto.Statement{}
	if err := protojson.Unmarshal(b, st); err != nil {
		return nil, nil, err
	}
	if err := st.Validate(); err != nil {
		return nil, nil, err
	}
	if st.PredicateType != PredicateType {
		return nil, nil, fmt.Errorf("predicate type %q, want %s", st.PredicateType, PredicateType)
	}
	raw, err := protojson.Marshal(st.Predicate)
	if err != nil {
		return nil, nil, err
	}
	p := &slsa.Provenance{}
	if err := protojson.Unmarshal(raw, p); err != nil {
		return nil, nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, nil, err
	}
	return st, p, nil
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
