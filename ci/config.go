// Package ci is the build pipeline: build, test and push of the sidecar
// image as Dagger pipelines, driven by the Mage targets in magefiles/.
// Configuration comes from environment variables, parsed and validated
// once, up front, into Config (LoadConfig); Vars documents every one.
package ci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"dagger.io/dagger"

	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/imagesize"
	"github.com/example/sidecar/ci/vulncheck"
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
}

// Var documents one configuration variable.
type Var struct {
	Name, Default, Help string
}

// Vars lists every variable LoadConfig reads, with its default.
func Vars() []Var {
	return []Var{
		{"PLATFORMS", "linux/amd64,linux/arm64", "platforms to build, comma-separated (linux/amd64, linux/arm64)"},
		{"SIZE_BUDGET", "50MB", "largest allowed uncompressed image per platform (as `docker images` shows); kB/MB/GB or KiB/MiB/GiB or bytes"},
		{"LOCAL_IMAGE", "sidecar:latest", "name of the host-platform image loaded into local Docker by build; `none` to skip"},
		{"OCI_TARBALL", "(none)", "also write the multi-platform image as an OCI tarball to this path"},
		{"GO_IMAGE", "(Dockerfile default)", "Go build image, e.g. a mirror or ECR pull-through cache"},
		{"RUNTIME_IMAGE", "(Dockerfile default)", "runtime base image"},
		{"MYSQL_IMAGE", "mysql:8.4", "database and `mysql` client image for the smoke test"},
		{"UNIT_TESTS", "true", "run `go test ./...` in test and push (CI that already ran them sets false)"},
		{"ECR_REPOSITORY", "sidecar", "ECR repository pushed to"},
		{"ECR_CREATE_REPOSITORY", "true", "create the repository when missing"},
		{"ECR_SCAN_ON_PUSH", "true", "scan-on-push for a created repository"},
		{"ECR_IMMUTABLE_TAGS", "true", "immutable tags for a created repository"},
		{"PUSH_LATEST", "false", "also push the `latest` tag (needs a repository with mutable tags)"},
		{"VULN_CHECK", "true", "run govulncheck on each platform's sidecar binary before push; any finding affecting it stops the push"},
		{"GOVULNDB", vulncheck.DefaultDB, "Go vulnerability database for VULN_CHECK: an http(s):// mirror or a file:// directory"},
		{"SCAN_TIMEOUT", "10m", "longest wait for ECR's scan of the pushed candidate (a Go duration: 90s, 10m, 1h)"},
		{"SCAN_FAIL_ON", "CRITICAL", "lowest ECR scan severity that stops the release: " + strings.Join(ecr.FailOnValues(), ", ")},
	}
}

// ConfigError lists every bad variable at once, one line each.
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string {
	return "bad configuration (nothing was run):\n  - " + strings.Join(e.Problems, "\n  - ")
}

var imageRefRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._/:@-]*$`)

// knownPlatforms are the platforms ECS (Fargate and EC2) runs.
func knownPlatforms() []string { return []string{"linux/amd64", "linux/arm64"} }

// LoadConfig reads the configuration for the source in dir from lookup
// (os.LookupEnv in production) and validates all of it.
func LoadConfig(dir string, lookup func(string) (string, bool)) (Config, error) {
	var problems []string
	bad := func(name, val, accepted string) {
		problems = append(problems, fmt.Sprintf("%s=%q: %s", name, val, accepted))
	}
	get := func(name, def string) string {
		if v, ok := lookup(name); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
		return def
	}
	boolean := func(name string, def bool) bool {
		v := get(name, strconv.FormatBool(def))
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad(name, v, "want true or false (also 1/0)")
		}
		return b
	}
	image := func(name, def string) string {
		v := get(name, def)
		if v != "" && !imageRefRE.MatchString(v) {
			bad(name, v, "want an image reference such as mysql:8.4 or registry.example.com/team/golang:1.26-alpine")
		}
		return v
	}

	abs, err := filepath.Abs(dir)
	if err != nil {
		problems = append(problems, fmt.Sprintf("source directory %q: %v", dir, err))
	}
	c := Config{Dir: abs, HostPlatform: dagger.Platform("linux/" + runtime.GOARCH)}

	plats := get("PLATFORMS", strings.Join(knownPlatforms(), ","))
	for _, p := range strings.Split(plats, ",") {
		p = strings.TrimSpace(p)
		switch {
		case !slices.Contains(knownPlatforms(), p):
			bad("PLATFORMS", plats, fmt.Sprintf("platform %q is not one of %s", p, strings.Join(knownPlatforms(), ", ")))
		case slices.Contains(c.Platforms, dagger.Platform(p)):
			bad("PLATFORMS", plats, fmt.Sprintf("platform %q is listed twice", p))
		default:
			c.Platforms = append(c.Platforms, dagger.Platform(p))
		}
	}
	budget := get("SIZE_BUDGET", "50MB")
	if c.SizeBudget, err = imagesize.ParseSize(budget); err != nil {
		bad("SIZE_BUDGET", budget, "want bytes or a number with kB, MB, GB, KiB, MiB or GiB (e.g. 50MB)")
	}

	c.LocalImage = get("LOCAL_IMAGE", "sidecar:latest")
	switch {
	case c.LocalImage == "none":
		c.LocalImage = ""
	case !imageRefRE.MatchString(c.LocalImage):
		bad("LOCAL_IMAGE", c.LocalImage, "want an image name such as sidecar:latest, or none")
	case len(c.Platforms) > 0 && !slices.Contains(c.Platforms, c.HostPlatform):
		// The local Docker runs this machine's platform.
		bad("PLATFORMS", plats, fmt.Sprintf("must include this machine's platform %s for the local image (or set LOCAL_IMAGE=none)", c.HostPlatform))
	}

	if c.OCITarball = get("OCI_TARBALL", ""); c.OCITarball != "" {
		if c.OCITarball, err = filepath.Abs(c.OCITarball); err != nil {
			bad("OCI_TARBALL", c.OCITarball, err.Error())
		} else if st, err := os.Stat(filepath.Dir(c.OCITarball)); err != nil || !st.IsDir() {
			bad("OCI_TARBALL", c.OCITarball, "want a file path in an existing directory")
		}
	}

	c.GoImage = image("GO_IMAGE", "")
	c.RuntimeImage = image("RUNTIME_IMAGE", "")
	c.MySQLImage = image("MYSQL_IMAGE", "mysql:8.4")
	c.UnitTests = boolean("UNIT_TESTS", true)

	c.Repository = get("ECR_REPOSITORY", "sidecar")
	if !ecr.ValidRepositoryName(c.Repository) {
		bad("ECR_REPOSITORY", c.Repository, "want lowercase letters, digits, . _ - with / separators, 2-256 characters (e.g. sidecar or team/sidecar)")
	}
	c.CreateRepository = boolean("ECR_CREATE_REPOSITORY", true)
	c.ScanOnPush = boolean("ECR_SCAN_ON_PUSH", true)
	c.ImmutableTags = boolean("ECR_IMMUTABLE_TAGS", true)
	c.PushLatest = boolean("PUSH_LATEST", false)

	c.VulnCheck = boolean("VULN_CHECK", true)
	c.VulnDB = get("GOVULNDB", vulncheck.DefaultDB)
	if err := vulncheck.ValidDB(c.VulnDB); err != nil {
		bad("GOVULNDB", c.VulnDB, "want an http(s):// or file:// URL of a Go vulnerability database, e.g. "+vulncheck.DefaultDB+" ("+err.Error()+")")
	}
	timeout := get("SCAN_TIMEOUT", "10m")
	if c.ScanTimeout, err = time.ParseDuration(timeout); err != nil || c.ScanTimeout <= 0 {
		bad("SCAN_TIMEOUT", timeout, "want a duration greater than zero such as 90s, 10m or 1h")
	}
	failOn := get("SCAN_FAIL_ON", "CRITICAL")
	if c.ScanFailOn, err = ecr.ParseFailOn(failOn); err != nil {
		bad("SCAN_FAIL_ON", failOn, err.Error())
	}

	if len(problems) > 0 {
		return Config{}, &ConfigError{Problems: problems}
	}
	return c, nil
}

// IsConfigError reports whether err is a configuration problem (exit 2).
func IsConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}
