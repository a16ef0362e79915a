package ci

import (
	"strings"

	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/vulncheck"
	"github.com/example/sidecar/internal/envbool"
)

// Var is one row of the pipeline's settings table, Vars. The table is the
// one owner of every setting's name, default, accepted values and meaning:
// LoadConfig takes its defaults and the accepted-values text of its errors
// from it, and tests tie docs/pipeline.md's variables table and the Mage
// targets' help to it.
type Var struct {
	// Name is the environment variable.
	Name string
	// Default is the value used when the variable is unset or blank. With
	// NoValue it is instead a note on what applies then (the value is
	// empty), shown in parentheses, e.g. (unset). Plain text: the docs and
	// the Mage help both show it.
	Default string
	NoValue bool
	// Accepted is what LoadConfig's error for a bad value says is accepted
	// (e.g. "want true or false (also 1/0)"); "" where the checks give more
	// specific messages, or another program reads the variable.
	Accepted string
	// Help is the meaning, as docs/pipeline.md shows it (Markdown).
	Help string
	// ReadBy names the program that reads the variable when LoadConfig
	// does not ("" = LoadConfig): the pipeline passes it through.
	ReadBy string
	// Label is the docs' Variable cell where the row documents a group of
	// variables read together (it names Name among them); "" = `Name`.
	Label string
}

// Accepted values shared by several rows.
const (
	acceptBool  = "want " + envbool.Accepted
	acceptImage = "want an image reference such as mysql:8.4 or registry.example.com/team/golang:1.26-alpine"
)

// Vars lists every variable the pipeline reads: first LoadConfig's, then
// those it leaves to the AWS SDK, the Dagger SDK and the docker CLI.
// Adding a setting is one row here (and a line in LoadConfig parsing it).
func Vars() []Var {
	return []Var{
		{Name: "PLATFORMS", Default: strings.Join(knownPlatforms(), ","),
			Help: "Platforms to build and push. Must include the engine's platform (the smoke test runs it) and, unless `LOCAL_IMAGE=none`, this machine's."},
		{Name: "SIZE_BUDGET", Default: "50MB", Accepted: "want bytes or a number with kB, MB, GB, KiB, MiB or GiB (e.g. 50MB)",
			Help: "Largest allowed **uncompressed** image per platform. Units: `kB`, `MB`, `GB` (decimal, like `docker images`), `KiB`, `MiB`, `GiB`, or plain bytes."},
		{Name: "LOCAL_IMAGE", Default: "sidecar:latest", Accepted: "want an image name such as sidecar:latest, or none",
			Help: "Name of the image that `build` loads into the local Docker; `none` skips the load."},
		{Name: "OCI_TARBALL", Default: "unset", NoValue: true, Accepted: "want a file path in an existing directory",
			Help: "Also write the multi-platform image as an OCI tarball to this path."},
		{Name: "GO_IMAGE", Default: DefaultGoImage + ", the Dockerfile's default", NoValue: true, Accepted: acceptImage,
			Help: "Go build image. `golang:1.26-alpine` pulls from Docker Hub; or an ECR pull-through cache or company mirror."},
		{Name: "RUNTIME_IMAGE", Default: DefaultRuntimeImage + ", the Dockerfile's default", NoValue: true, Accepted: acceptImage,
			Help: "Runtime base image (`alpine:3.22` for Docker Hub, or a mirror)."},
		{Name: "MYSQL_IMAGE", Default: DefaultMySQLImage, Accepted: acceptImage,
			Help: "Database and client image for the smoke test (`mysql:8.4` for Docker Hub). MariaDB images (`mariadb:11`) work too."},
		{Name: "UNIT_TESTS", Default: "true", Accepted: acceptBool,
			Help: "Run `go test ./...` in `test` and `push`. CI sets `false` because it runs the unit tests in its own step."},
		{Name: "ECR_REPOSITORY", Default: "sidecar", Accepted: "want lowercase letters, digits, . _ - with / separators, 2-256 characters (e.g. sidecar or team/sidecar)",
			Help: "ECR repository to push to (e.g. `team/sidecar`)."},
		{Name: "ECR_CREATE_REPOSITORY", Default: "true", Accepted: acceptBool,
			Help: "Create the repository when it is missing. Set `false` to require an existing one (the role then needs no `ecr:CreateRepository`)."},
		{Name: "ECR_SCAN_ON_PUSH", Default: "true", Accepted: acceptBool,
			Help: "Scan-on-push for a repository the pipeline creates."},
		{Name: "ECR_IMMUTABLE_TAGS", Default: "true", Accepted: acceptBool,
			Help: "Immutable tags for a repository the pipeline creates."},
		{Name: "PUSH_LATEST", Default: "false", Accepted: acceptBool,
			Help: "Also push `latest`. Requires a repository with mutable tags."},
		{Name: "VULN_CHECK", Default: "true", Accepted: acceptBool,
			Help: "Before `push` pushes anything, run govulncheck (binary mode) on each platform's `sidecar` binary from the built image; a finding that affects it stops the push. `false` skips the check."},
		{Name: "GOVULNDB", Default: vulncheck.DefaultDB, Accepted: "want an http(s):// or file:// URL of a Go vulnerability database, e.g. " + vulncheck.DefaultDB,
			Help: "Go vulnerability database for `VULN_CHECK`: the public one, a mirror (`https://…`), or a local copy (`file:///absolute/path`; `file://relative/db` is refused). An authenticated mirror's password (`https://user:token@mirror/`) is printed as `xxxxx`. Checked before the build; unreachable fails within seconds."},
		{Name: "SCAN_TIMEOUT", Default: "10m", Accepted: "want a duration greater than zero such as 90s, 10m or 1h",
			Help: "Longest wait for ECR's scan of the pushed candidate (every platform manifest). A Go duration: `90s`, `10m`, `1h`."},
		{Name: "SCAN_FAIL_ON", Default: "CRITICAL", Accepted: "want one of " + strings.Join(ecr.FailOnValues(), ", "),
			Help: "Lowest ECR scan severity that stops the release: `CRITICAL`, `HIGH`, `MEDIUM`, `LOW`, or `none` (never stop). The version tag and `latest` are then not moved; the commit tag stays as an unreleased candidate."},

		{Name: "AWS_REGION", Default: "AWS SDK chain", NoValue: true, ReadBy: "AWS SDK",
			Label: "`AWS_REGION`, `AWS_PROFILE`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, …",
			Help:  "Region and credentials for `push`, resolved the usual AWS way (environment, profiles, SSO, web identity, instance or task role)."},
		{Name: "AWS_ENDPOINT_URL_ECR", Default: "AWS default", NoValue: true, ReadBy: "AWS SDK",
			Help: "Override the ECR API endpoint (VPC endpoint, tests). `AWS_ENDPOINT_URL` overrides it for all services."},
		{Name: "_EXPERIMENTAL_DAGGER_RUNNER_HOST", Default: "engine in local Docker", NoValue: true, ReadBy: "Dagger SDK",
			Help: "Use another Dagger engine, e.g. a shared remote one (see [Sharing one Dagger engine](#sharing-one-dagger-engine-and-its-cache-across-a-team))."},
		{Name: "_EXPERIMENTAL_DAGGER_CLI_BIN", Default: "downloaded", NoValue: true, ReadBy: "Dagger SDK",
			Help: "Use an installed `dagger` CLI (v0.21.8) instead of downloading one."},
		{Name: "DOCKER_HOST", Default: "the docker CLI's current context", NoValue: true, ReadBy: "docker CLI",
			Label: "`DOCKER_HOST`, `DOCKER_CONTEXT`",
			Help:  "Docker daemon that starts the engine and receives `sidecar:latest`. Found as Dagger finds it, by running `docker version`, so `docker context use colima` (OrbStack, Docker Desktop) works without `DOCKER_HOST`; rootless Docker cannot run the engine, which needs a privileged container."},
	}
}

// settings indexes the rows LoadConfig reads by name.
type settings map[string]Var

func loadSettings() settings {
	s := settings{}
	for _, v := range Vars() {
		if v.ReadBy == "" {
			s[v.Name] = v
		}
	}
	return s
}

// row is name's row. A name missing from the table is a bug in
// LoadConfig, which every test of it would hit.
func (s settings) row(name string) Var {
	v, ok := s[name]
	if !ok {
		panic("ci: LoadConfig reads " + name + ", which is not in Vars")
	}
	return v
}

// value is what applies when name is unset or blank.
func (s settings) value(name string) string {
	if v := s.row(name); !v.NoValue {
		return v.Default
	}
	return ""
}
