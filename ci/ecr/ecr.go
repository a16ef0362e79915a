// Package ecr is the pipeline's side of Amazon ECR: the preflight that runs
// before any build (region, credentials, registry login, repository), the
// lookup of tags already in the repository, and the push decision.
//
// The API endpoint follows the SDK's usual configuration, so
// AWS_ENDPOINT_URL_ECR (or AWS_ENDPOINT_URL) points it elsewhere; the push
// host is the repository URI ECR returns.
package ecr

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/smithy-go/logging"

	"github.com/example/sidecar/internal/redact"
)

// Options configures the preflight.
type Options struct {
	Repository    string // repository name, e.g. "sidecar"
	Create        bool   // create the repository when missing
	ScanOnPush    bool   // for a created repository
	ImmutableTags bool   // for a created repository
	// PushLatest: tag latest on every push, which a repository created
	// with ImmutableTags would refuse after the first; then it is not
	// created.
	PushLatest bool
	// BaseEndpoint overrides the ECR API endpoint (tests); empty means the
	// SDK's resolution, which honours AWS_ENDPOINT_URL_ECR.
	BaseEndpoint string
	// CredentialsTimeout bounds the credential chain (which may probe the
	// EC2 metadata service); default 15s.
	CredentialsTimeout time.Duration
	// CallTimeout bounds each ECR API call; 0 = CallTimeout (the constant).
	CallTimeout time.Duration
	// ProgressEvery is how often a long wait is reported; 0 = ProgressEvery.
	ProgressEvery time.Duration
	// Log receives the AWS SDK's own log lines, less the IMDSv1 fallback
	// warning (see sdkLogger); os.Stderr when nil.
	Log io.Writer
	// Report receives the lines saying what a long wait on AWS still
	// waits for, one every ProgressEvery; nil: they go to Log.
	Report func(line string)
	// Env, when set, supplies the AWS variables envOptions and envRegion
	// read, ahead of the process environment, which the SDK still reads
	// for everything else; nil: the SDK reads the process environment
	// alone (production). Tests that each point at their own
	// ECR stand-in run in parallel through it.
	Env func(string) (string, bool)
}

// envOptions turns the AWS variables env sets into SDK options, which take
// precedence over the process environment as the variables themselves
// do over the shared files: the region, static keys, the profile and
// its files, and whether the credential chain may ask the EC2 metadata
// service. It also returns the ECR endpoint env names, "" for none.
func envOptions(env func(string) (string, bool)) ([]func(*config.LoadOptions) error, string) {
	if env == nil {
		// The SDK reads the environment itself; the endpoint is still
		// wanted, to name it in messages.
		return nil, cmp.Or(strings.TrimSpace(os.Getenv("AWS_ENDPOINT_URL_ECR")), strings.TrimSpace(os.Getenv("AWS_ENDPOINT_URL")))
	}
	get := func(k string) string { v, _ := env(k); return strings.TrimSpace(v) }
	var opts []func(*config.LoadOptions) error
	if r := envRegion(env); r != "" {
		opts = append(opts, config.WithRegion(r))
	}
	if id, secret := get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY"); id != "" && secret != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(id, secret, get("AWS_SESSION_TOKEN"))))
	}
	if p := get("AWS_PROFILE"); p != "" {
		opts = append(opts, config.WithSharedConfigProfile(p))
	}
	if f := get("AWS_CONFIG_FILE"); f != "" {
		opts = append(opts, config.WithSharedConfigFiles([]string{f}))
	}
	if f := get("AWS_SHARED_CREDENTIALS_FILE"); f != "" {
		opts = append(opts, config.WithSharedCredentialsFiles([]string{f}))
	}
	// Read as the SDK reads it (config/env_config.go,
	// setEC2IMDSClientEnableState): true or false in any case, else unset.
	switch d := get("AWS_EC2_METADATA_DISABLED"); {
	case strings.EqualFold(d, "true"):
		opts = append(opts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	case strings.EqualFold(d, "false"):
		opts = append(opts, config.WithEC2IMDSClientEnableState(imds.ClientEnabled))
	}
	return opts, cmp.Or(get("AWS_ENDPOINT_URL_ECR"), get("AWS_ENDPOINT_URL"))
}

// envRegion is the region the environment names (AWS_REGION, else
// AWS_DEFAULT_REGION); env nil reads the process's.
func envRegion(env func(string) (string, bool)) string {
	if env == nil {
		env = os.LookupEnv
	}
	get := func(k string) string { v, _ := env(k); return strings.TrimSpace(v) }
	return cmp.Or(get("AWS_REGION"), get("AWS_DEFAULT_REGION"))
}

// Registry is a logged-in ECR repository. Its password is kept out of
// String and fmt verbs.
type Registry struct {
	client     *ecr.Client
	Region     string
	Repository string // name
	URI        string // host/name, where images are pushed
	Host       string // registry host for WithRegistryAuth
	Username   string
	password   string
	Immutable  bool // the repository's tag mutability (IMMUTABLE or IMMUTABLE_WITH_EXCLUSION)
	// Exclusions are the wildcard filters of a *_WITH_EXCLUSION setting:
	// tags they match have the other mutability.
	Exclusions []string
	Created    bool // this preflight created the repository
}

// Password is the registry password from GetAuthorizationToken. Pass it to
// the engine as a secret; never print it.
func (r *Registry) Password() string { return r.password }

// String describes the registry without secrets.
func (r *Registry) String() string {
	mut := "mutable tags"
	if r.Immutable {
		mut = "immutable tags"
	}
	if len(r.Exclusions) > 0 {
		mut += " except " + strings.Join(r.Exclusions, ", ")
	}
	return fmt.Sprintf("%s (%s, %s)", r.URI, r.Region, mut)
}

// ImmutableTag reports whether tag, once set, cannot be moved: the
// repository's setting, reversed for a tag its exclusion filters match.
func (r *Registry) ImmutableTag(tag string) bool {
	return r.Immutable != slices.ContainsFunc(r.Exclusions, func(f string) bool { return wildcardMatch(f, tag) })
}

// wildcardMatch is ECR's WILDCARD filter: * stands for any run of
// characters. A filter holds only tag characters and *, none of which
// path.Match reads otherwise (nor does a tag hold a /).
func wildcardMatch(filter, tag string) bool {
	ok, _ := path.Match(filter, tag)
	return ok
}

// GoString keeps %#v from printing the password.
func (r *Registry) GoString() string { return "ecr.Registry{" + r.String() + "}" }

// Ref is the image reference for tag.
func (r *Registry) Ref(tag string) string { return r.URI + ":" + tag }

// regionRE matches AWS region names: us-east-1, us-gov-west-1,
// cn-northwest-1, eusc-de-east-1 (a test checks every region the SDK knows).
var regionRE = regexp.MustCompile(RegionPattern)

// RegionPattern is regionRE's expression; the workflow's Release settings
// step checks AWS_REGION with it too.
const RegionPattern = `^[a-z]{2,4}(-[a-z]+)+-[0-9]+$`

var repoRE = regexp.MustCompile(`^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$`)

// ValidRepositoryName reports whether name is an ECR repository name.
func ValidRepositoryName(name string) bool {
	return len(name) >= 2 && len(name) <= 256 && repoRE.MatchString(name)
}

// PreflightError lists everything missing from the AWS setup at once.
type PreflightError struct{ Problems []string }

func (e *PreflightError) Error() string {
	return "AWS preflight failed (nothing was built or pushed):\n  - " + strings.Join(e.Problems, "\n  - ")
}

// sdkLogger writes the SDK's log lines as its default logger does, but
// drops "falling back to IMDSv1": the credential chain probes the EC2
// metadata service wherever no other credentials are found, and anything
// at 169.254.169.254 that refuses the IMDSv2 token (403/404/405) makes the
// SDK print that warning, which is noise here: a real lack of credentials
// is reported by the preflight itself, naming what to set.
type sdkLogger struct{ w io.Writer }

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	if c == logging.Warn && strings.HasPrefix(format, "falling back to IMDSv1") {
		return
	}
	fmt.Fprintf(l.w, "SDK %s %s %s\n", time.Now().Format("2006/01/02 15:04:05"), c, fmt.Sprintf(format, v...))
}

// checkRegionAndCredentials fails naming each of the region and the
// credentials that is missing; the credential chain's wait is w (its
// bound DefaultCredentialsTimeout when zero). A wait ctx ended is no
// finding: its error is the wait's own.
func checkRegionAndCredentials(ctx context.Context, cfg aws.Config, w Wait) error {
	var problems []string
	if p := regionProblem(cfg.Region); p != "" {
		problems = append(problems, p)
	}
	if w.Bound <= 0 {
		w.Bound = DefaultCredentialsTimeout
	}
	err := watched(ctx, w, func(ctx context.Context) error {
		_, err := cfg.Credentials.Retrieve(ctx)
		return err
	})
	if err != nil && ctx.Err() != nil {
		// Stopped (Ctrl-C, the run's deadline), not found missing: no
		// problem to fix, and watched's error says what stopped the wait.
		return err
	}
	if err != nil {
		problems = append(problems, "AWS credentials not found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, "+
			"or run with a role (GitHub Actions: aws-actions/configure-aws-credentials) — "+firstLine(err))
	}
	if len(problems) > 0 {
		return &PreflightError{Problems: problems}
	}
	return nil
}

// regionProblem is what is wrong with the region the SDK resolved, or "".
func regionProblem(region string) string {
	switch {
	case region == "":
		return "AWS region is not set: set AWS_REGION (or AWS_DEFAULT_REGION, or a region in your AWS_PROFILE)"
	case !regionRE.MatchString(region):
		// The SDK takes any text, and fails only when it builds the
		// endpoint. A credential pasted there (password=…) is not shown.
		return fmt.Sprintf("AWS region %q is not a region name; want one such as us-east-1 or eu-west-1, from AWS_REGION (or AWS_DEFAULT_REGION, or your AWS_PROFILE's region)", redact.Keyed(region))
	}
	return ""
}

// loadConfig is the SDK's configuration from the environment and the
// shared files; a failure is a *PreflightError naming where to look.
func loadConfig(ctx context.Context, opts ...func(*config.LoadOptions) error) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return cfg, &PreflightError{Problems: []string{"AWS configuration could not be loaded (check AWS_PROFILE, AWS_CONFIG_FILE): " + firstLine(err)}}
	}
	return cfg, nil
}

// CheckRegion is Preflight's region check alone. It needs no network
// (the SDK reads the environment and the shared config files), so push
// runs it before it starts an engine: a missing region costs seconds, not
// an engine start. env is as Options.Env. Unless required, no region
// passes: mage config checks one only when set, as build and test need none;
// nor do they read the shared files, so then a profile or file they cannot
// load is no problem either, and only the environment's region is checked.
func CheckRegion(ctx context.Context, env func(string) (string, bool), required bool) error {
	loadOpts, _ := envOptions(env)
	cfg, err := loadConfig(ctx, loadOpts...)
	if err != nil && required {
		return err
	}
	if err != nil {
		cfg.Region = envRegion(env)
	}
	if cfg.Region == "" && !required {
		return nil
	}
	if p := regionProblem(cfg.Region); p != "" {
		return &PreflightError{Problems: []string{p}}
	}
	return nil
}

// Preflight checks region and credentials, logs in to ECR and ensures the
// repository exists. It fails fast and names what is missing.
func Preflight(ctx context.Context, opts Options) (*Registry, error) {
	if !ValidRepositoryName(opts.Repository) {
		return nil, fmt.Errorf("ECR_REPOSITORY=%q is not a valid repository name (lowercase letters, digits, . _ - and / separators, 2-256 characters)", opts.Repository)
	}
	log := cmp.Or[io.Writer](opts.Log, os.Stderr)
	loadOpts, envEndpoint := envOptions(opts.Env)
	opts.BaseEndpoint = cmp.Or(opts.BaseEndpoint, envEndpoint)
	bound, every := cmp.Or(opts.CallTimeout, CallTimeout), cmp.Or(opts.ProgressEvery, ProgressEvery)
	report := opts.Report
	if report == nil {
		report = func(line string) { fmt.Fprintln(log, line) }
	}
	cfg, err := loadConfig(ctx, append(loadOpts, config.WithLogger(sdkLogger{log}))...)
	if err != nil {
		return nil, err
	}
	if err := checkRegionAndCredentials(ctx, cfg, Wait{Report: report, What: "AWS credentials", Bound: opts.CredentialsTimeout, Every: every}); err != nil {
		return nil, err
	}
	endpoint := "the ECR endpoint of " + cfg.Region
	if opts.BaseEndpoint != "" {
		endpoint = redact.Userinfo(opts.BaseEndpoint) // a proxy's password, as AWS_ENDPOINT_URL shows it
	}
	client := ecr.NewFromConfig(cfg, func(o *ecr.Options) {
		if opts.BaseEndpoint != "" {
			o.BaseEndpoint = aws.String(opts.BaseEndpoint)
		}
		o.APIOptions = append(o.APIOptions, watchCalls(report, endpoint, bound, every))
	})
	reg := &Registry{client: client, Region: cfg.Region, Repository: opts.Repository}
	if err := reg.login(ctx); err != nil {
		return nil, err
	}
	if err := reg.ensure(ctx, opts); err != nil {
		return nil, err
	}
	return reg, nil
}

func (r *Registry) login(ctx context.Context) error {
	out, err := r.client.GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		return fmt.Errorf("ECR login (ecr:GetAuthorizationToken) in %s: %w", r.Region, err)
	}
	if len(out.AuthorizationData) == 0 || out.AuthorizationData[0].AuthorizationToken == nil {
		return errors.New("ECR login: GetAuthorizationToken returned no authorization data")
	}
	ad := out.AuthorizationData[0]
	raw, err := base64.StdEncoding.DecodeString(aws.ToString(ad.AuthorizationToken))
	if err != nil {
		return errors.New("ECR login: authorization token is not base64") // the token itself stays out of the error
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user == "" || pass == "" {
		return errors.New("ECR login: authorization token is not user:password")
	}
	r.Username, r.password = user, pass
	r.Host = hostOf(aws.ToString(ad.ProxyEndpoint)) // the token lasts 12 hours, longer than any run
	return nil
}

func (r *Registry) ensure(ctx context.Context, opts Options) error {
	repo, err := r.describe(ctx)
	var nf *types.RepositoryNotFoundException
	switch {
	case errors.As(err, &nf):
		if !opts.Create {
			return &PreflightError{Problems: []string{fmt.Sprintf("ECR repository %q does not exist in %s and ECR_CREATE_REPOSITORY=false: create it or allow creation", r.Repository, r.Region)}}
		}
		repo, err = r.create(ctx, opts)
		if err != nil {
			return err
		}
	case err != nil:
		return err
	}
	r.URI = aws.ToString(repo.RepositoryUri)
	if r.URI == "" {
		r.URI = r.Host + "/" + r.Repository
	}
	if r.Host == "" {
		r.Host, _, _ = strings.Cut(r.URI, "/")
	}
	r.Immutable = strings.HasPrefix(string(repo.ImageTagMutability), string(types.ImageTagMutabilityImmutable))
	r.Exclusions = nil
	if strings.HasSuffix(string(repo.ImageTagMutability), "_WITH_EXCLUSION") {
		for _, f := range repo.ImageTagMutabilityExclusionFilters {
			r.Exclusions = append(r.Exclusions, aws.ToString(f.Filter))
		}
	}
	return nil
}

func (r *Registry) describe(ctx context.Context) (types.Repository, error) {
	out, err := r.client.DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{r.Repository}})
	if err != nil {
		var nf *types.RepositoryNotFoundException
		if errors.As(err, &nf) {
			return types.Repository{}, err
		}
		return types.Repository{}, fmt.Errorf("ecr:DescribeRepositories for %q: %w", r.Repository, err)
	}
	if len(out.Repositories) == 0 {
		return types.Repository{}, &types.RepositoryNotFoundException{Message: aws.String("empty DescribeRepositories result")}
	}
	return out.Repositories[0], nil
}

func (r *Registry) create(ctx context.Context, opts Options) (types.Repository, error) {
	mut := types.ImageTagMutabilityMutable
	var exclude []types.ImageTagMutabilityExclusionFilter
	switch {
	case opts.ImmutableTags && opts.PushLatest:
		// Versions stay immutable; latest must move on every release.
		mut = types.ImageTagMutabilityImmutableWithExclusion
		exclude = []types.ImageTagMutabilityExclusionFilter{{FilterType: types.ImageTagMutabilityExclusionFilterTypeWildcard, Filter: aws.String("latest")}}
	case opts.ImmutableTags:
		mut = types.ImageTagMutabilityImmutable
	}
	out, err := r.client.CreateRepository(ctx, &ecr.CreateRepositoryInput{
		RepositoryName:                     aws.String(r.Repository),
		ImageScanningConfiguration:         &types.ImageScanningConfiguration{ScanOnPush: opts.ScanOnPush},
		ImageTagMutability:                 mut,
		ImageTagMutabilityExclusionFilters: exclude,
	})
	var exists *types.RepositoryAlreadyExistsException
	switch {
	case errors.As(err, &exists):
		// Another run created it between our describe and create: use theirs.
		return r.describe(ctx)
	case err != nil:
		return types.Repository{}, fmt.Errorf("ecr:CreateRepository %q: %w", r.Repository, err)
	}
	r.Created = true
	return *out.Repository, nil
}

// manifestTypes are the media types BatchGetImage may return; listing
// them keeps ECR from refusing an OCI index.
func manifestTypes() []string {
	return []string{
		"application/vnd.oci.image.index.v1+json",
		"application/vnd.oci.image.manifest.v1+json",
		"application/vnd.docker.distribution.manifest.list.v2+json",
		"application/vnd.docker.distribution.manifest.v2+json",
	}
}

// Lookup returns the digest each of tags points at in the repository;
// tags that do not exist are absent from the map.
func (r *Registry) Lookup(ctx context.Context, tags []string) (map[string]string, error) {
	ids := make([]types.ImageIdentifier, len(tags))
	for i, t := range tags {
		ids[i] = types.ImageIdentifier{ImageTag: aws.String(t)}
	}
	out, err := r.client.BatchGetImage(ctx, &ecr.BatchGetImageInput{
		RepositoryName: aws.String(r.Repository), ImageIds: ids, AcceptedMediaTypes: manifestTypes(),
	})
	if err != nil {
		return nil, fmt.Errorf("ecr:BatchGetImage for tags %v in %q: %w", tags, r.Repository, err)
	}
	found := map[string]string{}
	for _, img := range out.Images {
		if img.ImageId != nil && img.ImageId.ImageTag != nil {
			found[*img.ImageId.ImageTag] = aws.ToString(img.ImageId.ImageDigest)
		}
	}
	for _, f := range out.Failures {
		switch f.FailureCode {
		case types.ImageFailureCodeImageNotFound, types.ImageFailureCodeImageTagDoesNotMatchDigest:
			// absent: the tag is free
		default:
			tag := ""
			if f.ImageId != nil {
				tag = aws.ToString(f.ImageId.ImageTag)
			}
			return nil, fmt.Errorf("ecr:BatchGetImage tag %q in %q: %s: %s", tag, r.Repository, f.FailureCode, aws.ToString(f.FailureReason))
		}
	}
	return found, nil
}

func hostOf(endpoint string) string {
	h := endpoint
	if i := strings.Index(h, "://"); i >= 0 {
		h = h[i+3:]
	}
	h, _, _ = strings.Cut(h, "/")
	return h
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// TagsOf is every tag on the image with digest (ecr:DescribeImages).
func (r *Registry) TagsOf(ctx context.Context, digest string) ([]string, error) {
	out, err := r.client.DescribeImages(ctx, &ecr.DescribeImagesInput{
		RepositoryName: aws.String(r.Repository), ImageIds: []types.ImageIdentifier{{ImageDigest: aws.String(digest)}},
	})
	if err != nil {
		return nil, fmt.Errorf("ecr:DescribeImages %s in %q: %w", digest, r.Repository, err)
	}
	var tags []string
	for _, d := range out.ImageDetails {
		tags = append(tags, d.ImageTags...)
	}
	return tags, nil
}

// Retag points tag at the image already in the repository with digest,
// without pushing anything: ECR's PutImage with that image's manifest.
// Used to release (tag v1.2.3) the image a commit was already pushed as.
func (r *Registry) Retag(ctx context.Context, digest, tag string) error {
	out, err := r.client.BatchGetImage(ctx, &ecr.BatchGetImageInput{
		RepositoryName:     aws.String(r.Repository),
		ImageIds:           []types.ImageIdentifier{{ImageDigest: aws.String(digest)}},
		AcceptedMediaTypes: manifestTypes(),
	})
	if err != nil {
		return fmt.Errorf("ecr:BatchGetImage %s in %q: %w", digest, r.Repository, err)
	}
	if len(out.Images) == 0 || out.Images[0].ImageManifest == nil {
		return fmt.Errorf("ecr:BatchGetImage: image %s not found in %q", digest, r.Repository)
	}
	img := out.Images[0]
	_, err = r.client.PutImage(ctx, &ecr.PutImageInput{
		RepositoryName:         aws.String(r.Repository),
		ImageManifest:          img.ImageManifest,
		ImageManifestMediaType: img.ImageManifestMediaType,
		ImageDigest:            aws.String(digest),
		ImageTag:               aws.String(tag),
	})
	var already *types.ImageAlreadyExistsException
	var taken *types.ImageTagAlreadyExistsException
	switch {
	case errors.As(err, &already):
		return nil // the tag already names this image
	case errors.As(err, &taken):
		// Set since this run looked: ECR says so for an immutable tag even
		// on this very image (aws/containers-roadmap#2179).
		return r.tagTaken(ctx, digest, tag, err)
	case err != nil:
		return fmt.Errorf("ecr:PutImage tag %q on %s in %q: %w", tag, digest, r.Repository, err)
	}
	return nil
}

// tagTaken judges PutImage's ImageTagAlreadyExistsException (err) for
// tag: nil when the tag is on digest (another run released the same
// image), else a *TagTakenError.
func (r *Registry) tagTaken(ctx context.Context, digest, tag string, err error) error {
	now, lerr := r.Lookup(ctx, []string{tag})
	if lerr != nil {
		return fmt.Errorf("ecr:PutImage tag %q on %s in %q: %w; reading where the tag is now: %w", tag, digest, r.Repository, err, lerr)
	}
	switch {
	case sameDigest(now[tag], digest):
		return nil
	case now[tag] == "": // deleted since: a run again finds it free
		return fmt.Errorf("ecr:PutImage tag %q on %s in %q: %w; the tag is on no image now", tag, digest, r.Repository, err)
	}
	return &TagTakenError{Tag: tag, Existing: now[tag], Want: digest, Repository: r.Repository}
}

// TagTakenError is an immutable tag that another run put on another image
// between this run's lookup and its PutImage.
type TagTakenError struct {
	Tag, Existing, Want, Repository string
}

func (e *TagTakenError) Error() string {
	return fmt.Sprintf("tag %q in ECR repository %q was put on %s by another run while this run was releasing %s; "+
		"the repository has immutable tags, so it stays on %s (ECR: ImageTagAlreadyExistsException)", e.Tag, e.Repository, e.Existing, e.Want, e.Existing)
}
