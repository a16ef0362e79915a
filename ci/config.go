// Package ci is the build pipeline: build, test and push of the sidecar
// image as Dagger pipelines, driven by the Mage targets in magefiles/.
// Configuration comes from environment variables, parsed and validated
// once, up front, into Config (LoadConfig); Vars is the table of every
// one, with its default.
package ci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"dagger.io/dagger"

	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/imagesize"
	"github.com/example/sidecar/ci/vulncheck"
	"github.com/example/sidecar/internal/envbool"
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
	vars := loadSettings()
	var problems []string
	// problem reports a bad value of name, saying why (detail).
	problem := func(name, val, detail string) {
		problems = append(problems, fmt.Sprintf("%s=%q: %s", name, val, detail))
	}
	// bad reports a bad value of name with what the table accepts.
	bad := func(name, val string) { problem(name, val, vars.row(name).Accepted) }
	get := func(name string) string {
		def := vars.value(name)
		if v, ok := lookup(name); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
		return def
	}
	boolean := func(name string) bool {
		v := get(name)
		b, err := envbool.Parse(v)
		if err != nil {
			bad(name, v)
		}
		return b
	}
	image := func(name string) string {
		v := get(name)
		if v != "" && !imageRefRE.MatchString(v) {
			bad(name, v)
		}
		return v
	}

	abs, err := filepath.Abs(dir)
	if err != nil {
		problems = append(problems, fmt.Sprintf("source directory %q: %v", dir, err))
	}
	c := Config{Dir: abs, HostPlatform: dagger.Platform("linux/" + runtime.GOARCH)}

	plats := get("PLATFORMS")
	emptyEntry := false
	for _, p := range strings.Split(plats, ",") {
		p = strings.TrimSpace(p)
		switch {
		case p == "":
			if !emptyEntry { // once, however many commas
				problem("PLATFORMS", plats, fmt.Sprintf("has an empty entry; want a comma-separated list of %s", strings.Join(knownPlatforms(), ", ")))
			}
			emptyEntry = true
		case !slices.Contains(knownPlatforms(), p):
			problem("PLATFORMS", plats, fmt.Sprintf("platform %q is not one of %s", p, strings.Join(knownPlatforms(), ", ")))
		case slices.Contains(c.Platforms, dagger.Platform(p)):
			problem("PLATFORMS", plats, fmt.Sprintf("platform %q is listed twice", p))
		default:
			c.Platforms = append(c.Platforms, dagger.Platform(p))
		}
	}
	budget := get("SIZE_BUDGET")
	if c.SizeBudget, err = imagesize.ParseSize(budget); err != nil {
		bad("SIZE_BUDGET", budget)
	}

	c.LocalImage = get("LOCAL_IMAGE")
	switch {
	case c.LocalImage == "none":
		c.LocalImage = ""
	case !imageRefRE.MatchString(c.LocalImage):
		bad("LOCAL_IMAGE", c.LocalImage)
	case len(c.Platforms) > 0 && !slices.Contains(c.Platforms, c.HostPlatform):
		// The local Docker runs this machine's platform.
		problem("PLATFORMS", plats, fmt.Sprintf("must include this machine's platform %s for the local image (or set LOCAL_IMAGE=none)", c.HostPlatform))
	}

	if c.OCITarball = get("OCI_TARBALL"); c.OCITarball != "" {
		if c.OCITarball, err = filepath.Abs(c.OCITarball); err != nil {
			problem("OCI_TARBALL", c.OCITarball, err.Error())
		} else if st, err := os.Stat(filepath.Dir(c.OCITarball)); err != nil || !st.IsDir() {
			bad("OCI_TARBALL", c.OCITarball)
		} else if st, err := os.Stat(c.OCITarball); err == nil && st.IsDir() {
			problem("OCI_TARBALL", c.OCITarball, "is a directory; want a file path in an existing directory (e.g. dist/sidecar.tar)")
		} else if err := writableDir(filepath.Dir(c.OCITarball)); err != nil {
			problem("OCI_TARBALL", c.OCITarball, fmt.Sprintf("its directory is not writable (%v); want a file path in a directory this user can write", err))
		}
	}

	c.GoImage = image("GO_IMAGE")
	c.RuntimeImage = image("RUNTIME_IMAGE")
	c.MySQLImage = image("MYSQL_IMAGE")
	c.UnitTests = boolean("UNIT_TESTS")

	c.Repository = get("ECR_REPOSITORY")
	if !ecr.ValidRepositoryName(c.Repository) {
		bad("ECR_REPOSITORY", c.Repository)
	}
	c.CreateRepository = boolean("ECR_CREATE_REPOSITORY")
	c.ScanOnPush = boolean("ECR_SCAN_ON_PUSH")
	c.ImmutableTags = boolean("ECR_IMMUTABLE_TAGS")
	c.PushLatest = boolean("PUSH_LATEST")

	c.VulnCheck = boolean("VULN_CHECK")
	c.VulnDB = get("GOVULNDB")
	if err := vulncheck.ValidDB(c.VulnDB); err != nil {
		problem("GOVULNDB", vulncheck.Redact(c.VulnDB), vars.row("GOVULNDB").Accepted+" ("+err.Error()+")")
	}
	timeout := get("SCAN_TIMEOUT")
	if c.ScanTimeout, err = time.ParseDuration(timeout); err != nil || c.ScanTimeout <= 0 {
		bad("SCAN_TIMEOUT", timeout)
	}
	failOn := get("SCAN_FAIL_ON")
	if c.ScanFailOn, err = ecr.ParseFailOn(failOn); err != nil {
		bad("SCAN_FAIL_ON", failOn)
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
