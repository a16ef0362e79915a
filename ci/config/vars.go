package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/imagesize"
	"github.com/example/sidecar/ci/vulncheck"
	"github.com/example/sidecar/internal/envbool"
	"github.com/example/sidecar/internal/envtypo"
	"github.com/example/sidecar/internal/redact"
)

// Var is one row of the pipeline's settings table, Vars. The table is the
// one owner of every setting's name, default, accepted values, meaning and
// parser: Load runs the rows' parsers in order, and tests tie
// docs/pipeline.md's variables table and the Mage targets' help to it.
type Var struct {
	// Name is the environment variable.
	Name string
	// Default is the value used when the variable is unset or blank. With
	// NoValue it is instead a note on what applies then (the value is
	// empty), shown in parentheses, e.g. (unset). Plain text: the docs and
	// the Mage help both show it.
	Default string
	NoValue bool
	// Accepted is what Load's error for a bad value says is accepted
	// (e.g. "want true or false (also 1/0)"); every row with a Parse has
	// one, the whole message where a reason is hidden (Var.detail).
	Accepted string
	// Help is the meaning, as docs/pipeline.md shows it (Markdown).
	Help string
	// ReadBy names the program that uses the variable when the pipeline
	// does not ("" = Load stores it): the pipeline passes it through,
	// after checking its form when the row has a Parse.
	ReadBy string
	// BlankIsSet: ReadBy takes a variable that is set but blank as set
	// (os.LookupEnv), so a blank value is refused rather than read as
	// unset. The Dagger SDK does for DAGGER_SESSION_PORT
	// (engineconn/env.go) and _EXPERIMENTAL_DAGGER_CLI_BIN
	// (engineconn/cli.go) at v0.21.8.
	BlankIsSet bool
	// Label is the docs' Variable cell where the row documents a group of
	// variables read together (it names Name among them); "" = `Name`.
	Label string
	// Parse stores the value (trimmed; Default when unset or blank and
	// not NoValue) in c. Its error is errAccepted (the problem then says
	// Accepted), or says itself what is wrong; errors.Join for several.
	// nil for the rows another program reads.
	Parse func(c *Config, val string) error
	// Shown is how a value appears wherever it is printed, a bad one in
	// the error, an accepted one in a step's line (config.Shown):
	// credentials in a URL or an image reference hidden; nil = as given.
	// Either way a credential pasted with its key (password=…) is masked
	// (Var.shown).
	Shown func(string) string
}

// Accepted values shared by several rows.
const (
	acceptBool  = "want " + envbool.Accepted
	acceptImage = "want an image reference such as mysql:8.4 or registry.example.com/team/golang:1.26-alpine"
)

// Vars lists every variable the pipeline reads: first Load's, then
// those it leaves to the AWS SDK, the Dagger SDK and the docker CLI.
// Adding a setting is one row here, with its parser.
func Vars() []Var { return append(pipelineVars(), toolVars()...) }

// pipelineVars are the variables Load parses into a Config.
func pipelineVars() []Var {
	return []Var{
		{Name: "PLATFORMS", Default: strings.Join(knownPlatforms(), ","), Parse: parsePlatforms, Accepted: "want a comma-separated list of " + strings.Join(knownPlatforms(), ", ") + ", each once",
			Help: "Platforms to build and push. Must include the engine's platform (the smoke test runs it) and, unless `LOCAL_IMAGE=none`, this machine's."},
		{Name: "SIZE_BUDGET", Default: "50MB", Parse: parseSizeBudget, Accepted: "want " + imagesize.SizeForms(),
			Help: "Largest allowed **uncompressed** image per platform, from 1 byte to `10000GB`: a number with `kB`, `MB`, `GB` (decimal, like `docker images`), `KiB`, `MiB`, `GiB` or `B`, or a whole number of bytes from `1000000` (a smaller one, such as `50`, surely meant `50MB` and is refused)."},
		{Name: "LOCAL_IMAGE", Shown: redact.Userinfo, Default: "sidecar:latest", Parse: parseLocalImage, Accepted: "want an image name such as sidecar:latest (lower-case repository, no @digest), or none (any case)",
			Help: "Name of the image that `build` loads into the local Docker; `none` skips the load."},
		{Name: "OCI_TARBALL", Default: "unset", NoValue: true, Parse: parseOCITarball, Accepted: "want a file path in an existing directory",
			Help: "Also write the multi-platform image as an OCI tarball to this path."},
		{Name: "GO_IMAGE", Shown: redact.Userinfo, Default: DefaultGoImage + ", the Dockerfile's default", NoValue: true, Parse: image(func(c *Config) *string { return &c.GoImage }), Accepted: acceptImage,
			Help: "Go build image. `golang:1.26-alpine` pulls from Docker Hub; or an ECR pull-through cache or company mirror."},
		{Name: "RUNTIME_IMAGE", Shown: redact.Userinfo, Default: DefaultRuntimeImage + ", the Dockerfile's default", NoValue: true, Parse: image(func(c *Config) *string { return &c.RuntimeImage }), Accepted: acceptImage,
			Help: "Runtime base image (`alpine:3.22` for Docker Hub, or a mirror)."},
		{Name: "GOPROXY", Shown: shownGoProxy, Default: DefaultGoProxy + ", the Dockerfile's default", NoValue: true, Parse: parseGoProxy,
			Accepted: "want Go's GOPROXY list: http(s):// URLs without credentials or a query, direct or off, separated by , or | (not file:// or a loopback address, which the build container cannot reach; not off first; direct without a proxy only with a GO_IMAGE that has git)",
			Help:     "Go module proxy for the image's `go build`, which runs in the engine: a company mirror where `proxy.golang.org` is blocked. The `GOPROXY` environment variable is passed on (a value set with `go env -w` is not read); unset it for the command if the engine cannot reach that proxy. `off` first is refused (the build downloads modules), and so is `direct` without a proxy unless `GO_IMAGE` is set to an image with git (the default has none)."},
		{Name: "MYSQL_IMAGE", Shown: redact.Userinfo, Default: DefaultMySQLImage, Parse: image(func(c *Config) *string { return &c.MySQLImage }), Accepted: acceptImage,
			Help: "Database and client image for the smoke test (`mysql:8.4` for Docker Hub). MariaDB images (`mariadb:11`) work too."},
		{Name: "UNIT_TESTS", Default: "true", Parse: boolean(func(c *Config) *bool { return &c.UnitTests }), Accepted: acceptBool,
			Help: "Run `go test ./...` in `test` and `push`. CI sets `false` because it runs the unit tests in its own step."},
		{Name: "ECR_REPOSITORY", Default: "sidecar", Parse: parseRepository, Accepted: "want lowercase letters, digits, . _ - with / separators, 2-256 characters (e.g. sidecar or team/sidecar)",
			Help: "ECR repository to push to (e.g. `team/sidecar`)."},
		{Name: "ECR_CREATE_REPOSITORY", Default: "true", Parse: boolean(func(c *Config) *bool { return &c.CreateRepository }), Accepted: acceptBool,
			Help: "Create the repository when it is missing. Set `false` to require an existing one (the role then needs no `ecr:CreateRepository`)."},
		{Name: "ECR_SCAN_ON_PUSH", Default: "true", Parse: boolean(func(c *Config) *bool { return &c.ScanOnPush }), Accepted: acceptBool,
			Help: "Scan-on-push for a repository the pipeline creates."},
		{Name: "ECR_IMMUTABLE_TAGS", Default: "true", Parse: boolean(func(c *Config) *bool { return &c.ImmutableTags }), Accepted: acceptBool,
			Help: "Immutable tags for a repository the pipeline creates; with `PUSH_LATEST=true`, every tag but `latest` (`IMMUTABLE_WITH_EXCLUSION`)."},
		{Name: "PUSH_LATEST", Default: "false", Parse: boolean(func(c *Config) *bool { return &c.PushLatest }), Accepted: acceptBool,
			Help: "Also push `latest`. Requires `latest` to be mutable: a repository with mutable tags, or immutable ones with an exclusion filter matching `latest` (`IMMUTABLE_WITH_EXCLUSION`)."},
		{Name: "VULN_CHECK", Default: "true", Parse: boolean(func(c *Config) *bool { return &c.VulnCheck }), Accepted: acceptBool,
			Help: "Before `push` pushes anything, run govulncheck (binary mode) on each platform's `sidecar` binary from the built image; a finding that affects it stops the push. `false` skips the check."},
		{Name: "GOVULNDB", Default: vulncheck.DefaultDB, Parse: parseVulnDB, Shown: vulncheck.Redact, Accepted: "want an http(s):// or file:// URL of a Go vulnerability database, e.g. " + vulncheck.DefaultDB,
			Help: "Go vulnerability database for `VULN_CHECK`: the public one, a mirror (`https://…`), or a local copy (`file:///absolute/path`; `file://relative/db` is refused). An authenticated mirror's password (`https://user:token@mirror/`, or a token given as the user name) is printed as `xxxxx`; a query or fragment is refused. Checked before the build; unreachable fails within seconds."},
		{Name: "SCAN_TIMEOUT", Default: "10m", Parse: parseScanTimeout, Accepted: "want a duration from " + short(minScanTimeout) + " to " + short(MaxScanTimeout) + " such as 90s, 10m or 30m",
			Help: "Longest wait for ECR's scan of the pushed candidate (every platform manifest). A Go duration such as `90s`, `10m` or `30m`, from `" + short(minScanTimeout) +
				"` (ECR's scans take tens of seconds) to `" + short(MaxScanTimeout) + "` (the workflow job's `timeout-minutes`, which would cancel a longer wait). With enhanced scanning, a scan that ECR shows finished without results is taken for clean only after `" + short(ecr.DefaultResultsGrace) +
				"` (see the scan gate): give it `" + short(ecr.DefaultResultsGrace+time.Minute) + "` or more."},
		{Name: "SCAN_FAIL_ON", Default: "CRITICAL", Parse: parseFailOn, Accepted: "want one of " + strings.Join(ecr.FailOnValues(), ", "),
			Help: "Lowest ECR scan severity that stops the release: `CRITICAL`, `HIGH`, `MEDIUM`, `LOW`, or `none` (never stop). The version tag and `latest` are then not moved; the commit tag stays as an unreleased candidate."},
		{Name: "BUILD_WORKFLOW", Default: "unset", NoValue: true, Parse: parseBuildWorkflow, Accepted: "want a workflow file's path such as .github/workflows/pipeline.yml",
			Help: "In GitHub Actions, the reusable workflow whose job runs the pipeline (`pipeline.yml` sets `.github/workflows/pipeline.yml`): the provenance's builder is that file at `GITHUB_REF`, the workflow GitHub's signing certificate and attestation name. GitHub sets no variable for it (`GITHUB_WORKFLOW_REF` is the caller's, `ci.yml`). Unset: the workflow of `GITHUB_WORKFLOW_REF`. Ignored outside GitHub Actions; a path this checkout lacks (a renamed or misspelt workflow) is refused."},
	}
}

// toolVars are left to the AWS SDK, the Dagger SDK and the docker CLI;
// Load checks the form of some of them.
func toolVars() []Var {
	return []Var{
		{Name: "AWS_REGION", Default: "AWS SDK chain", NoValue: true, ReadBy: "AWS SDK",
			Label: "`AWS_REGION`, `AWS_PROFILE`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, …",
			Help:  "Region and credentials for `push`, resolved the usual AWS way (environment, profiles, SSO, web identity, instance or task role)."},
		{Name: "AWS_ENDPOINT_URL_ECR", Default: "AWS default", NoValue: true, ReadBy: "AWS SDK", Parse: parseEndpoint, Shown: redact.Userinfo,
			Accepted: "want an http:// or https:// URL with a host, such as https://vpce-0abc.api.ecr.eu-west-1.vpce.amazonaws.com",
			Help:     "Override the ECR API endpoint (VPC endpoint, tests); it takes precedence over `AWS_ENDPOINT_URL`."},
		{Name: "AWS_ENDPOINT_URL", Default: "AWS default", NoValue: true, ReadBy: "AWS SDK", Parse: parseEndpoint, Shown: redact.Userinfo,
			Accepted: "want an http:// or https:// URL with a host, such as http://localhost:4566",
			Help:     "Override every AWS endpoint push calls (a local AWS emulator); `AWS_ENDPOINT_URL_ECR` takes precedence for ECR."},
		{Name: "_EXPERIMENTAL_DAGGER_RUNNER_HOST", Shown: redact.Query, Default: "engine in local Docker", NoValue: true, ReadBy: "Dagger SDK", Parse: parseRunnerHost,
			Accepted: "want an engine address scheme://…, such as tcp://engine.internal:1234, unix:///run/dagger/engine.sock or docker-container://dagger-engine",
			Help:     "Use another Dagger engine, e.g. a shared remote one (see [Sharing one Dagger engine](#sharing-one-dagger-engine-and-its-cache-across-a-team))."},
		{Name: "_EXPERIMENTAL_DAGGER_CLI_BIN", Default: "downloaded", NoValue: true, ReadBy: "Dagger SDK", BlankIsSet: true, Parse: parseCLIBin,
			Accepted: "want an executable dagger CLI: its path, ~/… in the home directory, or a name found in PATH",
			Help:     "Use an installed `dagger` CLI (v0.21.8) instead of downloading one: its path, `~/…` in the home directory, or a name found in `PATH`."},
		{Name: "DAGGER_SESSION_PORT", Default: "unset", NoValue: true, ReadBy: "Dagger SDK", BlankIsSet: true, Parse: parseSessionPort,
			Label:    "`DAGGER_SESSION_PORT`, `DAGGER_SESSION_TOKEN`",
			Accepted: "want a port number from 1 to 65535 on 127.0.0.1, as `dagger run` sets it; unset it to let the pipeline open its own session",
			Help:     "Set by `dagger run`: the targets then use its session (and engine) instead of opening their own."},
		{Name: "DOCKER_HOST", Default: "the docker CLI's current context", NoValue: true, ReadBy: "docker CLI",
			Label: "`DOCKER_HOST`, `DOCKER_CONTEXT`",
			Help:  "Docker daemon that starts the engine and receives `sidecar:latest`. Found as Dagger finds it, by running `docker version`, so `docker context use colima` (OrbStack, Docker Desktop) works without `DOCKER_HOST`; rootless Docker cannot run the engine, which needs a privileged container."},
	}
}

// labelNameRE finds the variable names a row's Label documents with it.
var labelNameRE = regexp.MustCompile(`\b_*[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b`)

// names is every variable name Vars documents, Labels' included.
func names() []string {
	var ns []string
	for _, v := range Vars() {
		ns = append(ns, v.Name)
		for _, n := range labelNameRE.FindAllString(v.Label, -1) {
			if n != v.Name {
				ns = append(ns, n)
			}
		}
	}
	return ns
}

// TypoWarnings warns about each variable in environ (os.Environ form) that
// no program of the pipeline reads but that looks like one it does
// (envtypo.Find: ECR_REPO for ECR_REPOSITORY), saying what applies
// instead. Values are not shown.
func TypoWarnings(environ []string) []string {
	rows := map[string]Var{}
	for _, v := range Vars() {
		rows[v.Name] = v
	}
	var out []string
	// Other programs' variables a step or two from ours: Go's GONOPROXY
	// (modules fetched without GOPROXY) is set beside GOPROXY on purpose.
	environ = slices.DeleteFunc(slices.Clone(environ), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return name == "GONOPROXY"
	})
	for _, t := range envtypo.Find(environ, names()) {
		if otherAWSEndpoint(t.Variable, t.Meant) {
			continue
		}
		w := fmt.Sprintf("WARNING: %s is set but not read; did you mean %s?", t.Variable, t.Meant)
		if v, ok := rows[t.Meant]; ok && v.ReadBy == "" {
			w += " " + applies(v, environ)
		}
		out = append(out, w)
	}
	return out
}

// otherAWSEndpoint reports whether name, a typo of meant to envtypo, is
// rather the AWS SDK's endpoint variable of another service: the SDK reads
// AWS_ENDPOINT_URL_<service ID> for every service, and some IDs are a
// letter or two from ECR's (awsIDsNearECR). Any other, such as ERC or EXR,
// is still taken for a typo.
func otherAWSEndpoint(name, meant string) bool {
	svc, ok := strings.CutPrefix(name, "AWS_ENDPOINT_URL_")
	return ok && meant == "AWS_ENDPOINT_URL_ECR" && slices.Contains(awsIDsNearECR, svc)
}

// awsIDsNearECR are the AWS service IDs (as the SDK's endpoint variables
// spell them) within two edits of ECR.
var awsIDsNearECR = []string{"ACM", "EBS", "EC2", "ECS", "EFS", "EKS", "EMR"}

// applies says what the pipeline uses for v instead of the typo.
func applies(v Var, environ []string) string {
	for _, kv := range environ {
		if name, _, _ := strings.Cut(kv, "="); name == v.Name {
			return v.Name + " is set too."
		}
	}
	if v.NoValue {
		return v.Name + " is unset."
	}
	return v.Name + " is unset, so " + v.Name + "=" + v.Default + " applies."
}
