package ci

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/example/sidecar/ci/ecr/ecrtest"
	"github.com/example/sidecar/ci/referrers"
	"github.com/example/sidecar/internal/testenv"
)

// orasVersion is the oras the docs' check is run with (and say so).
const orasVersion = "v1.3.6"

// The commands pipeline.md gives for checking an image's documents work:
// run as written (but for the registry's address) with oras against a
// released image in the ECR stand-in's registry, with the referrers API
// and with the referrers tag schema; and they fail when the documents are
// checked against another image.
func TestDocsCheckDocumentsRecipe(t *testing.T) {
	t.Parallel()
	md, err := os.ReadFile("../docs/pipeline.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(md)
	if _, after, ok := strings.Cut(section, "### Check an image's documents yourself\n"); ok {
		section = after
	} else {
		t.Fatal(`docs/pipeline.md has no "### Check an image's documents yourself" section`)
	}
	m := regexp.MustCompile("(?s)```sh\n(.*?)\n```").FindStringSubmatch(section)
	if m == nil {
		t.Fatal("the section has no sh block")
	}
	recipe := m[1]
	if !strings.Contains(section, "oras "+orasVersion) {
		t.Errorf("the section does not name the oras it is checked with (%s)", orasVersion)
	}
	if _, err := exec.LookPath("jq"); err != nil {
		testenv.Unavailable(t, "jq is not installed (apt-get install jq)")
	}
	oras, err := exec.LookPath("oras")
	if err != nil {
		testenv.Unavailable(t, "oras is not installed (go install oras.land/oras/cmd/oras@%s; .ci/run does)", orasVersion)
	}
	if out, err := exec.Command(oras, "version").Output(); err != nil || !regexp.MustCompile(`(?m)^Version:\s*`+regexp.QuoteMeta(strings.TrimPrefix(orasVersion, "v"))+`$`).Match(out) {
		t.Fatalf("%s version: %v\n%s\nwant oras %s (go install oras.land/oras/cmd/oras@%s)", oras, err, out, orasVersion, orasVersion)
	}
	ciRun, err := os.ReadFile("../.ci/run")
	if err != nil || !strings.Contains(string(ciRun), "oras.land/oras/cmd/oras@"+orasVersion) {
		t.Errorf(".ci/run does not install oras %s: %v", orasVersion, err)
	}
	bin := filepath.Dir(oras)

	for _, tc := range []struct {
		name        string
		noReferrers bool
	}{{"referrers API", false}, {"referrers tag schema", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ecrSrv := pushEnv(t, new(bool))
			if tc.noReferrers {
				ecrSrv.NoReferrersAPI()
			}
			fe := newLightPushEngine(t, ecrSrv, map[string]string{"PUSH_LATEST": "true"})
			gitTag(t, fe.dir, "v1.4.0")
			if err := fe.runner.Push(testCtx(t)); err != nil {
				t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
			}
			// In ECR the index also carries GitHub's signed attestation,
			// a referrer whose layer has no file name.
			subject := v1.Descriptor{MediaType: types.MediaType(fe.topType), Digest: v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(fe.digest, "sha256:")}, Size: int64(len(fe.top))}
			if _, err := referrers.Attach(testCtx(t), ecrSrv.Host()+"/sidecar", subject,
				referrers.Artifact{ArtifactType: "application/vnd.dev.sigstore.bundle.v0.3+json", Payload: []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`)},
				&authn.Basic{Username: "AWS", Password: ecrSrv.Password}); err != nil {
				t.Fatal(err)
			}
			out, err := runRecipe(t, bin, ecrSrv, recipe)
			if err != nil {
				t.Fatalf("the recipe failed on a released image: %v\n%s\npush log:\n%s", err, out, fe.log)
			}
			if got := strings.Count(out, "true\n"); got != 5 {
				t.Errorf("the recipe printed true %d times, want 5 (the provenance, two SBOMs and their binaries):\n%s", got, out)
			}
			for _, f := range []string{"sbom-linux-amd64.spdx.json", "sbom-linux-arm64.spdx.json", "provenance.intoto.json"} {
				if !strings.Contains(out, f) {
					t.Errorf("the tree shows no %s:\n%s", f, out)
				}
			}
			// Checked against another image, each check fails.
			other := "sha256:" + strings.Repeat("0", 64)
			for _, swap := range [][2]string{
				{`index=$(oras resolve "$IMAGE")`, "index=" + other},
				{`image=$(oras resolve --platform "linux/$arch" "$IMAGE")`, "image=" + other},
				{`sum=$(sha256sum <"sidecar-docs/sidecar-linux-$arch" | cut -d' ' -f1)`, `sum=$(echo another binary | sha256sum | cut -d' ' -f1)`},
			} {
				swapped := strings.Replace(recipe, swap[0], swap[1], 1)
				if swapped == recipe {
					t.Fatalf("the recipe has no line %s", swap[0])
				}
				// The check itself fails (jq -e: false, exit 1), not a command before it.
				out, err := runRecipe(t, bin, ecrSrv, swapped)
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.HasSuffix(out, "false\n") {
					t.Errorf("with %s the recipe gave %v, want a check printing false and exit code 1:\n%s", swap[1], err, out)
				}
			}
		})
	}

}

// runRecipe runs the docs' commands in a scratch directory, with the
// stand-in's registry for REGISTRY, an aws that prints its login password,
// and oras over plain HTTP (the stand-in's registry has no TLS).
func runRecipe(t *testing.T, orasDir string, ecrSrv *ecrtest.Server, recipe string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	shims := filepath.Join(dir, "bin")
	if err := os.Mkdir(shims, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(shims, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("aws", `[ "$1 $2" = "ecr get-login-password" ] || { echo "aws shim: unexpected $*" >&2; exit 2; }; echo `+ecrSrv.Password)
	o := filepath.Join(orasDir, "oras")
	write("oras", `cmd=$1; shift
case $cmd in manifest|blob) sub=$1; shift; exec `+o+` "$cmd" "$sub" --plain-http "$@";; esac
exec `+o+` "$cmd" --plain-http "$@"`)
	script := regexp.MustCompile(`(?m)^REGISTRY=.*$`).ReplaceAllString(recipe, "REGISTRY="+ecrSrv.Host())
	cmd := exec.CommandContext(testCtx(t), "bash", "-c", script) // the block sets its own -euo pipefail
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+shims+":"+os.Getenv("PATH"), "HOME="+dir, "DOCKER_CONFIG="+filepath.Join(dir, ".docker"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}
