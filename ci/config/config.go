// Package config is the pipeline's configuration: Vars, the table of
// every environment variable it reads (name, default, accepted values,
// meaning, parser), and Load, which reads and validates all of them at
// once, up front, into a Config.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"dagger.io/dagger"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/mitchellh/go-homedir"

	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/engine"
	"github.com/example/sidecar/ci/imagesize"
	"github.com/example/sidecar/ci/vulncheck"
	"github.com/example/sidecar/internal/envbool"
	"github.com/example/sidecar/internal/redact"
)

// Config is the validated pipeline configuration.
type Config struct {
	Dir          string            // source directory (repository root)
	Platforms    []dagger.Platform // built and pushed
	HostPlatform dagger.Platform   // loaded into local Docker and smoke-tested
	SizeBudget   int64             // bytes, uncompressed
	LocalImage   string            // name for the local Docker image; "" = don't load
	OCITarball   string            // write the multi-platform OCI tarball here; "" = don't
	GoImage      string            // Dockerfile GO_IMAGE; "" = Dockerfile default
	RuntimeImage string            // Dockerfile RUNTIME_IMAGE; "" = Dockerfile default
	GoProxy      string            // Dockerfile GOPROXY; "" = Dockerfile default (DefaultGoProxy)
	MySQLImage   string            // smoke-test database and client image
	UnitTests    bool              // run go test ./... before the smoke test

	Repository       string // ECR repository name
	CreateRepository bool
	ScanOnPush       bool
	ImmutableTags    bool
	PushLatest       bool

	VulnCheck   bool          // govulncheck the image's binary before pushing
	VulnDB      string        // govulncheck database URL
	ScanTimeout time.Duration // longest wait for ECR's scan of the candidate
	ScanFailOn  string        // lowest ECR severity that stops the release; "" = none

	BuildWorkflow string // GitHub Actions: the reusable workflow running the pipeline, for the provenance's builder; "" = the run's own
}

// PlatformList is Platforms as PLATFORMS spells them.
func (c Config) PlatformList() string {
	s := make([]string, len(c.Platforms))
	for i, p := range c.Platforms {
		s[i] = string(p)
	}
	return strings.Join(s, ",")
}

// Error lists every bad variable at once, one line each.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	return "bad configuration (nothing was run):\n  - " + strings.Join(e.Problems, "\n  - ")
}

// knownPlatforms are the platforms ECS (Fargate and EC2) runs.
func knownPlatforms() []string { return []string{"linux/amd64", "linux/arm64"} }

// errAccepted is a parser's "bad value": the problem then says what the
// row accepts (Var.Accepted).
var errAccepted = errors.New("not an accepted value")

// Load reads the configuration for the source in dir from lookup
// (os.LookupEnv in production) and validates all of it: every row of Vars
// that the pipeline reads, by the row's parser, in table order.
func Load(dir string, lookup func(string) (string, bool)) (Config, error) {
	var problems []string
	problem := func(v Var, val, detail string) {
		problems = append(problems, v.problem(val, detail))
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		problems = append(problems, fmt.Sprintf("source directory %q: %v", dir, err))
	}
	c := Config{Dir: abs, HostPlatform: dagger.Platform("linux/" + runtime.GOARCH)}
	read := map[string]string{}
	for _, v := range Vars() {
		if v.Parse == nil {
			continue
		}
		val := v.value(lookup)
		read[v.Name] = val
		// Spaces alone are a value to the program that reads it (Dagger's
		// CLI takes them for the runner's address); "" may mean unset.
		if raw, ok := lookup(v.Name); ok && v.ReadBy != "" && (val != "" && raw != val || strings.TrimSpace(raw) == "" && (raw != "" || v.BlankIsSet)) {
			// The program that reads it takes the value as it is.
			problem(v, raw, fmt.Sprintf("blank, or with spaces around it, which the %s does not trim: unset it, or remove the spaces", v.ReadBy))
			continue
		}
		for _, detail := range v.details(val, unjoin(v.Parse(&c, val))) {
			problem(v, val, detail)
		}
	}
	// engineconn/env.go at v0.21.8: the SDK wants a token with the port.
	if tok, _ := lookup("DAGGER_SESSION_TOKEN"); read["DAGGER_SESSION_PORT"] != "" && tok == "" {
		problem(Var{Name: "DAGGER_SESSION_PORT"}, read["DAGGER_SESSION_PORT"],
			"set without DAGGER_SESSION_TOKEN; `dagger run` sets both: run inside it, or unset DAGGER_SESSION_PORT")
	}
	if c.BuildWorkflow != "" {
		if err := workflowInCheckout(c); err != nil {
			problem(Var{Name: "BUILD_WORKFLOW"}, c.BuildWorkflow, err.Error())
		}
	}
	// The local Docker runs this machine's platform.
	if c.LocalImage != "" && len(c.Platforms) > 0 && !slices.Contains(c.Platforms, c.HostPlatform) {
		problem(Var{Name: "PLATFORMS"}, read["PLATFORMS"],
			fmt.Sprintf("must include this machine's platform %s for the local image (or set LOCAL_IMAGE=none)", c.HostPlatform))
	}
	if len(problems) > 0 {
		return Config{}, &Error{Problems: problems}
	}
	return c, nil
}

// maxProblemsPerVar bounds the lines one variable gets. Each repeats the
// whole value, so a line per entry of a list of thousands (PLATFORMS)
// would print gigabytes.
const maxProblemsPerVar = 10

// details is what the problems errs, the row's parser's errors for val,
// say: each once, at most maxProblemsPerVar, then how many more there are.
func (v Var) details(val string, errs []error) []string {
	var out []string
	seen := map[string]bool{}
	more := 0
	for _, err := range errs {
		switch {
		case seen[err.Error()]:
			continue
		case len(out) == maxProblemsPerVar:
			more++
		default:
			out = append(out, v.detail(val, err))
		}
		seen[err.Error()] = true
	}
	if more > 0 {
		out = append(out, fmt.Sprintf("%d more problems with this value are not listed (fix the ones above first)", more))
	}
	return out
}

// detail is what a problem says of err, the row's parser's error for val.
// Where a credential's key hid a part of val, any reason may quote that
// part (a platform, a path, a library's text): only Accepted is said then.
func (v Var) detail(val string, err error) string {
	detail := err.Error()
	shown, keyed := v.shown(val)
	var lib libReason
	if (keyed || errors.As(err, &lib) && shown != val) && detail != errAccepted.Error() {
		err, detail = errAccepted, errAccepted.Error()+" (the reason is not shown: it may quote the part of the value hidden as "+redact.Mask+")"
	}
	if errors.Is(err, errAccepted) { // Accepted, plus any reason wrapped with it
		detail = v.Accepted + strings.TrimPrefix(detail, errAccepted.Error())
	}
	return detail
}

// problem is the line that names the row, its value (as shown shows it)
// and detail.
func (v Var) problem(val, detail string) string {
	shown, _ := v.shown(val)
	if val != "" && shown != val {
		detail = strings.ReplaceAll(detail, val, shown) // a parser's error may quote the value
	}
	return fmt.Sprintf("%s=%q: %s", v.Name, shown, detail)
}

// shown is val fit to print: as the row's Shown shows it, with a
// credential pasted with its key (password=…, token: …), which any row
// may be given, masked (redact.KeyedWith); keyed reports whether that hid
// more than Shown.
func (v Var) shown(val string) (shown string, keyed bool) {
	mask := v.Shown
	if mask == nil {
		mask = func(s string) string { return s }
	}
	shown = redact.KeyedWith(val, mask)
	return shown, shown != mask(val)
}

// Shown is val, the value of the variable name, fit to print as its row
// shows a refused one (Var.shown): for a step's line or an error quoting
// an accepted value, which may hold a credential pasted with its key (a
// path, OCI_TARBALL=/tmp/password=x.tar). A name with no row gets the
// masking every row has.
func Shown(name, val string) string {
	v, vars := Var{Name: name}, Vars()
	if i := slices.IndexFunc(vars, func(r Var) bool { return r.Name == name }); i >= 0 {
		v = vars[i]
	}
	shown, _ := v.shown(val)
	return shown
}

// ShownErr is err with its text as Shown shows val in it, for an error
// (a library's, the OS's) that may quote val or a path in it: where Shown
// hides a part of val, val is replaced by Shown's and the text is masked
// from a credential's key on (redact.Keyed), as its start is what quotes
// it, then the OS's reason, if any. errors.Is and As still see err.
func ShownErr(name, val string, err error) error {
	shown := Shown(name, val)
	if err == nil || shown == val {
		return err
	}
	text := redact.Keyed(strings.ReplaceAll(err.Error(), val, shown))
	if text == err.Error() {
		return err
	}
	var errno syscall.Errno // the OS's reason, which the mask may cut off, names no path
	if errors.As(err, &errno) && !strings.HasSuffix(text, errno.Error()) {
		text += " (" + errno.Error() + ")"
	}
	return redact.MaskedErr(err, text)
}

// libReason is errAccepted with a library's reason, whose text may quote
// any part of the value: Var.detail leaves it out where Shown hides a part
// (credentials), since replacing the whole value would not hide the part.
type libReason struct{ err error }

func (e libReason) Error() string        { return errAccepted.Error() + " (" + e.err.Error() + ")" }
func (e libReason) Is(target error) bool { return target == errAccepted }

// value is the row's value from lookup: trimmed, and the default when
// unset or blank.
func (v Var) value(lookup func(string) (string, bool)) string {
	if s, ok := lookup(v.Name); ok && strings.TrimSpace(s) != "" {
		return strings.TrimSpace(s)
	}
	if v.NoValue {
		return ""
	}
	return v.Default
}

// unjoin lists the errors errors.Join joined (err itself otherwise).
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// boolean parses a true/false row into the field it points at.
func boolean(field func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, val string) error {
		b, err := envbool.Parse(val)
		if err != nil {
			return errAccepted
		}
		*field(c) = b
		return nil
	}
}

// image parses an image reference row ("" = the Dockerfile's default).
func image(field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, val string) error {
		if val != "" {
			if _, err := name.ParseReference(val); err != nil {
				if redact.Userinfo(val) != val { // an @ that starts no digest
					return errAtInImage()
				}
				return libReason{err}
			}
			if err := checkDockerName(val); err != nil {
				return err
			}
		}
		*field(c) = val
		return nil
	}
}

// errAtInImage refuses an @ that starts no digest the row takes
// (LOCAL_IMAGE takes none): one text for every image row, and never the
// library's, which would quote the part before the @, most likely
// credentials.
func errAtInImage() error {
	return fmt.Errorf("%w (an @ in an image reference only starts a digest such as @sha256:…, where the variable takes one; credentials go to docker login, not into the reference)", errAccepted)
}

func parsePlatforms(c *Config, val string) error {
	var errs []error
	emptyEntry := false
	for _, p := range strings.Split(val, ",") {
		p = strings.TrimSpace(p)
		switch {
		case p == "":
			if !emptyEntry { // once, however many commas
				errs = append(errs, fmt.Errorf("%w (it has an empty entry)", errAccepted))
			}
			emptyEntry = true
		case !slices.Contains(knownPlatforms(), p):
			errs = append(errs, fmt.Errorf("%w (platform %q is not one of them)", errAccepted, p))
		case slices.Contains(c.Platforms, dagger.Platform(p)):
			errs = append(errs, fmt.Errorf("%w (platform %q is listed twice)", errAccepted, p))
		default:
			c.Platforms = append(c.Platforms, dagger.Platform(p))
		}
	}
	return errors.Join(errs...)
}

func parseSizeBudget(c *Config, val string) (err error) {
	if c.SizeBudget, err = imagesize.ParseSize(val); err != nil {
		var se *imagesize.SizeError
		if errors.As(err, &se) && se.Reason != "" {
			return fmt.Errorf("%w (%s)", errAccepted, se.Reason)
		}
		return errAccepted
	}
	return nil
}

func parseLocalImage(c *Config, val string) error {
	switch {
	case strings.EqualFold(val, "none"):
		c.LocalImage = ""
	case isBoolWord(val):
		// LOCAL_IMAGE=false would load an image named false:latest.
		return fmt.Errorf("%w (to skip the load, write none)", errAccepted)
	case strings.Contains(val, "@"):
		// A digest or credentials: what the library's error would quote.
		return errAtInImage()
	default:
		// As the load names it (dockerload.Load).
		if _, err := name.NewTag(val); err != nil {
			return libReason{err}
		}
		if err := checkDockerName(val); err != nil {
			return err
		}
		c.LocalImage = val
	}
	return nil
}

// isBoolWord is a value written as a boolean (envbool's spellings).
func isBoolWord(val string) bool {
	_, err := envbool.Parse(val)
	return err == nil
}

func parseOCITarball(c *Config, val string) error {
	if val == "" {
		return nil
	}
	path, err := filepath.Abs(val)
	if err != nil {
		return err
	}
	if err := existingDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("%w (%v)", errAccepted, err)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return errors.New("is a directory; want a file path in an existing directory (e.g. dist/sidecar.tar)")
	}
	if err := writableDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("its directory is not writable (%v); want a file path in a directory this user can write", err)
	}
	c.OCITarball = path
	return nil
}

// workflowPathRE is a workflow file's path: GitHub runs only the files
// directly in .github/workflows.
var workflowPathRE = regexp.MustCompile(`^\.github/workflows/[A-Za-z0-9._-]+\.ya?ml$`)

func parseBuildWorkflow(c *Config, val string) error {
	if val != "" && !workflowPathRE.MatchString(val) {
		return errAccepted
	}
	c.BuildWorkflow = val
	return nil
}

// workflowInCheckout refuses a BUILD_WORKFLOW the checkout lacks (a
// renamed or misspelt workflow): the provenance's builder would name a
// workflow that never ran.
func workflowInCheckout(c Config) error {
	st, err := os.Stat(filepath.Join(c.Dir, c.BuildWorkflow))
	if err == nil && st.Mode().IsRegular() {
		return nil
	}
	return fmt.Errorf("is not a file of this checkout (%s), so the provenance's builder would name a workflow that did not run; "+
		"want the path of the workflow file whose job runs the pipeline, such as .github/workflows/pipeline.yml", c.Dir)
}

func parseRepository(c *Config, val string) error {
	// Both are valid names too, so push would create a repository so named.
	if host, name, ok := strings.Cut(val, "/"); ok {
		switch {
		case registryHostRE.MatchString(host):
			name, _, _ = strings.Cut(name, "@") // a digest or tag names an image, not the repository
			if i := strings.LastIndexByte(name, ':'); i >= 0 {
				name = name[:i]
			}
			return fmt.Errorf("%w (this is a repository URI: give the name after the host, %q)", errAccepted, name)
		case host == "public.ecr.aws":
			return fmt.Errorf("%w (public.ecr.aws is ECR Public, which push does not publish to: give a private repository name)", errAccepted)
		}
	}
	if !ecr.ValidRepositoryName(val) {
		return errAccepted
	}
	c.Repository = val
	return nil
}

func parseVulnDB(c *Config, val string) error {
	if err := vulncheck.ValidDB(val); err != nil {
		return fmt.Errorf("%w (%v)", errAccepted, err)
	}
	c.VulnDB = val
	return nil
}

// DefaultGoProxy is the Dockerfile's GOPROXY default (TestDefaultImagesAgree
// ties the ARG to it).
const DefaultGoProxy = "https://proxy.golang.org"

// parseGoProxy takes Go's GOPROXY list for the image's go build, which runs
// in the engine's build container: only proxies that container can reach,
// and no credentials (build arguments reach the provenance). The build
// downloads modules into a cache that a new engine has empty: so not off
// first (go stops at off), and direct alone only with a GO_IMAGE that may
// have git (the Dockerfile's golang alpine has none). GO_IMAGE is parsed
// before (Vars order).
func parseGoProxy(c *Config, val string) error {
	if val == "" {
		return nil
	}
	var first string
	proxies := 0
	for _, el := range strings.FieldsFunc(val, func(r rune) bool { return r == ',' || r == '|' }) {
		el = strings.TrimSpace(el) // as go does (modfetch's proxyList)
		if first == "" {
			first = el
		}
		if el == "" || el == "direct" || el == "off" {
			continue
		}
		proxies++
		u, err := url.Parse(el)
		switch {
		case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
			return fmt.Errorf("%w (%q is not an http(s) URL, direct or off)", errAccepted, redact.Query(el))
		case u.User != nil || u.RawQuery != "" || u.Fragment != "":
			return fmt.Errorf("%w (%s has credentials, a query or a fragment in it; build arguments are recorded in the image's provenance)", errAccepted, redact.URL(el))
		case isLoopback(u.Hostname()):
			return fmt.Errorf("%w (%s is this machine's loopback, which the build container cannot reach; unset GOPROXY for the command, or name a proxy by an address the engine reaches)", errAccepted, el)
		}
	}
	switch {
	case first == "off":
		return fmt.Errorf("%w (off downloads nothing, and the image's go build downloads its modules into a cache that a new engine has empty; name a proxy the engine reaches, or unset GOPROXY for the command)", errAccepted)
	case proxies == 0 && c.GoImage == "":
		return fmt.Errorf("%w (direct without a proxy fetches modules with git, which the default GO_IMAGE %s lacks; name a proxy the engine reaches, or set GO_IMAGE to an image with git, such as golang:1.26)", errAccepted, DefaultGoImage)
	}
	c.GoProxy = val
	return nil
}

// shownGoProxy is a GOPROXY list fit to print: each proxy's credentials
// and query (either may hold a token) masked, wherever in the list it
// stands.
func shownGoProxy(val string) string {
	var b strings.Builder
	for {
		i := strings.IndexAny(val, ",|")
		if i < 0 {
			return b.String() + redact.Query(val)
		}
		b.WriteString(redact.Query(val[:i]) + val[i:i+1])
		val = val[i+1:]
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseRunnerHost checks the form only; the Dagger CLI reads the value
// (and knows its schemes), so a bad form would fail only at connect, after
// push's git and AWS steps.
func parseRunnerHost(_ *Config, val string) error {
	if val == "" {
		return nil
	}
	scheme, rest, ok := strings.Cut(val, "://")
	if !ok || rest == "" && scheme != "dagger-cloud" { // its driver reads no address (engine/client/drivers/cloud.go, Provision)
		return errAccepted
	}
	if !slices.Contains(runnerSchemes, scheme) {
		return fmt.Errorf("%w (the Dagger CLI knows no scheme %q; it knows %s)", errAccepted, scheme, strings.Join(runnerSchemes, ", "))
	}
	if scheme == "tcp" {
		if _, err := engine.TCPAddr(val); err != nil { // engine.Probe dials what it returns
			return fmt.Errorf("%w (%v)", errAccepted, err)
		}
	}
	return nil
}

// runnerSchemes are the engine address schemes the Dagger CLI has drivers
// for: the register calls in engine/client/drivers at v0.21.8 (cloud.go,
// container.go, dial.go).
var runnerSchemes = []string{"tcp", "unix", "ssh", "tls", "kube-pod", "dagger-cloud",
	"image", "container", "docker-image", "docker-container",
	"image+docker", "container+docker", "image+podman", "container+podman", "image+nerdctl", "container+nerdctl",
	"image+finch", "container+finch", "image+apple", "container+apple"}

// registryHostRE matches an ECR registry host (123456789012.dkr.ecr.eu-west-1.amazonaws.com;
// amazonaws.com.cn in China, amazonaws.eu in the European Sovereign Cloud).
var registryHostRE = regexp.MustCompile(`^[0-9]{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.(com|com\.cn|eu)$`)

// parseEndpoint checks the form only; the AWS SDK reads the value, and a
// bad one would fail at push's first ECR call without naming it.
func parseEndpoint(_ *Config, val string) error {
	if val == "" {
		return nil
	}
	u, err := url.Parse(val)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errAccepted
	}
	return nil
}

// parseSessionPort checks the form only: the SDK dials 127.0.0.1 at that
// port, and engine.Probe checks that something listens there.
func parseSessionPort(_ *Config, val string) error {
	if val == "" {
		return nil
	}
	if !engine.ValidPort(val) { // the probe dials 127.0.0.1:val
		return errAccepted
	}
	return nil
}

// parseCLIBin checks that the Dagger SDK finds the CLI it names, as the
// SDK looks for it (engineconn/cli.go at v0.21.8: homedir.Expand, then
// exec.LookPath): ~ or ~/… is in the home directory, and a name without
// a / is looked up in PATH.
func parseCLIBin(_ *Config, val string) error {
	if val == "" {
		return nil
	}
	if rest, ok := strings.CutPrefix(val, "~"); ok && rest != "" && rest[0] != '/' && rest[0] != '\\' {
		return fmt.Errorf("%w (the Dagger SDK expands ~ and ~/… only, not ~user)", errAccepted)
	}
	path, err := homedir.Expand(val) // the SDK's own expansion
	if err == nil {
		_, err = exec.LookPath(path)
	}
	if err != nil {
		return fmt.Errorf("%w (%v)", errAccepted, err)
	}
	return nil
}

// minScanTimeout is the shortest SCAN_TIMEOUT: ECR's scans take tens of
// seconds, and the gate asks every few (ecr.DefaultPoll); a wait that
// short fails the candidate every time, after it was pushed.
const minScanTimeout = 30 * time.Second

// MaxScanTimeout is the longest SCAN_TIMEOUT: the release job's
// timeout-minutes (.github/workflows/pipeline.yml; a test ties them), as
// a longer wait cannot end by itself there: the job is cancelled first.
const MaxScanTimeout = 45 * time.Minute

func parseScanTimeout(c *Config, val string) error {
	if strings.HasPrefix(val, "+") || strings.HasPrefix(val, "-") {
		return fmt.Errorf("%w, without a sign", errAccepted)
	}
	d, err := time.ParseDuration(val)
	if err != nil || d < minScanTimeout || d > MaxScanTimeout {
		return errAccepted
	}
	c.ScanTimeout = d
	return nil
}

// short is d as the docs write it: 2m, not 2m0s; 1h, not 1h0m0s.
func short(d time.Duration) string {
	s := d.String()
	if rest, ok := strings.CutSuffix(s, "m0s"); ok {
		s = rest + "m"
	}
	if rest, ok := strings.CutSuffix(s, "h0m"); ok {
		s = rest + "h"
	}
	return s
}

func parseFailOn(c *Config, val string) (err error) {
	if c.ScanFailOn, err = ecr.ParseFailOn(val); err != nil {
		return errAccepted
	}
	return nil
}

// IsError reports whether err is a configuration problem (exit 2).
func IsError(err error) bool {
	var ce *Error
	return errors.As(err, &ce)
}

// existingDir says what keeps dir from holding the tarball: missing, or
// not a directory.
func existingDir(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s does not exist", dir)
	case err != nil:
		return err
	case !st.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// writableDir checks, before any build, that the tarball can be written
// where asked: by creating and removing a file there, the only check that
// also holds for read-only mounts and ACLs.
func writableDir(dir string) error {
	f, err := os.CreateTemp(dir, ".oci-tarball-check-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}
