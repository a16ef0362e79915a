// Package ecrtest serves an Amazon ECR API stand-in on loopback for tests.
// It speaks the real wire protocol (AWS JSON 1.1: POST /, X-Amz-Target
// AmazonEC2ContainerRegistry_V20150921.<Operation>, SigV4-signed), so the
// real aws-sdk-go-v2 client drives it via AWS_ENDPOINT_URL_ECR or
// BaseEndpoint. It implements the operations the pipeline uses.
package ecrtest

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

const targetPrefix = "AmazonEC2ContainerRegistry_V20150921."

// manifestFor is the stand-in's manifest for an image digest: PutImage
// maps it back to the digest, as ECR does by hashing it.
func manifestFor(digest string) string {
	return `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{"standin.digest":"` + digest + `"}}`
}

// Repo is a repository in the stand-in.
type Repo struct {
	Name      string
	Immutable bool
	// Exclusions are wildcard filters whose tags have the other
	// mutability (IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION).
	Exclusions []string
	ScanOnPush bool
	// ScanFrequency is the effective scanning rule
	// (BatchGetRepositoryScanningConfiguration): SCAN_ON_PUSH,
	// CONTINUOUS_SCAN or MANUAL; "" derives it from ScanOnPush.
	ScanFrequency string
	Tags          map[string]string // tag -> digest
}

// Call is one API request the stand-in answered.
type Call struct {
	Operation string
	Body      map[string]any
}

// Server is the stand-in. Methods are safe for concurrent use.
type Server struct {
	URL      string
	Region   string
	Account  string
	Password string // what the decoded token carries after "AWS:"
	// ScanClock is the imageScanCompletedAt of every finished scan;
	// basic scans' vulnerabilitySourceUpdatedAt is 6 hours before it.
	ScanClock time.Time

	mu           sync.Mutex
	repos        map[string]*Repo
	calls        []Call
	manifests    map[imageKey]manifest  // pushed manifests, per repository as in ECR
	scans        map[string][]ScanState // digest -> script, one step per call
	scanType     string                 // BASIC (default) or ENHANCED
	registryHost string                 // 127.0.0.1:port of the registry (Host)
	registry     http.Handler           // the registry itself, without the login check
	noReferrers  bool                   // the registry answers the referrers API with 404
	denyDigests  bool                   // the registry refuses manifests with a subject
	// createRace makes CreateRepository behave as if another run created
	// the repository first: it appears, and the call fails with
	// RepositoryAlreadyExistsException.
	createRace bool
	// scanConfFailure scripts BatchGetRepositoryScanningConfiguration
	// per repository: a failure code, or "" for no entry at all.
	scanConfFailure map[string]string
	denied          map[string]bool          // operations answered AccessDeniedException
	putFailures     map[string]string        // tag -> error code PutImage of that tag answers
	putRaces        map[string]string        // tag -> digest another run puts it on just before our PutImage
	readFailure     string                   // error code BatchGetImage by digest answers
	delays          map[string]time.Duration // operations answered this late
	readDelay       time.Duration            // registry reads (GET, HEAD) answered this late
	started         map[string]bool          // digests StartImageScan was called for
}

// Start serves the stand-in until the test ends.
func Start(t testing.TB, region string) *Server {
	t.Helper()
	pw := make([]byte, 24)
	_, _ = rand.Read(pw)
	s := &Server{Region: region, Account: "123456789012", Password: hex.EncodeToString(pw), repos: map[string]*Repo{},
		ScanClock: time.Now().UTC().Truncate(time.Second),
		manifests: map[imageKey]manifest{}, scans: map[string][]ScanState{},
		scanConfFailure: map[string]string{}, denied: map[string]bool{}, putFailures: map[string]string{}, putRaces: map[string]string{}, delays: map[string]time.Duration{}, started: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	// The registry behind the repository URIs, as ECR has: an OCI
	// registry (go-containerregistry's, with the referrers API) that
	// wants the login GetAuthorizationToken hands out.
	reg := registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0)))
	s.registry = reg
	rs := httptest.NewServer(s.registryAuth(reg))
	t.Cleanup(rs.Close)
	s.registryHost = strings.TrimPrefix(rs.URL, "http://")
	return s
}

// registryAuth admits requests with the ECR login (basic auth AWS and
// the token's password), as ECR's registry does, and hides the referrers
// API when NoReferrersAPI was called.
func (s *Server) registryAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, ok := r.BasicAuth()
		if !ok || user != "AWS" || pw != s.Password {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+s.Host()+`",service="ecr.amazonaws.com"`)
			http.Error(w, `{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}`, http.StatusUnauthorized)
			return
		}
		s.mu.Lock()
		hide, deny, delay := s.noReferrers, s.denyDigests, s.readDelay
		s.mu.Unlock()
		if delay > 0 && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if deny && r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			body, _ := io.ReadAll(r.Body)
			if bytes.Contains(body, []byte(`"subject"`)) {
				http.Error(w, `{"errors":[{"code":"DENIED","message":"not authorized to perform: ecr:PutImage"}]}`, http.StatusForbidden)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		if hide && strings.Contains(r.URL.Path, "/referrers/") {
			http.Error(w, `404 page not found`, http.StatusNotFound)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// DenyReferrers makes the registry refuse manifests with a subject (the
// referrers; images still push), as a registry that does not take OCI 1.1
// manifests, or a policy against them, would.
func (s *Server) DenyReferrers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denyDigests = true
}

// DelayRegistryReads makes the registry answer each read (GET, HEAD) d
// late, as a slow or congested path to it does.
func (s *Server) DelayRegistryReads(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readDelay = d
}

// NoReferrersAPI makes the registry answer the referrers API with 404,
// as registries before OCI 1.1 do.
func (s *Server) NoReferrersAPI() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noReferrers = true
}

// AddRepository creates a repository as if it existed before the run.
func (s *Server) AddRepository(name string, immutable bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[name] = &Repo{Name: name, Immutable: immutable, Tags: map[string]string{}}
}

// SetExclusions gives repository name tag mutability exclusion filters.
func (s *Server) SetExclusions(name string, filters ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[name].Exclusions = filters
}

// immutableTag is ECR's rule: the repository's mutability, reversed for
// tags an exclusion filter matches.
func (r *Repo) immutableTag(tag string) bool {
	excluded := slices.ContainsFunc(r.Exclusions, func(f string) bool { ok, _ := path.Match(f, tag); return ok })
	return r.Immutable != excluded
}

// SetTag points tag at digest in repository name.
func (s *Server) SetTag(name, tag, digest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[name].Tags[tag] = digest
}

// RaceCreate makes the next CreateRepository lose a race to another run.
func (s *Server) RaceCreate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.createRace = true
}

// Repository returns a copy of the named repository.
func (s *Server) Repository(name string) (Repo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.repos[name]
	if !ok {
		return Repo{}, false
	}
	c := *r
	c.Tags = map[string]string{}
	for k, v := range r.Tags {
		c.Tags[k] = v
	}
	return c, true
}

// Operations lists the operations called, in order.
func (s *Server) Operations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ops := make([]string, len(s.calls))
	for i, c := range s.calls {
		ops[i] = c.Operation
	}
	return ops
}

// Host is the registry host the stand-in hands out: its registry on
// loopback (ECR's would be <account>.dkr.ecr.<region>.amazonaws.com).
func (s *Server) Host() string { return s.registryHost }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	if r.Method != http.MethodPost || !strings.HasPrefix(target, targetPrefix) {
		awsError(w, http.StatusBadRequest, "UnknownOperationException", "expected POST with X-Amz-Target "+targetPrefix+"*")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		awsError(w, http.StatusBadRequest, "SerializationException", "Content-Type must be application/x-amz-json-1.1, got "+ct)
		return
	}
	// A SigV4 signature scoped to this region and the ecr service.
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 ") || !strings.Contains(auth, "/"+s.Region+"/ecr/aws4_request") {
		awsError(w, http.StatusForbidden, "UnrecognizedClientException", "missing or mis-scoped SigV4 signature")
		return
	}
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		awsError(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	op := strings.TrimPrefix(target, targetPrefix)
	s.mu.Lock()
	delay := s.delays[op]
	s.mu.Unlock()
	select { // a slow answer, which the caller may give up on
	case <-time.After(delay):
	case <-r.Context().Done():
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, Call{Operation: op, Body: body})
	if s.denied[op] {
		awsError(w, http.StatusBadRequest, "AccessDeniedException",
			fmt.Sprintf("User: arn:aws:iam::%s:user/ci is not authorized to perform: ecr:%s", s.Account, op))
		return
	}
	handle, ok := s.operations()[op]
	if !ok {
		awsError(w, http.StatusBadRequest, "UnknownOperationException", "stand-in does not implement "+op)
		return
	}
	handle(w, body)
}

// operations are the ECR API operations the stand-in answers (s.mu held).
func (s *Server) operations() map[string]func(http.ResponseWriter, map[string]any) {
	return map[string]func(http.ResponseWriter, map[string]any){
		"GetAuthorizationToken":                   s.getAuthorizationToken,
		"DescribeRepositories":                    s.describeRepositories,
		"CreateRepository":                        s.createRepository,
		"BatchGetImage":                           s.batchGetImage,
		"DescribeImages":                          s.describeImages,
		"PutImage":                                s.putImage,
		"GetRegistryScanningConfiguration":        s.getRegistryScanningConfiguration,
		"BatchGetRepositoryScanningConfiguration": s.batchGetRepositoryScanningConfiguration,
		"DescribeImageScanFindings":               s.describeScan,
		"StartImageScan":                          s.startScan,
	}
}

func (s *Server) getAuthorizationToken(w http.ResponseWriter, body map[string]any) {
	token := base64.StdEncoding.EncodeToString([]byte("AWS:" + s.Password))
	reply(w, map[string]any{"authorizationData": []any{map[string]any{
		"authorizationToken": token,
		"expiresAt":          float64(time.Now().Add(12 * time.Hour).Unix()),
		"proxyEndpoint":      "https://" + s.Host(),
	}}})
}

func (s *Server) describeRepositories(w http.ResponseWriter, body map[string]any) {
	var out []any
	for _, n := range stringList(body["repositoryNames"]) {
		repo, ok := s.repos[n]
		if !ok {
			awsError(w, http.StatusBadRequest, "RepositoryNotFoundException",
				fmt.Sprintf("The repository with name '%s' does not exist in the registry with id '%s'", n, s.Account))
			return
		}
		out = append(out, s.repoJSON(repo))
	}
	reply(w, map[string]any{"repositories": out})
}

func (s *Server) createRepository(w http.ResponseWriter, body map[string]any) {
	name, _ := body["repositoryName"].(string)
	if _, ok := s.repos[name]; ok || s.createRace {
		if !ok {
			s.repos[name] = &Repo{Name: name, Immutable: true, Tags: map[string]string{}}
		}
		s.createRace = false
		awsError(w, http.StatusBadRequest, "RepositoryAlreadyExistsException",
			fmt.Sprintf("The repository with name '%s' already exists in the registry with id '%s'", name, s.Account))
		return
	}
	repo := &Repo{Name: name, Tags: map[string]string{}}
	mut, _ := body["imageTagMutability"].(string)
	repo.Immutable = strings.HasPrefix(mut, "IMMUTABLE")
	filters, _ := body["imageTagMutabilityExclusionFilters"].([]any)
	if strings.HasSuffix(mut, "_WITH_EXCLUSION") != (len(filters) > 0) {
		awsError(w, http.StatusBadRequest, "InvalidParameterException", "imageTagMutabilityExclusionFilters go with a *_WITH_EXCLUSION imageTagMutability, and only with one")
		return
	}
	for _, f := range filters {
		filter, _ := f.(map[string]any)["filter"].(string)
		repo.Exclusions = append(repo.Exclusions, filter)
	}
	if sc, ok := body["imageScanningConfiguration"].(map[string]any); ok {
		repo.ScanOnPush, _ = sc["scanOnPush"].(bool)
	}
	s.repos[name] = repo
	reply(w, map[string]any{"repository": s.repoJSON(repo)})
}

// describeImages answers for images by digest, with the tags on each (as
// ECR does, sorted here); an unknown digest is ImageNotFoundException.
func (s *Server) describeImages(w http.ResponseWriter, body map[string]any) {
	name, repo, ok := s.requestRepo(w, body)
	if !ok {
		return
	}
	details := []any{}
	ids, _ := body["imageIds"].([]any)
	for _, id := range ids {
		digest, _ := id.(map[string]any)["imageDigest"].(string)
		var tags []string
		for tag, d := range repo.Tags {
			if d == digest {
				tags = append(tags, tag)
			}
		}
		if _, pushed := s.manifests[imageKey{name, digest}]; len(tags) == 0 && !pushed {
			awsError(w, http.StatusBadRequest, "ImageNotFoundException", "The image with imageId {imageDigest:'"+digest+"'} does not exist within the repository with name '"+name+"'")
			return
		}
		slices.Sort(tags)
		details = append(details, map[string]any{"registryId": s.Account, "repositoryName": name, "imageDigest": digest, "imageTags": tags})
	}
	reply(w, map[string]any{"imageDetails": details})
}

func (s *Server) batchGetImage(w http.ResponseWriter, body map[string]any) {
	name, repo, ok := s.requestRepo(w, body)
	if !ok {
		return
	}
	images, failures := []any{}, []any{}
	ids, _ := body["imageIds"].([]any)
	for _, id := range ids {
		if _, byTag := id.(map[string]any)["imageTag"]; !byTag && s.readFailure != "" {
			awsError(w, http.StatusBadRequest, s.readFailure, "stand-in: BatchGetImage by digest scripted to fail")
			return
		}
	}
	for _, id := range ids {
		tag, _ := id.(map[string]any)["imageTag"].(string)
		digest, _ := id.(map[string]any)["imageDigest"].(string)
		found := false
		if tag != "" {
			digest, found = repo.Tags[tag]
		} else {
			for _, d := range repo.Tags {
				found = found || d == digest
			}
			_, pushed := s.manifests[imageKey{name, digest}]
			found = found || pushed
		}
		if !found {
			failures = append(failures, map[string]any{
				"imageId": id, "failureCode": "ImageNotFound", "failureReason": "Requested image not found",
			})
			continue
		}
		imageID := map[string]any{"imageDigest": digest}
		if tag != "" {
			imageID["imageTag"] = tag
		}
		m, ok := s.manifests[imageKey{name, digest}]
		if !ok {
			m = manifest{mediaType: "application/vnd.oci.image.index.v1+json", body: manifestFor(digest)}
		}
		images = append(images, map[string]any{
			"registryId": s.Account, "repositoryName": name, "imageId": imageID,
			"imageManifest":          m.body,
			"imageManifestMediaType": m.mediaType,
		})
	}
	reply(w, map[string]any{"images": images, "failures": failures})
}

func (s *Server) putImage(w http.ResponseWriter, body map[string]any) {
	name, repo, ok := s.requestRepo(w, body)
	if !ok {
		return
	}
	manifest, _ := body["imageManifest"].(string)
	tag, _ := body["imageTag"].(string)
	digest, _ := body["imageDigest"].(string)
	if code := s.putFailures[tag]; code != "" {
		awsError(w, http.StatusBadRequest, code, "stand-in: PutImage of tag '"+tag+"' scripted to fail")
		return
	}
	if manifest != manifestFor(digest) && digestOf([]byte(manifest)) != digest {
		awsError(w, http.StatusBadRequest, "ImageDigestDoesNotMatchException", "manifest does not match imageDigest "+digest)
		return
	}
	if raced, ok := s.putRaces[tag]; ok {
		delete(s.putRaces, tag)
		repo.Tags[tag] = cmp.Or(raced, digest)
	}
	// An immutable tag refuses any PutImage once set, even of the image it
	// is on (aws/containers-roadmap#2179); a mutable one only a no-op.
	switch have, exists := repo.Tags[tag]; {
	case exists && repo.immutableTag(tag):
		awsError(w, http.StatusBadRequest, "ImageTagAlreadyExistsException", "The image tag '"+tag+"' already exists and cannot be overwritten because the repository is immutable.")
		return
	case exists && have == digest:
		awsError(w, http.StatusBadRequest, "ImageAlreadyExistsException", "Image with digest '"+digest+"' and tag '"+tag+"' already exists")
		return
	}
	// ECR has one store: a tag PutImage sets is pulled from the registry.
	// Images recorded with PushImage alone (not in the registry) get the
	// tag in the API only.
	if m, ok := s.manifests[imageKey{name, digest}]; ok && m.body == manifest && s.inRegistry(name, digest) {
		req := httptest.NewRequest(http.MethodPut, "/v2/"+name+"/manifests/"+tag, strings.NewReader(manifest))
		req.Header.Set("Content-Type", m.mediaType)
		rec := httptest.NewRecorder()
		s.registry.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			// Not retryable: the SDK would retry a 5xx into ImageAlreadyExists.
			awsError(w, http.StatusBadRequest, "InvalidParameterException", "stand-in registry refused tag "+tag+": "+rec.Body.String())
			return
		}
	}
	repo.Tags[tag] = digest
	reply(w, map[string]any{"image": map[string]any{
		"registryId": s.Account, "repositoryName": name,
		"imageId": map[string]any{"imageTag": tag, "imageDigest": digest}, "imageManifest": manifest,
	}})
}

// inRegistry reports whether the registry holds the manifest digest in
// repository name.
func (s *Server) inRegistry(name, digest string) bool {
	rec := httptest.NewRecorder()
	s.registry.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/v2/"+name+"/manifests/"+digest, nil))
	return rec.Code == http.StatusOK
}

func (s *Server) getRegistryScanningConfiguration(w http.ResponseWriter, body map[string]any) {
	typ := s.scanType
	if typ == "" {
		typ = "BASIC"
	}
	reply(w, map[string]any{"registryId": s.Account, "scanningConfiguration": map[string]any{"scanType": typ, "rules": []any{}}})
}

func (s *Server) batchGetRepositoryScanningConfiguration(w http.ResponseWriter, body map[string]any) {
	// Per-repository problems are failures entries of a 200 answer
	// (RepositoryScanningConfigurationFailure, failureCode
	// REPOSITORY_NOT_FOUND), not an exception.
	var confs, failures []any
	for _, n := range stringList(body["repositoryNames"]) {
		repo, ok := s.repos[n]
		code, scripted := s.scanConfFailure[n]
		switch {
		case !ok:
			code, scripted = "REPOSITORY_NOT_FOUND", true
		case scripted && code == "":
			continue // answered with neither entry
		}
		if scripted {
			failures = append(failures, map[string]any{"repositoryName": n, "failureCode": code,
				"failureReason": fmt.Sprintf("The repository with name '%s' does not exist in the registry with id '%s'", n, s.Account)})
			continue
		}
		confs = append(confs, map[string]any{
			"repositoryArn":  fmt.Sprintf("arn:aws:ecr:%s:%s:repository/%s", s.Region, s.Account, n),
			"repositoryName": n, "scanOnPush": repo.ScanOnPush, "scanFrequency": frequency(repo), "appliedScanFilters": []any{},
		})
	}
	reply(w, map[string]any{"scanningConfigurations": confs, "failures": failures})
}

// requestRepo looks up the request's repositoryName (s.mu held); where
// there is no such repository it answers RepositoryNotFoundException and
// returns ok false.
func (s *Server) requestRepo(w http.ResponseWriter, body map[string]any) (name string, repo *Repo, ok bool) {
	name, _ = body["repositoryName"].(string)
	repo, ok = s.repos[name]
	if !ok {
		awsError(w, http.StatusBadRequest, "RepositoryNotFoundException", "no repository "+name)
	}
	return name, repo, ok
}

type manifest struct{ mediaType, body string }

// imageKey names an image in one repository: ECR keeps images per
// repository, so a digest pushed to one is not found in another.
type imageKey struct{ repo, digest string }

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// PushImage records an image pushed to repository name under tag, as a
// registry push would: its manifest, addressable by digest (the SHA-256
// of manifest), and, for an image index, nothing else (platform manifests
// are looked up only for scans). It returns the digest.
func (s *Server) PushImage(name, tag, mediaType string, manifestJSON []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := digestOf(manifestJSON)
	s.manifests[imageKey{name, d}] = manifest{mediaType: mediaType, body: string(manifestJSON)}
	if tag != "" {
		s.repos[name].Tags[tag] = d
	}
	return d
}

func (s *Server) repoJSON(r *Repo) map[string]any {
	mut := "MUTABLE"
	if r.Immutable {
		mut = "IMMUTABLE"
	}
	var filters []map[string]any
	if len(r.Exclusions) > 0 {
		mut += "_WITH_EXCLUSION"
		for _, f := range r.Exclusions {
			filters = append(filters, map[string]any{"filterType": "WILDCARD", "filter": f})
		}
	}
	return map[string]any{
		"imageTagMutabilityExclusionFilters": filters,
		"repositoryName":                     r.Name,
		"repositoryArn":                      fmt.Sprintf("arn:aws:ecr:%s:%s:repository/%s", s.Region, s.Account, r.Name),
		"registryId":                         s.Account,
		"repositoryUri":                      s.Host() + "/" + r.Name,
		"imageTagMutability":                 mut,
		"imageScanningConfiguration":         map[string]any{"scanOnPush": r.ScanOnPush},
		"createdAt":                          float64(time.Now().Unix()),
	}
}

func stringList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(v)
}

func awsError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", typ)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"__type": typ, "message": msg})
}

// Isolate clears the AWS configuration a developer's machine or CI may
// carry (profiles, shared files, metadata service) for the rest of the
// test, so only what the test sets is seen.
func Isolate(t testing.TB) {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_CONFIG_FILE":                        dir + "/config",
		"AWS_SHARED_CREDENTIALS_FILE":            dir + "/credentials",
		"AWS_EC2_METADATA_DISABLED":              "true", // never reach 169.254.169.254
		"AWS_PROFILE":                            "",
		"AWS_DEFAULT_PROFILE":                    "",
		"AWS_REGION":                             "",
		"AWS_DEFAULT_REGION":                     "",
		"AWS_ACCESS_KEY_ID":                      "",
		"AWS_SECRET_ACCESS_KEY":                  "",
		"AWS_SESSION_TOKEN":                      "",
		"AWS_ROLE_ARN":                           "",
		"AWS_WEB_IDENTITY_TOKEN_FILE":            "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     "",
		"AWS_ENDPOINT_URL":                       "",
		"AWS_ENDPOINT_URL_ECR":                   "",
	} {
		t.Setenv(k, v)
	}
}

// Env isolates the test's AWS configuration and points it at the
// stand-in: static test credentials, the region, AWS_ENDPOINT_URL_ECR.
// It sets the process environment, so the test cannot run in parallel;
// Vars, passed as ecr.Options.Env, does the same without.
func (s *Server) Env(t testing.TB) {
	t.Helper()
	Isolate(t)
	for k, v := range s.Vars(t) {
		t.Setenv(k, v)
	}
}

// Vars are the AWS variables that point a preflight at the stand-in:
// static test credentials, the region, AWS_ENDPOINT_URL_ECR, and shared
// config files that do not exist (none of the developer's profiles).
func (s *Server) Vars(t testing.TB) map[string]string {
	dir := t.TempDir()
	return map[string]string{
		"AWS_ACCESS_KEY_ID":           "AKIDSTANDIN",
		"AWS_SECRET_ACCESS_KEY":       "standin-secret",
		"AWS_REGION":                  s.Region,
		"AWS_ENDPOINT_URL_ECR":        s.URL,
		"AWS_CONFIG_FILE":             dir + "/config",
		"AWS_SHARED_CREDENTIALS_FILE": dir + "/credentials",
	}
}
