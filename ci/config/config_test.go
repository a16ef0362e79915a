package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"dagger.io/dagger"
)

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c, err := Load(dir, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Dir:              dir,
		Platforms:        []dagger.Platform{"linux/amd64", "linux/arm64"},
		HostPlatform:     dagger.Platform("linux/" + runtime.GOARCH),
		SizeBudget:       50_000_000,
		LocalImage:       "sidecar:latest",
		MySQLImage:       "public.ecr.aws/docker/library/mysql:8.4",
		Repository:       "sidecar",
		CreateRepository: true,
		ScanOnPush:       true,
		ImmutableTags:    true,
		UnitTests:        true,
	}
	if c.Dir != want.Dir || !slices.Equal(c.Platforms, want.Platforms) || c.HostPlatform != want.HostPlatform ||
		c.SizeBudget != want.SizeBudget || c.LocalImage != want.LocalImage || c.OCITarball != "" ||
		c.GoImage != "" || c.RuntimeImage != "" || c.MySQLImage != want.MySQLImage || c.Repository != want.Repository ||
		c.CreateRepository != want.CreateRepository || c.ScanOnPush != want.ScanOnPush || c.ImmutableTags != want.ImmutableTags || c.PushLatest || !c.UnitTests {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
	// Every documented variable has a documented default.
	for _, v := range Vars() {
		if v.Name == "" || v.Default == "" || v.Help == "" {
			t.Errorf("undocumented variable %+v", v)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, ".github", "workflows"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".github", "workflows", "pipeline.yml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, c Config)
		bad   []string // each must appear in the error, one problem per line
	}{
		{name: "overrides", env: map[string]string{
			"PLATFORMS": " linux/" + runtime.GOARCH + " ", "SIZE_BUDGET": "48MiB", "LOCAL_IMAGE": "none",
			"OCI_TARBALL": filepath.Join(dir, "img.tar"), "GO_IMAGE": "123.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/golang:1.26-alpine",
			"RUNTIME_IMAGE": "mirror.example/alpine:3.22", "MYSQL_IMAGE": "mariadb:11", "ECR_REPOSITORY": "team/sidecar",
			"ECR_CREATE_REPOSITORY": "false", "ECR_SCAN_ON_PUSH": "0", "ECR_IMMUTABLE_TAGS": "FALSE", "PUSH_LATEST": "1", "UNIT_TESTS": "false",
		}, check: func(t *testing.T, c Config) {
			if len(c.Platforms) != 1 || c.SizeBudget != 48<<20 || c.LocalImage != "" || c.OCITarball != filepath.Join(dir, "img.tar") ||
				!strings.HasSuffix(c.GoImage, "golang:1.26-alpine") || c.RuntimeImage != "mirror.example/alpine:3.22" || c.MySQLImage != "mariadb:11" ||
				c.Repository != "team/sidecar" || c.CreateRepository || c.ScanOnPush || c.ImmutableTags || !c.PushLatest || c.UnitTests {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "empty values mean default", env: map[string]string{"SIZE_BUDGET": "", "ECR_REPOSITORY": "  "}, check: func(t *testing.T, c Config) {
			if c.SizeBudget != 50_000_000 || c.Repository != "sidecar" {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "unknown platform", env: map[string]string{"PLATFORMS": "linux/amd64,linux/arm64,windows/amd64"},
			bad: []string{`PLATFORMS="linux/amd64,linux/arm64,windows/amd64": want a comma-separated list of linux/amd64, linux/arm64, each once (platform "windows/amd64" is not one of them)`}},
		{name: "local image needs this machine's platform", env: map[string]string{"PLATFORMS": otherPlatform()},
			bad: []string{"must include this machine's platform linux/" + runtime.GOARCH, "LOCAL_IMAGE=none"}},
		{name: "other platform only, no local image", env: map[string]string{"PLATFORMS": otherPlatform(), "LOCAL_IMAGE": "none"},
			check: func(t *testing.T, c Config) {
				if len(c.Platforms) != 1 || string(c.Platforms[0]) != otherPlatform() || c.LocalImage != "" {
					t.Errorf("got %+v", c)
				}
			}},
		{name: "empty platform entries reported once", env: map[string]string{"PLATFORMS": ",,linux/" + runtime.GOARCH}, bad: []string{`PLATFORMS=",,linux/` + runtime.GOARCH + `": want a comma-separated list of linux/amd64, linux/arm64, each once (it has an empty entry)`}},
		{name: "duplicate platform", env: map[string]string{"PLATFORMS": "linux/amd64,linux/arm64,linux/amd64"}, bad: []string{"listed twice"}},
		{name: "bad size", env: map[string]string{"SIZE_BUDGET": "50 elephants"}, bad: []string{`SIZE_BUDGET="50 elephants"`, "50MB"}},
		{name: "a size without a unit, under a megabyte", env: map[string]string{"SIZE_BUDGET": "50"},
			bad: []string{`SIZE_BUDGET="50"`, "a number without a unit is bytes, and under 1000000 surely meant another unit: write 50MB for 50 megabytes, or 50B for bytes"}},
		{name: "a size without a unit, just under a megabyte", env: map[string]string{"SIZE_BUDGET": "999999"},
			bad: []string{`SIZE_BUDGET="999999"`, "whole number of bytes from 1000000", "write 999999B for bytes)"}},
		{name: "KB, which some read as KiB", env: map[string]string{"SIZE_BUDGET": "50KB"}, bad: []string{`SIZE_BUDGET="50KB"`, "write kB or KiB"}},
		{name: "a decimal size without a unit", env: map[string]string{"SIZE_BUDGET": "50.5"},
			bad: []string{`SIZE_BUDGET="50.5"`, "write 50.5MB"}},
		{name: "a size in bytes", env: map[string]string{"SIZE_BUDGET": "50000000"}, check: func(t *testing.T, c Config) {
			if c.SizeBudget != 50_000_000 {
				t.Errorf("SizeBudget = %d", c.SizeBudget)
			}
		}},
		// A shorter wait stops every release whose scan shows no results yet.
		{name: "scan timeout under the minimum", env: map[string]string{"SCAN_TIMEOUT": "1ns"}, bad: []string{`SCAN_TIMEOUT="1ns": want a duration from 30s to 45m`}},
		{name: "scan timeout just under", env: map[string]string{"SCAN_TIMEOUT": "29s"}, bad: []string{`SCAN_TIMEOUT="29s"`}},
		{name: "scan timeout at the minimum", env: map[string]string{"SCAN_TIMEOUT": "30s"}, check: func(t *testing.T, c Config) {
			if c.ScanTimeout != 30*time.Second {
				t.Errorf("ScanTimeout = %s", c.ScanTimeout)
			}
		}},
		// The other durations refuse a sign too; +1m is no one's way to write 1m.
		{name: "scan timeout with a plus sign", env: map[string]string{"SCAN_TIMEOUT": "+1m"}, bad: []string{`SCAN_TIMEOUT="+1m"`, "from 30s to 45m", "without a sign"}},
		// A wait longer than the workflow job's timeout cannot end by itself.
		{name: "scan timeout over the maximum", env: map[string]string{"SCAN_TIMEOUT": "1000000h"}, bad: []string{`SCAN_TIMEOUT="1000000h": want a duration from 30s to 45m`}},
		{name: "scan timeout just over", env: map[string]string{"SCAN_TIMEOUT": "45m1s"}, bad: []string{`SCAN_TIMEOUT="45m1s"`}},
		{name: "scan timeout at the maximum", env: map[string]string{"SCAN_TIMEOUT": "45m"}, check: func(t *testing.T, c Config) {
			if c.ScanTimeout != MaxScanTimeout {
				t.Errorf("ScanTimeout = %s", c.ScanTimeout)
			}
		}},
		{name: "build workflow", env: map[string]string{"BUILD_WORKFLOW": ".github/workflows/pipeline.yml"}, check: func(t *testing.T, c Config) {
			if c.BuildWorkflow != ".github/workflows/pipeline.yml" {
				t.Errorf("BuildWorkflow = %q", c.BuildWorkflow)
			}
		}},
		// Not a workflow file's path: the builder id would name no workflow GitHub signs with.
		{name: "build workflow with its ref", env: map[string]string{"BUILD_WORKFLOW": ".github/workflows/pipeline.yml@refs/heads/main"},
			bad: []string{`BUILD_WORKFLOW=".github/workflows/pipeline.yml@refs/heads/main": want a workflow file's path such as .github/workflows/pipeline.yml`}},
		// The builder names the file: one the checkout lacks (renamed,
		// misspelt) would name a workflow that did not run.
		{name: "build workflow the checkout lacks", env: map[string]string{"BUILD_WORKFLOW": ".github/workflows/release.yml"},
			bad: []string{`BUILD_WORKFLOW=".github/workflows/release.yml": is not a file of this checkout`, "a workflow that did not run"}},
		{name: "build workflow not in .github/workflows", env: map[string]string{"BUILD_WORKFLOW": "pipeline.yml"}, bad: []string{`BUILD_WORKFLOW="pipeline.yml"`}},
		{name: "bad bool", env: map[string]string{"PUSH_LATEST": "yes please"}, bad: []string{`PUSH_LATEST="yes please": want true or false`}},
		{name: "bad repository", env: map[string]string{"ECR_REPOSITORY": "Sidecar!"}, bad: []string{`ECR_REPOSITORY="Sidecar!"`}},
		{name: "repository URI", env: map[string]string{"ECR_REPOSITORY": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/sidecar"},
			bad: []string{`ECR_REPOSITORY="123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/sidecar"`, `give the name after the host, "team/sidecar"`}},
		{name: "repository URI, European Sovereign Cloud", env: map[string]string{"ECR_REPOSITORY": "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu/sidecar"},
			bad: []string{`give the name after the host, "sidecar"`}},
		{name: "image URI", env: map[string]string{"ECR_REPOSITORY": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sidecar:latest"},
			bad: []string{`give the name after the host, "sidecar")`}},
		{name: "image URI by digest", env: map[string]string{"ECR_REPOSITORY": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/sidecar@sha256:abc"},
			bad: []string{`give the name after the host, "team/sidecar")`}},
		{name: "bad endpoint", env: map[string]string{"AWS_ENDPOINT_URL": "localhost:4566"}, bad: []string{`AWS_ENDPOINT_URL="localhost:4566"`, "http:// or https:// URL"}},
		{name: "bad image", env: map[string]string{"MYSQL_IMAGE": "mysql 8.4"}, bad: []string{`MYSQL_IMAGE="mysql 8.4"`}},
		// Each passed a character check, and failed only in the engine, after the build.
		{name: "upper-case repository", env: map[string]string{"MYSQL_IMAGE": "MySQL:8.4"}, bad: []string{`MYSQL_IMAGE="MySQL:8.4"`, "mysql:8.4"}},
		{name: "bad digest", env: map[string]string{"GO_IMAGE": "golang:1.26@sha256:zzz"}, bad: []string{`GO_IMAGE="golang:1.26@sha256:zzz"`}},
		{name: "two tags", env: map[string]string{"RUNTIME_IMAGE": "alpine:3.22:3"}, bad: []string{`RUNTIME_IMAGE="alpine:3.22:3"`}},
		{name: "a URL", env: map[string]string{"RUNTIME_IMAGE": "http://alpine"}, bad: []string{`RUNTIME_IMAGE="http://alpine"`}},
		{name: "bad local image", env: map[string]string{"LOCAL_IMAGE": "Sidecar:Latest"}, bad: []string{`LOCAL_IMAGE="Sidecar:Latest"`, "or none"}},
		{name: "ECR Public repository", env: map[string]string{"ECR_REPOSITORY": "public.ecr.aws/x/sidecar"}, bad: []string{`ECR_REPOSITORY="public.ecr.aws/x/sidecar"`, "ECR Public"}},
		{name: "local image off as a boolean", env: map[string]string{"LOCAL_IMAGE": "false"}, bad: []string{`LOCAL_IMAGE="false"`, "to skip the load, write none"}},
		{name: "none in any case", env: map[string]string{"LOCAL_IMAGE": "NONE", "PLATFORMS": otherPlatform()}, check: func(t *testing.T, c Config) {
			if c.LocalImage != "" {
				t.Errorf("LOCAL_IMAGE=NONE loads %q; want no load", c.LocalImage)
			}
		}},
		{name: "local image with an empty tag", env: map[string]string{"LOCAL_IMAGE": "sidecar:"}, bad: []string{`LOCAL_IMAGE="sidecar:"`}},
		// Each passed the library's character check and was refused only by
		// Docker's reference grammar: docker load after the whole build
		// ("invalid reference format"), the engine's pull in the smoke test.
		{name: "local image ending in a dash", env: map[string]string{"LOCAL_IMAGE": "sidecar-:dev"}, bad: []string{`LOCAL_IMAGE="sidecar-:dev"`, "not a name Docker takes"}},
		{name: "local image with an empty path component", env: map[string]string{"LOCAL_IMAGE": "team//sidecar:dev"}, bad: []string{`LOCAL_IMAGE="team//sidecar:dev"`, "not a name Docker takes"}},
		{name: "local image starting with an underscore", env: map[string]string{"LOCAL_IMAGE": "_sidecar"}, bad: []string{`LOCAL_IMAGE="_sidecar"`, "not a name Docker takes"}},
		{name: "local image tag starting with a dash", env: map[string]string{"LOCAL_IMAGE": "sidecar:-dev"}, bad: []string{`LOCAL_IMAGE="sidecar:-dev"`, "not a name Docker takes"}},
		{name: "smoke image with two dots", env: map[string]string{"MYSQL_IMAGE": "my..sql:8.4"}, bad: []string{`MYSQL_IMAGE="my..sql:8.4"`, "not a name Docker takes"}},
		{name: "names Docker takes", env: map[string]string{
			"LOCAL_IMAGE": "Registry.Example:5000/team/side__car-x:v1.2_3", "MYSQL_IMAGE": "localhost:5000/my--sql:8.4@sha256:" + strings.Repeat("a", 64),
		}, check: func(t *testing.T, c Config) {
			if c.LocalImage != "Registry.Example:5000/team/side__car-x:v1.2_3" || !strings.HasPrefix(c.MySQLImage, "localhost:5000/my--sql:8.4@") {
				t.Errorf("LOCAL_IMAGE %q, MYSQL_IMAGE %q", c.LocalImage, c.MySQLImage)
			}
		}},
		{name: "tarball in missing directory", env: map[string]string{"OCI_TARBALL": "/nonexistent/dir/x.tar"},
			bad: []string{`OCI_TARBALL="/nonexistent/dir/x.tar": want a file path in an existing directory (/nonexistent/dir does not exist)`}},
		{name: "tarball under a file", env: map[string]string{"OCI_TARBALL": filepath.Join(notDir, "x.tar")},
			bad: []string{"(" + notDir + " is not a directory)"}},
		{name: "tarball is a directory", env: map[string]string{"OCI_TARBALL": dir}, bad: []string{"OCI_TARBALL", "is a directory"}},
		{name: "tarball in a directory nobody can write", env: map[string]string{"OCI_TARBALL": "/proc/sidecar.tar"}, bad: []string{`OCI_TARBALL="/proc/sidecar.tar"`, "not writable"}},
		{name: "all problems at once", env: map[string]string{
			"SIZE_BUDGET": "big", "ECR_IMMUTABLE_TAGS": "maybe", "GO_IMAGE": "has space", "LOCAL_IMAGE": "bad name!",
		}, bad: []string{"SIZE_BUDGET", "ECR_IMMUTABLE_TAGS", "GO_IMAGE", "LOCAL_IMAGE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.HasPrefix(tc.env["OCI_TARBALL"], "/proc/") && runtime.GOOS != "linux" {
				t.Skip("needs Linux's /proc, a directory even root cannot write")
			}
			c, err := Load(dir, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if len(tc.bad) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, c)
				return
			}
			if !IsError(err) {
				t.Fatalf("err = %v, want a Error", err)
			}
			for _, b := range tc.bad {
				if !strings.Contains(err.Error(), b) {
					t.Errorf("error does not mention %q:\n%v", b, err)
				}
			}
			problems := strings.Count(err.Error(), "\n  - ")
			if want := map[string]int{"all problems at once": 4, "empty platform entries reported once": 1}[tc.name]; want != 0 && problems != want {
				t.Errorf("%d problem lines, want %d:\n%v", problems, want, err)
			}
		})
	}
}

func otherPlatform() string {
	if runtime.GOARCH == "arm64" {
		return "linux/amd64"
	}
	return "linux/arm64"
}

// Docker takes a first component for a registry host when it has a "." or
// ":", is localhost, or has an upper-case letter (distribution/reference
// normalize.go, splitDockerDomain); upper case is refused in the path
// components only. checkDockerName judges as Docker does.
func TestCheckDockerNameFirstComponent(t *testing.T) {
	for ref, ok := range map[string]bool{
		"MyRegistry.example:5000/app": true,
		"MyRegistry.example/app:dev":  true,
		"Localhost:5000/team/app":     true,
		"MyOrg/app":                   true, // the host MyOrg, as Docker reads it
		"MyOrg/App":                   false,
		"myorg/App":                   false,
		"MyOrg/team/App":              false,
		"App":                         false,
		"My_Org/app":                  false, // no host has _, no path component upper case
	} {
		if err := checkDockerName(ref); (err == nil) != ok {
			t.Errorf("checkDockerName(%q) = %v, want accepted: %v", ref, err, ok)
		}
	}
}

// Every problem line repeats the whole value: a PLATFORMS of thousands of
// bad entries gets a bounded number of lines, each reason once, not one
// line per entry.
func TestLoadProblemsPerVariableBounded(t *testing.T) {
	t.Parallel()
	var distinct []string
	for i := range 2000 {
		distinct = append(distinct, fmt.Sprintf("linux/p%d", i))
	}
	for _, tc := range []struct {
		name, platforms string
		want            []string // one substring per problem line
	}{
		{"a platform many times", "linux/amd64" + strings.Repeat(",linux/amd64", 2000), []string{`platform "linux/amd64" is listed twice`}},
		{"distinct bad platforms", strings.Join(distinct, ","), append(slices.Repeat([]string{`(platform "linux/p`}, maxProblemsPerVar),
			fmt.Sprintf(": %d more problems with this value are not listed", 2000-maxProblemsPerVar))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(t.TempDir(), func(k string) (string, bool) {
				// LOCAL_IMAGE=none: no problem for a missing host platform.
				v, ok := map[string]string{"PLATFORMS": tc.platforms, "LOCAL_IMAGE": "none"}[k]
				return v, ok
			})
			ce, ok := err.(*Error)
			if !ok {
				t.Fatalf("Load: %v, want an *Error", err)
			}
			if len(ce.Problems) != len(tc.want) {
				t.Fatalf("got %d problems, want %d; the first: %.300s", len(ce.Problems), len(tc.want), ce.Problems[0])
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(ce.Problems[i], "PLATFORMS=") || !strings.Contains(ce.Problems[i], w) {
					t.Errorf("problem %d = %.300q, want PLATFORMS and %q", i, ce.Problems[i], w)
				}
			}
		})
	}
}
