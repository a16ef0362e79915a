package config

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/mitchellh/go-homedir"

	"github.com/example/sidecar/ci/engine"
	"github.com/example/sidecar/ci/imagesize"
	"github.com/example/sidecar/internal/redact"
	"github.com/example/sidecar/internal/testkit"
)

// TestLoadReadsTheTable checks that Load reads exactly the rows
// of Vars it owns (ReadBy "") or checks (a Parse), and no others.
func TestLoadReadsTheTable(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{
		{}, // defaults
		{"PLATFORMS": "linux/amd64,windows/amd64", "SIZE_BUDGET": "huge", "LOCAL_IMAGE": "bad name!", "OCI_TARBALL": "/nonexistent/x.tar",
			"GO_IMAGE": "a b", "UNIT_TESTS": "maybe", "ECR_REPOSITORY": "Bad!", "PUSH_LATEST": "perhaps"},
	} {
		read := map[string]bool{}
		_, _ = Load(t.TempDir(), func(name string) (string, bool) {
			read[name] = true
			v, ok := env[name]
			return v, ok
		})
		for _, v := range Vars() {
			if owned := v.ReadBy == "" || v.Parse != nil; read[v.Name] != owned {
				t.Errorf("%s: Load reads it: %v; Vars says read by %q", v.Name, read[v.Name], v.ReadBy)
			}
			delete(read, v.Name)
		}
		for name := range read {
			if !slices.Contains(names(), name) { // a row's Label may name a companion (DAGGER_SESSION_TOKEN)
				t.Errorf("Load reads %s, which Vars does not list", name)
			}
		}
	}
}

// TestLoadAccepted checks that a bad value's error says what the
// table accepts for that variable.
func TestLoadAccepted(t *testing.T) {
	t.Parallel()
	bad := map[string]string{"PLATFORMS": "linux/amd64,windows/amd64", "SIZE_BUDGET": "huge", "LOCAL_IMAGE": "bad name!", "OCI_TARBALL": "/nonexistent/x.tar",
		"GO_IMAGE": "a b", "RUNTIME_IMAGE": "a b", "GOPROXY": "file:///srv/mods", "MYSQL_IMAGE": "a b", "ECR_REPOSITORY": "Bad!",
		"GOVULNDB": "vuln.example.com", "SCAN_TIMEOUT": "10", "SCAN_FAIL_ON": "SEVERE", "BUILD_WORKFLOW": "ci.yml",
		"_EXPERIMENTAL_DAGGER_RUNNER_HOST": "tcp//127.0.0.1:1234", "_EXPERIMENTAL_DAGGER_CLI_BIN": "/nonexistent/dagger", "DAGGER_SESSION_PORT": "abc", "AWS_ENDPOINT_URL_ECR": "not a url", "AWS_ENDPOINT_URL": "localhost:4566"}
	for _, v := range Vars() {
		if v.Accepted == acceptBool {
			bad[v.Name] = "maybe"
		}
	}
	for _, v := range Vars() {
		if v.Accepted == "" {
			continue
		}
		val, ok := bad[v.Name]
		if !ok {
			t.Errorf("%s: no bad value to try", v.Name)
			continue
		}
		_, err := Load(t.TempDir(), func(name string) (string, bool) {
			return val, name == v.Name
		})
		if want := v.Name + "=" + `"` + val + `": ` + v.Accepted; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=%q: error %v, want it to say %q", v.Name, val, err, want)
		}
	}
}

// TestVarsParse checks that Load's rows have a parser, and that a row
// another program reads has one only to check the form (it says what is
// accepted).
func TestVarsParse(t *testing.T) {
	t.Parallel()
	for _, v := range Vars() {
		if v.ReadBy == "" && v.Parse == nil || v.ReadBy != "" && v.Parse != nil && v.Accepted == "" {
			t.Errorf("%s: parser %v, read by %q, accepted %q", v.Name, v.Parse != nil, v.ReadBy, v.Accepted)
		}
	}
}

func TestEngineVariablesForm(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable() // this test binary: an executable file
	if err != nil {
		t.Fatal(err)
	}
	plain := t.TempDir() + "/dagger"
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, val string
		ok        bool
	}{
		{"_EXPERIMENTAL_DAGGER_RUNNER_HOST", "tcp://127.0.0.1:1234", true},
		{"_EXPERIMENTAL_DAGGER_RUNNER_HOST", "unix:///run/dagger/engine.sock", true},
		{"_EXPERIMENTAL_DAGGER_RUNNER_HOST", "docker-container://dagger-engine", true},
		{"_EXPERIMENTAL_DAGGER_RUNNER_HOST", "127.0.0.1:1234", false},
		{"_EXPERIMENTAL_DAGGER_RUNNER_HOST", "tcp://", false},
		{"_EXPERIMENTAL_DAGGER_RUNNER_HOST", "TCP://x:1", false},
		{"_EXPERIMENTAL_DAGGER_CLI_BIN", exe, true},
		{"_EXPERIMENTAL_DAGGER_CLI_BIN", "/nonexistent/dagger", false},
		{"_EXPERIMENTAL_DAGGER_CLI_BIN", t.TempDir(), false}, // a directory
		{"_EXPERIMENTAL_DAGGER_CLI_BIN", plain, false},       // not executable
	} {
		_, err := Load(t.TempDir(), func(name string) (string, bool) {
			if name == "LOCAL_IMAGE" {
				return "none", true // not about the platform
			}
			return tc.val, name == tc.name
		})
		if hit := err != nil && strings.Contains(err.Error(), tc.name+"="); hit == tc.ok {
			t.Errorf("%s=%q: error %v; want accepted %v", tc.name, tc.val, err, tc.ok)
		}
	}
}

// _EXPERIMENTAL_DAGGER_CLI_BIN is found as the Dagger SDK finds it: ~
// and ~/… in the home directory, a bare name in PATH.
func TestCLIBinAsTheSDKFindsIt(t *testing.T) {
	home, bin := t.TempDir(), t.TempDir()
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{home + "/bin/dagger", 0o755}, {bin + "/dagger", 0o755}, {bin + "/plain", 0o644}} {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.path, []byte("#!/bin/sh\n"), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("HOME", home)
	t.Setenv("PATH", bin)
	// go-homedir keeps the first home it found; each run of this test has
	// its own.
	homedir.Reset()
	t.Cleanup(homedir.Reset)
	for _, tc := range []struct {
		val, refused string // refused: part of the message, "" = accepted
	}{
		{val: "dagger"},
		{val: "~/bin/dagger"},
		{val: bin + "/dagger"},
		{val: "plain", refused: `exec: "plain"`},
		{val: "dagger2", refused: "not found in $PATH"},
		{val: "~/dagger", refused: home + "/dagger"},
		{val: "~", refused: "is a directory"},
		{val: "~root/dagger", refused: "not ~user"},
	} {
		_, err := Load(t.TempDir(), func(name string) (string, bool) {
			if name == "LOCAL_IMAGE" {
				return "none", true
			}
			return tc.val, name == "_EXPERIMENTAL_DAGGER_CLI_BIN"
		})
		if msg := fmt.Sprint(err); tc.refused == "" && err != nil ||
			tc.refused != "" && (!strings.Contains(msg, `_EXPERIMENTAL_DAGGER_CLI_BIN="`+tc.val+`": want an executable dagger CLI`) || !strings.Contains(msg, tc.refused)) {
			t.Errorf("_EXPERIMENTAL_DAGGER_CLI_BIN=%s: %v; want refused %q", tc.val, err, tc.refused)
		}
	}
}

// SIZE_BUDGET's help, which the docs' table shows, gives the units and
// limits ParseSize takes (its error and Accepted are imagesize.SizeForms).
func TestSizeBudgetDocumented(t *testing.T) {
	t.Parallel()
	i := slices.IndexFunc(Vars(), func(v Var) bool { return v.Name == "SIZE_BUDGET" })
	help := Vars()[i].Help
	var documented []string
	for _, m := range regexp.MustCompile("`([kKMGT]?i?B)`").FindAllStringSubmatch(help, -1) {
		documented = append(documented, m[1])
	}
	if want := imagesize.Units(); !slices.Equal(slices.Sorted(slices.Values(documented)), slices.Sorted(slices.Values(want))) {
		t.Errorf("SIZE_BUDGET's help names the units %v; ParseSize takes %v", documented, want)
	}
	for _, limit := range []string{fmt.Sprintf("`%dGB`", imagesize.MaxSize/1_000_000_000), fmt.Sprintf("`%d`", imagesize.MinPlainBytes)} {
		if !strings.Contains(help, limit) {
			t.Errorf("SIZE_BUDGET's help does not give the limit %s", limit)
		}
	}
}

func TestTypoWarnings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		environ []string
		want    []string
	}{
		{[]string{"ECR_REPO=team/app"}, []string{"WARNING: ECR_REPO is set but not read; did you mean ECR_REPOSITORY? ECR_REPOSITORY is unset, so ECR_REPOSITORY=sidecar applies."}},
		{[]string{"ECR_REPO=team/app", "ECR_REPOSITORY=team/app"}, []string{"WARNING: ECR_REPO is set but not read; did you mean ECR_REPOSITORY? ECR_REPOSITORY is set too."}},
		{[]string{"OCI_TARBAL=x"}, []string{"WARNING: OCI_TARBAL is set but not read; did you mean OCI_TARBALL? OCI_TARBALL is unset."}},
		{[]string{"AWS_REGOIN=eu-west-1"}, []string{"WARNING: AWS_REGOIN is set but not read; did you mean AWS_REGION?"}},
		// Names a row documents with it are not typos of its Name.
		{[]string{"AWS_PROFILE=x", "DOCKER_CONTEXT=colima", "AWS_ENDPOINT_URL=http://127.0.0.1:1", "PATH=/bin", "HOME=/root"}, nil},
		// The AWS SDK's endpoints of other services, which it reads.
		{[]string{"AWS_ENDPOINT_URL_ECS=http://x", "AWS_ENDPOINT_URL_EC2=http://x", "AWS_ENDPOINT_URL_EKS=http://x", "AWS_ENDPOINT_URL_ACM=http://x", "AWS_ENDPOINT_URL_EMR=http://x", "AWS_ENDPOINT_URL_EFS=http://x", "AWS_ENDPOINT_URL_EBS=http://x", "AWS_ENDPOINT_URL_ECR_PUBLIC=http://x"}, nil},
		// Typos of ours in that family are still typos.
		{[]string{"AWS_ENDPOINT_URL_ERC=http://x", "AWS_ENDPOINT_URL_EC=http://x", "AWS_ENDPOINT_URL_EXR=http://x", "aws_endpoint_url_ecs=http://x"}, []string{
			"WARNING: AWS_ENDPOINT_URL_EC is set but not read; did you mean AWS_ENDPOINT_URL_ECR?",
			"WARNING: AWS_ENDPOINT_URL_ERC is set but not read; did you mean AWS_ENDPOINT_URL_ECR?",
			"WARNING: AWS_ENDPOINT_URL_EXR is set but not read; did you mean AWS_ENDPOINT_URL_ECR?",
			"WARNING: aws_endpoint_url_ecs is set but not read; did you mean AWS_ENDPOINT_URL_ECR?"}},
		// Go's own, set beside GOPROXY for private modules.
		{[]string{"GONOPROXY=corp.example.com/*", "GOPROXY=https://goproxy.corp.example"}, nil},
	} {
		if got := TypoWarnings(tc.environ); !slices.Equal(got, tc.want) {
			t.Errorf("TypoWarnings(%v) =\n%q\nwant\n%q", tc.environ, got, tc.want)
		}
	}
}

// A value with credentials in it is refused without printing them.
func TestBadValuesHideCredentials(t *testing.T) {
	t.Parallel()
	const secret = "S3CRET-pw"
	for name, val := range map[string]string{
		"GO_IMAGE":                         "user:" + secret + "@registry.example.com/golang:1.26",
		"MYSQL_IMAGE":                      secret + "@Registry/mysql",
		"_EXPERIMENTAL_DAGGER_RUNNER_HOST": "tcp//user:" + secret + "@engine:1234",
	} {
		_, err := Load(t.TempDir(), func(n string) (string, bool) { return val, n == name })
		if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), name+"=") {
			t.Errorf("%s: %v; want an error naming it without the secret", name, err)
		}
	}
}

// An image value with credentials in it is refused without any part of
// them: the library's reason quotes parts of the value (the registry, the
// tag), which replacing the whole value does not hide.
func TestBadImagesHideCredentials(t *testing.T) {
	t.Parallel()
	for _, val := range []string{
		"user:S3CRET-pw@reg.example.com/x:1",    // quoted as the registry
		"reg.example.com/x:S3CRET-pw@",          // quoted as the tag
		"S3CRET-pw@reg/x",                       // a token as the user name
		"u:ab/S3CRET-pw@reg/x:1",                // a / in the password
		"reg/x:S3CRET-pw@g@sha256:abcd",         // an @ inside, then a digest
		"S3CRET-pw:x@Reg/X",                     // quoted as the repository
		"user:S3CRET-pw@reg/x@sha256:zz",        // credentials and a bad digest
		"user:S3CRET-pw@reg.example.com/x:1:2",  // two tags
		"https://user:S3CRET-pw@reg.example/x",  // a URL
		"user:S3CRET-pw@@reg.example.com/x:tag", // two @
	} {
		for _, name := range []string{"LOCAL_IMAGE", "GO_IMAGE", "RUNTIME_IMAGE", "MYSQL_IMAGE"} {
			_, err := Load(t.TempDir(), func(n string) (string, bool) { return val, n == name })
			if msg := fmt.Sprint(err); err == nil || !strings.Contains(msg, name+"=") || strings.Contains(msg, "S3CRET") || strings.Contains(msg, "CRET-pw") {
				t.Errorf("%s=%s: %v; want an error naming it without the secret", name, val, err)
			}
		}
	}
}

// A library's reason is left out where the value has a hidden part, which
// the reason may quote; kept where nothing is hidden.
func TestLibraryReasonHidden(t *testing.T) {
	t.Parallel()
	v := Var{Name: "X_IMAGE", Shown: redact.Userinfo, Accepted: "want an image"}
	for _, tc := range []struct {
		val, lib, want string
	}{
		{"user:S3CRET@Reg/x", "bad registry: user:S3CRET@Reg", `X_IMAGE="xxxxx@Reg/x": want an image (the reason is not shown: it may quote the part of the value hidden as xxxxx)`},
		{"Reg/x", "bad repository: Reg/x", `X_IMAGE="Reg/x": want an image (bad repository: Reg/x)`},
	} {
		if got := v.problem(tc.val, v.detail(tc.val, libReason{errors.New(tc.lib)})); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.val, got, tc.want)
		}
	}
}

// The Dagger SDK reads its variables as they are: a blank or padded value
// that Load would trim is refused, as is a session port without its token.
func TestEngineVariablesAsTheSDKReadsThem(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  map[string]string
		want string // "" = accepted
	}{
		{map[string]string{"DAGGER_SESSION_PORT": "", "DAGGER_SESSION_TOKEN": "x"}, `DAGGER_SESSION_PORT="": blank, or with spaces around it, which the Dagger SDK does not trim`},
		{map[string]string{"DAGGER_SESSION_PORT": " 1234", "DAGGER_SESSION_TOKEN": "x"}, `DAGGER_SESSION_PORT=" 1234": blank`},
		{map[string]string{"_EXPERIMENTAL_DAGGER_CLI_BIN": " "}, `_EXPERIMENTAL_DAGGER_CLI_BIN=" ": blank`},
		{map[string]string{"_EXPERIMENTAL_DAGGER_RUNNER_HOST": " tcp://127.0.0.1:1234"}, `_EXPERIMENTAL_DAGGER_RUNNER_HOST=" tcp://127.0.0.1:1234": blank`},
		{map[string]string{"DAGGER_SESSION_PORT": "1234"}, `DAGGER_SESSION_PORT="1234": set without DAGGER_SESSION_TOKEN`},
		{map[string]string{"DAGGER_SESSION_PORT": "1234", "DAGGER_SESSION_TOKEN": "x"}, ""},
		{map[string]string{"_EXPERIMENTAL_DAGGER_RUNNER_HOST": "docker-contianer://dagger-engine"}, `the Dagger CLI knows no scheme "docker-contianer"`},
		{map[string]string{"_EXPERIMENTAL_DAGGER_RUNNER_HOST": "tcp://127.0.0.1"}, "tcp:// wants host:port"},
		{map[string]string{"_EXPERIMENTAL_DAGGER_RUNNER_HOST": "docker-container://dagger-engine"}, ""},
		{map[string]string{"_EXPERIMENTAL_DAGGER_RUNNER_HOST": "unix:///run/dagger/engine.sock"}, ""},
		{map[string]string{"_EXPERIMENTAL_DAGGER_RUNNER_HOST": "dagger-cloud://"}, ""}, // docs/pipeline.md's Dagger Cloud engine
		{map[string]string{"_EXPERIMENTAL_DAGGER_RUNNER_HOST": "tcp://"}, "want an engine address"},
		{map[string]string{"_EXPERIMENTAL_DAGGER_RUNNER_HOST": ""}, ""},                                                 // the workflow's value without DAGGER_CLOUD_TOKEN
		{map[string]string{"_EXPERIMENTAL_DAGGER_RUNNER_HOST": "   "}, `_EXPERIMENTAL_DAGGER_RUNNER_HOST="   ": blank`}, // the CLI's address, not its default
		{map[string]string{"_EXPERIMENTAL_DAGGER_RUNNER_HOST": "kube-pod://dagger-engine-0?namespace=ci"}, ""},
		{map[string]string{"_EXPERIMENTAL_DAGGER_CLI_BIN": exe, "_EXPERIMENTAL_DAGGER_RUNNER_HOST": "tcp://127.0.0.1:1234"}, ""},
	} {
		_, err := Load(t.TempDir(), func(n string) (string, bool) { v, ok := tc.env[n]; return v, ok })
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: %v; want %q", tc.env, err, tc.want)
		}
	}
}

// A tcp:// runner is what the Dagger CLI dials: host:port, nothing more;
// a bad one is a configuration error (exit 2) that shows no token.
func TestRunnerHostTCP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		val, refused string // refused: part of the message, "" = accepted
	}{
		{val: "tcp://engine.internal:1234"},
		{val: "tcp://[::1]:1234"},
		{val: "tcp://127.0.0.1:abc", refused: "port number from 1 to 65535"},
		{val: "tcp://127.0.0.1:99999", refused: "port number from 1 to 65535"},
		{val: "tcp://127.0.0.1:0", refused: "port number from 1 to 65535"},
		{val: "tcp://127.0.0.1:+1234", refused: "port number from 1 to 65535"},
		{val: "tcp://127.0.0.1", refused: "tcp:// wants host:port"},
		{val: "tcp://eng ine:1234", refused: "tcp:// wants host:port"},
		{val: "tcp://127.0.0.1:1234?token=S3CRET", refused: `"tcp://127.0.0.1:1234?xxxxx": want an engine address`},
		{val: "tcp://127.0.0.1:1234#S3CRET", refused: "without credentials, a path, a query or a fragment"},
		{val: "tcp://ci:S3CRET@127.0.0.1:1234", refused: `"tcp://xxxxx@127.0.0.1:1234": want an engine address`},
		{val: "tcp://127.0.0.1:1234/", refused: "the Dagger CLI would dial them as part of the address"},
	} {
		_, err := Load(t.TempDir(), func(n string) (string, bool) { return tc.val, n == "_EXPERIMENTAL_DAGGER_RUNNER_HOST" })
		msg := fmt.Sprint(err)
		switch {
		case tc.refused == "" && err != nil:
			t.Errorf("%s: %v; want it accepted", tc.val, err)
		case tc.refused != "" && (!IsError(err) || !strings.Contains(msg, tc.refused) || !strings.Contains(msg, "_EXPERIMENTAL_DAGGER_RUNNER_HOST=")):
			t.Errorf("%s: %v; want a configuration error saying %q", tc.val, err, tc.refused)
		case strings.Contains(msg, "S3CRET"):
			t.Errorf("%s: the error shows the secret: %v", tc.val, err)
		}
	}
	// The session port is checked the same way: the probe dials 127.0.0.1:port.
	_, err := Load(t.TempDir(), func(n string) (string, bool) {
		return map[string]string{"DAGGER_SESSION_PORT": "+1234", "DAGGER_SESSION_TOKEN": "x"}[n], n == "DAGGER_SESSION_PORT" || n == "DAGGER_SESSION_TOKEN"
	})
	if !strings.Contains(fmt.Sprint(err), `DAGGER_SESSION_PORT="+1234": want a port number`) {
		t.Errorf("DAGGER_SESSION_PORT=+1234: %v; want it refused", err)
	}
}

// GOPROXY reaches the image's go build in the engine's container: only
// proxies it can reach, and no credentials (build arguments are in the
// provenance).
func TestParseGoProxy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		val, refused string // refused: a part of the message, "" = accepted
		goImage      string // GO_IMAGE, "" = the default
	}{
		{val: "https://goproxy.corp.example/mods,direct"},
		// The build downloads modules: not off first, and direct alone
		// needs git, which the default GO_IMAGE lacks.
		{val: "off", refused: "off downloads nothing"},
		{val: " off ,https://proxy.golang.org", refused: "off downloads nothing"},
		{val: "direct", refused: "direct without a proxy fetches modules with git, which the default GO_IMAGE " + DefaultGoImage + " lacks"},
		{val: "direct|off", refused: "set GO_IMAGE to an image with git"},
		{val: "direct", goImage: "golang:1.26"},
		{val: "off", goImage: "golang:1.26", refused: "off downloads nothing"},
		{val: "https://proxy.golang.org,off"},
		{val: "https://a.example|https://b.example,off"},
		{val: "http://athens.build.internal:3000"},
		{val: "https://goproxy.corp.example, direct"}, // go trims each entry
		{val: "file:///srv/mods", refused: `"file:///srv/mods" is not an http(s) URL, direct or off`},
		{val: "goproxy.corp.example", refused: `"goproxy.corp.example" is not an http(s) URL`},
		{val: "https://user:s3cret@goproxy.corp.example", refused: "has credentials, a query or a fragment in it"},
		{val: "https://goproxy.corp.example/?token=s3cret", refused: "a query"},
		{val: "https://proxy.golang.org,https://goproxy.corp.example/mods#s3cret", refused: "a fragment"},
		{val: "http://localhost:3000", refused: "loopback, which the build container cannot reach"},
		{val: "https://proxy.golang.org,http://127.0.0.1:8081", refused: "loopback"},
		{val: "http://[::1]:3000", refused: "loopback"},
		// An entry that does not parse still hides its token.
		{val: "https://proxy.golang.org,file:///x?token=s3cret", refused: `"file:///x?xxxxx" is not an http(s) URL`},
		{val: "https//mirror.example/?token=s3cret", refused: "is not an http(s) URL"},
	} {
		c := Config{GoImage: tc.goImage}
		err := parseGoProxy(&c, tc.val)
		switch {
		case tc.refused == "" && (err != nil || c.GoProxy != tc.val):
			t.Errorf("GOPROXY=%s: %v, GoProxy %q; want it accepted", tc.val, err, c.GoProxy)
		case tc.refused != "" && (err == nil || !strings.Contains(err.Error(), tc.refused)):
			t.Errorf("GOPROXY=%s: %v; want a refusal saying %q", tc.val, err, tc.refused)
		case strings.Contains(fmt.Sprint(err), "s3cret"):
			t.Errorf("GOPROXY refusal shows the password: %v", err)
		}
	}
}

// A refused value is shown as its row's Shown prints it: a GOPROXY with a
// password in it is named without the password.
// The password is hidden wherever its proxy stands in the list, also when
// the entry does not parse.
func TestLoadHidesGoProxyCredentials(t *testing.T) {
	t.Parallel()
	for _, val := range []string{
		"https://ci:s3cret@goproxy.corp.example",
		"https://proxy.golang.org,https://ci:s3cret@goproxy.corp.example/mods",
		"direct|https://ci:s3cret@goproxy.corp.example/",
		"https://proxy.golang.org,https://ci:s3cr%zzet@goproxy.corp.example", // url.Parse fails
		"https://goproxy.corp.example/?token=s3cret",                         // a query reaches the provenance too
		"https://ci:s3cr/et@goproxy.corp.example/mods",                       // a / in the password (base64)
	} {
		_, err := Load(t.TempDir(), func(name string) (string, bool) {
			if name == "GOPROXY" {
				return val, true
			}
			return "", false
		})
		if !IsError(err) || !strings.Contains(err.Error(), "GOPROXY") || !strings.Contains(err.Error(), "goproxy.corp.example") || strings.Contains(err.Error(), "s3cr") {
			t.Errorf("Load with GOPROXY=%s: %v; want a configuration error naming it without the password", val, err)
		}
	}
}

func TestShownGoProxy(t *testing.T) {
	t.Parallel()
	for val, want := range map[string]string{
		"":                         "",
		"direct":                   "direct",
		"https://a.example,direct": "https://a.example,direct",
		"https://u:p@a.example/x|https://b.example,https://t@c.example": "https://xxxxx@a.example/x|https://b.example,https://xxxxx@c.example",
		"off,":                              "off,",
		"https://a.example/?token=t|direct": "https://a.example/?xxxxx|direct",
	} {
		if got := shownGoProxy(val); got != want {
			t.Errorf("shownGoProxy(%q) = %q, want %q", val, got, want)
		}
	}
}

// engine.TCPAddr is the one parser of a tcp:// runner host: what Load
// accepts is what engine.Probe dials, and what Load refuses the probe
// does not pass by dialing a part of it, such as the address without its
// credentials or trailing /, which the Dagger CLI would not dial.
func TestRunnerHostProbeAgrees(t *testing.T) {
	t.Parallel()
	ln := testkit.Serve(t, func(c net.Conn) { c.Close() })
	addr := ln.Addr().String()
	for _, val := range []string{
		"tcp://" + addr,
		"tcp://" + addr + "/",
		"tcp://ci:S3CRET@" + addr,
		"tcp://S3CRET@" + addr,
		"tcp://" + addr + "?token=S3CRET",
		"tcp://" + addr + "#S3CRET",
		"tcp://" + addr + "/engine",
	} {
		env := func(n string) (string, bool) { return val, n == "_EXPERIMENTAL_DAGGER_RUNNER_HOST" }
		_, loadErr := Load(t.TempDir(), env)
		probeErr := engine.Probe(t.Context(), env)
		if (loadErr == nil) != (probeErr == nil) {
			t.Errorf("%s: Load: %v; Probe: %v; want both to accept it or both to refuse it", val, loadErr, probeErr)
		}
		if strings.Contains(fmt.Sprint(loadErr, probeErr), "S3CRET") {
			t.Errorf("%s: an error shows the secret: %v; %v", val, loadErr, probeErr)
		}
	}
}

// An @ that starts no digest the row takes is refused in the same words
// for every image row (errAtInImage), naming the variable, the value with
// any credentials masked, and what the row accepts.
func TestImageAtRefusedInOneMessage(t *testing.T) {
	t.Parallel()
	imageRows := []string{"LOCAL_IMAGE", "GO_IMAGE", "RUNTIME_IMAGE", "MYSQL_IMAGE"}
	digest := "sidecar@sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		val, shown string
		rows       []string // the rows that refuse val
	}{
		{"user:S3CRET@registry.example.com/golang:1.26", "xxxxx@registry.example.com/golang:1.26", imageRows},
		{"S3CRET@reg.example.com/x", "xxxxx@reg.example.com/x", imageRows},
		{"u:ab/S3CRET@reg.example.com/x:1", "xxxxx@reg.example.com/x:1", imageRows},
		{"user:S3CRET@@reg.example.com/x:tag", "xxxxx@reg.example.com/x:tag", imageRows},
		{digest, digest, []string{"LOCAL_IMAGE"}}, // a digest names no local image
	} {
		for _, name := range tc.rows {
			_, err := Load(t.TempDir(), func(n string) (string, bool) { return tc.val, n == name })
			v := row(t, name)
			want := fmt.Sprintf("%s=%q: %s%s", name, tc.shown, v.Accepted, strings.TrimPrefix(errAtInImage().Error(), errAccepted.Error()))
			if msg := fmt.Sprint(err); !strings.Contains(msg, "\n  - "+want+"\n") && !strings.HasSuffix(msg, "\n  - "+want) || strings.Contains(msg, "S3CRET") {
				t.Errorf("%s=%s: %v\nwant the line %s", name, tc.val, err, want)
			}
		}
	}
}

// row is the row of Vars named name.
func row(t *testing.T, name string) Var {
	t.Helper()
	for _, v := range Vars() {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no row %s in Vars", name)
	return Var{}
}

// A credential pasted into any variable Load checks (password=…, a YAML
// token: …) is refused without it, in the problem line and in the typo
// warnings, still naming the variable and what it accepts. Every row with
// a parser is tried, so a new one is covered: each must refuse one of the
// forms, which embed the credential where the row's check fails.
func TestRefusedValuesHideKeyedCredentials(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	forms := []string{"%s", "linux/amd64,%s", "tcp://%s", "https://%s", filepath.Join(dir, "%s", "x.tar"), "%s@registry.example.com/x:1"}
	for _, v := range Vars() {
		if v.Parse == nil {
			continue // Load leaves its value to another program, unread
		}
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			if v.Accepted == "" {
				t.Errorf("%s has no Accepted: a problem that hides its reason would say nothing of what is accepted", v.Name)
			}
			refused := 0
			for _, cred := range []string{"password=S3CRET", "token: S3CRET", `"Pwd":"S3CRET"`} {
				for _, form := range forms {
					val := fmt.Sprintf(form, cred)
					_, err := Load(dir, func(n string) (string, bool) { return val, n == v.Name })
					if err == nil {
						continue
					}
					refused++
					out := strings.Join(append(TypoWarnings([]string{v.Name + "S=" + val, v.Name + "=" + val}), err.Error()), "\n")
					if strings.Contains(out, "S3CRET") || !strings.Contains(out, v.Name+"=") || !strings.Contains(out, v.Accepted) {
						t.Errorf("%s=%s:\n%s\nwant it named, with what it accepts (%s), without S3CRET", v.Name, val, out, v.Accepted)
					}
				}
			}
			if refused == 0 {
				t.Errorf("%s: refuses none of the forms %q with a credential; add one it refuses", v.Name, forms)
			}
		})
	}
}

// shown masks a keyed credential before the row's Shown sees it, and
// leaves a ? to Shown, which may tell it for a password's.
func TestShownKeyed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, val, want string
		keyed           bool
	}{
		{"GO_IMAGE", "user:pw?x@registry.example.com/golang:1.26", "xxxxx@registry.example.com/golang:1.26", false},
		{"GO_IMAGE", "password=pw@registry.example.com/golang:1.26", "xxxxx@", true},
		{"GO_IMAGE", "user:pw?password=pw@registry.example.com/x", "xxxxx@", true},
		{"ECR_REPOSITORY", "team/sidecar token: pw", "team/sidecar token:xxxxx", true},
		{"GOVULNDB", `https://vuln.example/"Pwd":"pw"`, "https://vuln.example/%22Pwd%22:xxxxx", true},
		{"GOPROXY", "https://goproxy.example/?token=pw", "https://goproxy.example/?xxxxx", false},
		// An image named for what it serves keeps its tag: no key's name.
		{"GO_IMAGE", "registry.example/team/token-service:1.2", "registry.example/team/token-service:1.2", false},
		{"MYSQL_IMAGE", "registry.example:5000/secrets-db:8.4@sha256:abcd", "registry.example:5000/secrets-db:8.4@sha256:abcd", false},
		{"LOCAL_IMAGE", "password-reset:latest", "password-reset:latest", false},
		// Any tag after an image path: a commit's, a branch's.
		{"LOCAL_IMAGE", "acme/token-service:3d5aaa4", "acme/token-service:3d5aaa4", false},
		{"GO_IMAGE", "registry.example/team/token-service:main-3d5aaa4", "registry.example/team/token-service:main-3d5aaa4", false},
	} {
		if got, keyed := row(t, tc.name).shown(tc.val); got != tc.want || keyed != tc.keyed {
			t.Errorf("%s=%s shown as %q (keyed %v), want %q (keyed %v)", tc.name, tc.val, got, keyed, tc.want, tc.keyed)
		}
	}
}

// ShownErr masks an error that quotes an accepted value as Shown masks
// the value, keeping the OS's reason and what errors.Is sees; an error
// of a value with nothing hidden is err itself.
func TestShownErr(t *testing.T) {
	t.Parallel()
	const path = "/tmp/out/password=S3CRET.tar"
	for _, tc := range []struct {
		name, val string
		err       error
		want      string
	}{
		{"OCI_TARBALL", path, &os.PathError{Op: "open", Path: "/tmp/out/.password=S3CRET.tar.partial-1", Err: syscall.ENOENT},
			"open /tmp/out/.password=xxxxx (no such file or directory)"},
		{"OCI_TARBALL", path, fmt.Errorf("copy to %s: %w", path, context.Canceled), "copy to /tmp/out/password=xxxxx"},
		{"GO_IMAGE", "u:pw@registry.example/golang:1", errors.New("pull u:pw@registry.example/golang:1: denied"), "pull xxxxx@registry.example/golang:1: denied"},
		{"NO_SUCH_ROW", "token=S3CRET", errors.New("bad token=S3CRET"), "bad token=xxxxx"},
		{"OCI_TARBALL", "/tmp/out/sidecar.tar", &os.PathError{Op: "open", Path: "/tmp/out/sidecar.tar", Err: syscall.ENOENT},
			"open /tmp/out/sidecar.tar: no such file or directory"},
	} {
		got := ShownErr(tc.name, tc.val, tc.err)
		if got.Error() != tc.want || !errors.Is(got, tc.err) {
			t.Errorf("ShownErr(%s=%s, %q) = %q, want %q wrapping the error", tc.name, tc.val, tc.err, got, tc.want)
		}
	}
	if ShownErr("OCI_TARBALL", path, nil) != nil {
		t.Error("ShownErr of no error is an error")
	}
}
