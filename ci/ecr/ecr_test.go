package ecr_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/ecr/ecrtest"
)

func ctx(t *testing.T) context.Context {
	// Safety net only: every call here is loopback and answers at once.
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func defaults() ecr.Options {
	return ecr.Options{Repository: "sidecar", Create: true, ScanOnPush: true, ImmutableTags: true}
}

func TestPreflightNamesWhatIsMissing(t *testing.T) {
	for _, tc := range []struct {
		name       string
		region     string
		creds      bool
		want, not_ []string
	}{
		{name: "no region", creds: true, want: []string{"AWS region is not set", "AWS_REGION"}, not_: []string{"credentials"}},
		{name: "no credentials", region: "eu-west-1", want: []string{"AWS credentials not found", "AWS_ACCESS_KEY_ID"}, not_: []string{"region is not set"}},
		{name: "neither", want: []string{"AWS region is not set", "AWS credentials not found"}},
		// The SDK would take these and fail only when building the endpoint.
		{name: "region with spaces", region: "eu west 1", creds: true, want: []string{`AWS region "eu west 1" is not a region name`, "us-east-1", "AWS_REGION"}},
		{name: "region padded", region: " eu-west-1 ", creds: true, want: []string{`AWS region " eu-west-1 " is not a region name`}},
		{name: "region with a slash", region: "not_a/region", creds: true, want: []string{"is not a region name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := ecrtest.Start(t, "eu-west-1")
			ecrtest.Isolate(t)
			t.Setenv("AWS_ENDPOINT_URL_ECR", srv.URL)
			t.Setenv("AWS_REGION", tc.region)
			if tc.creds {
				t.Setenv("AWS_ACCESS_KEY_ID", "AKIDSTANDIN")
				t.Setenv("AWS_SECRET_ACCESS_KEY", "standin-secret")
			}
			_, err := ecr.Preflight(ctx(t), defaults())
			var pe *ecr.PreflightError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a PreflightError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
			for _, n := range tc.not_ {
				if strings.Contains(err.Error(), n) {
					t.Errorf("error wrongly mentions %q:\n%v", n, err)
				}
			}
			if ops := srv.Operations(); len(ops) != 0 {
				t.Errorf("ECR was called before the preflight passed: %v", ops)
			}
		})
	}
}

func TestPreflightEnsuresRepository(t *testing.T) {
	for _, tc := range []struct {
		name          string
		existing      *bool // nil: absent; else existing with this immutability
		race          bool
		opts          func(*ecr.Options)
		wantOps       []string
		wantImmutable bool
		wantScan      bool
		wantCreated   bool
	}{
		{
			name:          "created with scan on push and immutable tags",
			wantOps:       []string{"GetAuthorizationToken", "DescribeRepositories", "CreateRepository"},
			wantImmutable: true, wantScan: true, wantCreated: true,
		},
		{
			name:        "created with opt-outs",
			opts:        func(o *ecr.Options) { o.ImmutableTags, o.ScanOnPush = false, false },
			wantOps:     []string{"GetAuthorizationToken", "DescribeRepositories", "CreateRepository"},
			wantCreated: true,
		},
		{
			name:     "existing mutable repository is used as it is",
			existing: ptr(false),
			wantOps:  []string{"GetAuthorizationToken", "DescribeRepositories"},
		},
		{
			name:          "existing immutable repository",
			existing:      ptr(true),
			wantOps:       []string{"GetAuthorizationToken", "DescribeRepositories"},
			wantImmutable: true,
		},
		{
			name:          "lost creation race to another run",
			race:          true,
			wantOps:       []string{"GetAuthorizationToken", "DescribeRepositories", "CreateRepository", "DescribeRepositories"},
			wantImmutable: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := ecrtest.Start(t, "eu-west-1")
			srv.Env(t) // reaches the stand-in through AWS_ENDPOINT_URL_ECR
			if tc.existing != nil {
				srv.AddRepository("sidecar", *tc.existing)
			}
			if tc.race {
				srv.RaceCreate()
			}
			o := defaults()
			if tc.opts != nil {
				tc.opts(&o)
			}
			reg, err := ecr.Preflight(ctx(t), o)
			if err != nil {
				t.Fatal(err)
			}
			if ops := srv.Operations(); !slices.Equal(ops, tc.wantOps) {
				t.Errorf("operations = %v, want %v", ops, tc.wantOps)
			}
			repo, ok := srv.Repository("sidecar")
			if !ok {
				t.Fatal("repository does not exist after preflight")
			}
			if tc.existing == nil && !tc.race && (repo.Immutable != tc.wantImmutable || repo.ScanOnPush != tc.wantScan) {
				t.Errorf("created repository immutable=%v scanOnPush=%v, want %v %v", repo.Immutable, repo.ScanOnPush, tc.wantImmutable, tc.wantScan)
			}
			if reg.Immutable != tc.wantImmutable || reg.Created != tc.wantCreated {
				t.Errorf("registry immutable=%v created=%v, want %v %v", reg.Immutable, reg.Created, tc.wantImmutable, tc.wantCreated)
			}
			if reg.Username != "AWS" || reg.Password() != srv.Password {
				t.Errorf("login user %q, password matches=%v", reg.Username, reg.Password() == srv.Password)
			}
			if reg.Host != srv.Host() || reg.URI != srv.Host()+"/sidecar" || reg.Ref("abc") != srv.Host()+"/sidecar:abc" {
				t.Errorf("host %q uri %q", reg.Host, reg.URI)
			}
			for _, s := range []string{reg.String(), fmt.Sprintf("%v %+v %#v %s", reg, reg, reg, reg)} {
				if strings.Contains(s, srv.Password) {
					t.Errorf("registry formatting leaks the password: %s", s)
				}
			}
		})
	}
}

func TestPreflightBaseEndpointAndNoCreate(t *testing.T) {
	srv := ecrtest.Start(t, "us-east-2")
	ecrtest.Isolate(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDSTANDIN")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "standin-secret")
	t.Setenv("AWS_REGION", "us-east-2")
	o := defaults()
	o.BaseEndpoint = srv.URL
	o.Create = false
	_, err := ecr.Preflight(ctx(t), o)
	if err == nil || !strings.Contains(err.Error(), "ECR_CREATE_REPOSITORY=false") || !strings.Contains(err.Error(), `"sidecar"`) {
		t.Fatalf("err = %v, want it to name the missing repository and ECR_CREATE_REPOSITORY", err)
	}
	if slices.Contains(srv.Operations(), "CreateRepository") {
		t.Error("created a repository although creation was off")
	}
}

// With PUSH_LATEST a repository created with immutable tags excludes
// latest (IMMUTABLE_WITH_EXCLUSION), so versions stay fixed and latest
// moves; with ECR_IMMUTABLE_TAGS=false it is simply mutable.
func TestPreflightCreatesARepositoryLatestCanMoveIn(t *testing.T) {
	for _, immutable := range []bool{true, false} {
		srv := ecrtest.Start(t, "eu-west-1")
		srv.Env(t)
		o := defaults()
		o.PushLatest, o.ImmutableTags = true, immutable
		reg, err := ecr.Preflight(ctx(t), o)
		if err != nil || !reg.Created {
			t.Fatalf("ECR_IMMUTABLE_TAGS=%v: %+v, %v; want a repository created", immutable, reg, err)
		}
		if reg.ImmutableTag("latest") || reg.ImmutableTag("1.4.0") != immutable {
			t.Errorf("ECR_IMMUTABLE_TAGS=%v: latest immutable %v, 1.4.0 immutable %v; want latest mutable, 1.4.0 %v", immutable,
				reg.ImmutableTag("latest"), reg.ImmutableTag("1.4.0"), immutable)
		}
		if repo, _ := srv.Repository("sidecar"); repo.Immutable != immutable || (immutable && !slices.Equal(repo.Exclusions, []string{"latest"})) {
			t.Errorf("ECR_IMMUTABLE_TAGS=%v: created %+v", immutable, repo)
		}
	}
}

func TestPreflightRejectsBadRepositoryName(t *testing.T) {
	o := defaults()
	o.Repository = "Side Car"
	_, err := ecr.Preflight(ctx(t), o)
	if err == nil || !strings.Contains(err.Error(), `ECR_REPOSITORY="Side Car"`) {
		t.Fatalf("err = %v", err)
	}
}

// taggedRegistry starts a server whose immutable-tag repository repo holds
// the given tag -> digest pairs, and returns it with a registry for repo.
func taggedRegistry(t *testing.T, repo string, tags [][2]string) (*ecrtest.Server, *ecr.Registry) {
	t.Helper()
	srv := ecrtest.Start(t, "eu-west-1")
	srv.Env(t)
	srv.AddRepository(repo, true)
	for _, tag := range tags {
		srv.SetTag(repo, tag[0], tag[1])
	}
	o := defaults()
	o.Repository = repo
	reg, err := ecr.Preflight(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	return srv, reg
}

func TestLookup(t *testing.T) {
	_, reg := taggedRegistry(t, "team/sidecar", [][2]string{{"abc123abc123", "sha256:aaaa"}, {"v1.0.0", "sha256:bbbb"}})
	got, err := reg.Lookup(ctx(t), []string{"abc123abc123", "v1.0.0", "latest"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"abc123abc123": "sha256:aaaa", "v1.0.0": "sha256:bbbb"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Lookup = %v, want %v", got, want)
	}
}

func TestDecide(t *testing.T) {
	const local = "sha256:1111"
	const commit = "abc123abc123"
	both := []string{"1.2.0", commit} // sorted, as sortedKeys returns them
	version := both[:1]
	for _, tc := range []struct {
		name         string
		release      []string // version, latest
		existing     map[string]string
		immutable    bool
		wantSkip     []string
		wantMoves    []string
		wantReleased bool
		wantErr      []string // tags named in conflicts
	}{
		{name: "new commit", release: version, immutable: true},
		{name: "same commit again, same digest", release: version, immutable: true,
			existing: map[string]string{"abc123abc123": local, "1.2.0": local}, wantSkip: both},
		{name: "version tag added to a commit pushed from this very build", release: version, immutable: true,
			existing: map[string]string{"abc123abc123": local}, wantSkip: []string{"abc123abc123"}},
		{name: "same commit again, different digest, immutable: the pushed image stands", release: nil, immutable: true,
			existing: map[string]string{"abc123abc123": "sha256:2222"}, wantSkip: both[1:], wantReleased: true},
		{name: "same commit again, different digest, mutable moves", release: nil,
			existing: map[string]string{"abc123abc123": "sha256:2222"}, wantMoves: both[1:]},
		{name: "release of a commit main already pushed", release: version, immutable: true,
			existing: map[string]string{"abc123abc123": "sha256:2222"}, wantReleased: true, wantSkip: []string{"abc123abc123"}},
		{name: "release re-run", release: version, immutable: true, wantReleased: true,
			existing: map[string]string{"abc123abc123": "sha256:2222", "1.2.0": "sha256:2222"}, wantSkip: both},
		{name: "version already names another image", release: version, immutable: true,
			existing: map[string]string{"abc123abc123": "sha256:2222", "1.2.0": "sha256:3333"}, wantErr: []string{"1.2.0"}},
		{name: "version of a new commit already taken", release: version, immutable: true,
			existing: map[string]string{"1.2.0": "sha256:3333"}, wantErr: []string{"1.2.0"}},
		{name: "re-run of a commit whose version tag names another image", release: version, immutable: true,
			existing: map[string]string{"abc123abc123": local, "1.2.0": "sha256:3333"}, wantErr: []string{"1.2.0"}},
		{name: "mutable release of a commit already pushed", release: version,
			existing: map[string]string{"abc123abc123": "sha256:2222", "1.2.0": "sha256:3333"}, wantReleased: true, wantSkip: []string{"abc123abc123"}, wantMoves: []string{"1.2.0"}},
		{name: "mutable latest moves", release: []string{"latest"},
			existing: map[string]string{"latest": "sha256:3333"}, wantMoves: []string{"latest"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ecr.Decide(ecr.Tags{Repository: "sidecar", Immutable: func(string) bool { return tc.immutable }, Existing: tc.existing}, local, commit, tc.release)
			if len(tc.wantErr) > 0 {
				var ce *ecr.ConflictError
				if !errors.As(err, &ce) {
					t.Fatalf("err = %v, want ConflictError", err)
				}
				for _, tag := range tc.wantErr {
					if !strings.Contains(err.Error(), fmt.Sprintf("tag %q", tag)) || !strings.Contains(err.Error(), "immutable") {
						t.Errorf("error does not explain tag %q: %v", tag, err)
					}
				}
				if n := strings.Count(err.Error(), "already points at"); n != len(tc.wantErr) {
					t.Errorf("%d conflicts reported, want %d: %v", n, len(tc.wantErr), err)
				}
				if len(p.Skip)+len(p.Moves) != 0 || p.Released {
					t.Errorf("a failed decision still plans: %+v", p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := sortedKeys(p.Skip); !slices.Equal(got, tc.wantSkip) {
				t.Errorf("skip = %v, want %v", got, tc.wantSkip)
			}
			if got := sortedKeys(p.Moves); !slices.Equal(got, tc.wantMoves) {
				t.Errorf("moves = %v, want %v", got, tc.wantMoves)
			}
			if p.Released != tc.wantReleased {
				t.Errorf("released = %v, want %v", p.Released, tc.wantReleased)
			}
		})
	}
}

func TestRetag(t *testing.T) {
	srv, reg := taggedRegistry(t, "sidecar", [][2]string{{"abc123abc123", "sha256:aaaa"}, {"v0.9.0", "sha256:bbbb"}})
	if err := reg.Retag(ctx(t), "sha256:aaaa", "v1.0.0"); err != nil {
		t.Fatal(err)
	}
	if err := reg.Retag(ctx(t), "sha256:aaaa", "v1.0.0"); err != nil {
		t.Errorf("retag to the same image again: %v", err)
	}
	repo, _ := srv.Repository("sidecar")
	if repo.Tags["v1.0.0"] != "sha256:aaaa" {
		t.Errorf("v1.0.0 -> %q", repo.Tags["v1.0.0"])
	}
	err := reg.Retag(ctx(t), "sha256:aaaa", "v0.9.0")
	if err == nil || !strings.Contains(err.Error(), "ImageTagAlreadyExists") {
		t.Errorf("moving an immutable tag: err = %v", err)
	}
	if err := reg.Retag(ctx(t), "sha256:ffff", "v2.0.0"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("retag of a missing image: err = %v", err)
	}
}

// Another run may put an immutable tag between this run's lookup and its
// PutImage: on the same image that is this run's success; on another it
// is a *TagTakenError naming the tag and both images.
func TestRetagRace(t *testing.T) {
	const ours, theirs = "sha256:aaaa", "sha256:cccc"
	srv, reg := taggedRegistry(t, "sidecar", [][2]string{{"abc123abc123", ours}})
	srv.RacePutImage("1.0.0", "")
	if err := reg.Retag(ctx(t), ours, "1.0.0"); err != nil {
		t.Errorf("another run put 1.0.0 on this image first: err = %v, want success", err)
	}
	srv.RacePutImage("2.0.0", theirs)
	err := reg.Retag(ctx(t), ours, "2.0.0")
	var taken *ecr.TagTakenError
	if !errors.As(err, &taken) || taken.Tag != "2.0.0" || taken.Existing != theirs || taken.Want != ours {
		t.Fatalf("another run put 2.0.0 on another image first: err = %#v", err)
	}
	for _, want := range []string{`"2.0.0"`, ours, theirs, "another run", "immutable"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if repo, _ := srv.Repository("sidecar"); repo.Tags["1.0.0"] != ours || repo.Tags["2.0.0"] != theirs {
		t.Errorf("tags %v", repo.Tags)
	}
}

func TestDecideUnknownLocalDigest(t *testing.T) {
	_, err := ecr.Decide(ecr.Tags{Repository: "sidecar", Immutable: allImmutable, Existing: map[string]string{"1.0.0": "sha256:1"}}, "", "abc", []string{"1.0.0"})
	if err == nil || !strings.Contains(err.Error(), "an image without this commit's tag (another commit's)") {
		t.Fatalf("version tag taken, unknown digest: err = %v", err)
	}
	p, err := ecr.Decide(ecr.Tags{Repository: "sidecar", Immutable: allImmutable, Existing: map[string]string{"abc": "sha256:1"}}, "", "abc", nil)
	if err != nil || !p.Released || p.Skip["abc"] != "sha256:1" || len(p.Moves) != 0 {
		t.Fatalf("commit already pushed, unknown digest: %+v %v", p, err)
	}
	p, err = ecr.Decide(ecr.Tags{Repository: "sidecar", Immutable: allImmutable}, "", "abc", nil)
	if _, skip := p.Skip["abc"]; err != nil || skip || p.Released {
		t.Fatalf("absent tag with unknown digest: %v %v", p, err)
	}
}

func sortedKeys(m map[string]string) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	slices.Sort(k)
	return k
}

func ptr[T any](v T) *T { return &v }

func allImmutable(string) bool { return true }

// ECR's *_WITH_EXCLUSION settings reverse the repository's mutability for
// the tags a wildcard filter matches; the run reads them from
// DescribeRepositories and decides tag by tag.
func TestPreflightReadsTagMutabilityExclusions(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		immutable                  bool
		filters                    []string
		immutableTags, mutableTags []string
		describe                   string
	}{
		{name: "immutable", immutable: true, immutableTags: []string{"1.4.0", "latest"}, describe: "immutable tags)"},
		{name: "mutable", mutableTags: []string{"1.4.0", "latest"}, describe: "mutable tags)"},
		{name: "immutable except latest and dev-*", immutable: true, filters: []string{"latest", "dev-*"},
			immutableTags: []string{"1.4.0", "3f9c2a7b1d04", "latest2", "xdev-1"}, mutableTags: []string{"latest", "dev-1", "dev-"},
			describe: "immutable tags except latest, dev-*)"},
		{name: "mutable except release tags", filters: []string{"*.*.*"},
			immutableTags: []string{"1.4.0", "1.4.0-rc.1"}, mutableTags: []string{"latest", "3f9c2a7b1d04"},
			describe: "mutable tags except *.*.*)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := ecrtest.Start(t, "eu-west-1")
			srv.Env(t)
			srv.AddRepository("sidecar", tc.immutable)
			if tc.filters != nil {
				srv.SetExclusions("sidecar", tc.filters...)
			}
			reg, err := ecr.Preflight(ctx(t), defaults())
			if err != nil {
				t.Fatal(err)
			}
			for _, tag := range tc.immutableTags {
				if !reg.ImmutableTag(tag) {
					t.Errorf("tag %s is mutable, want immutable", tag)
				}
			}
			for _, tag := range tc.mutableTags {
				if reg.ImmutableTag(tag) {
					t.Errorf("tag %s is immutable, want mutable", tag)
				}
			}
			if !strings.HasSuffix(reg.String(), tc.describe) {
				t.Errorf("registry described as %q, want it to end %q", reg, tc.describe)
			}
		})
	}
}
