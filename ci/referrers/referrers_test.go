package referrers

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/example/sidecar/internal/testenv"
)

// distribution starts Debian's docker-registry (distribution 2.8, which
// has no referrers API) on loopback and returns its host:port.
func distribution(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		testenv.Unavailable(t, "docker-registry is not installed (apt-get install docker-registry)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	body := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfg)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("docker-registry output:\n%s", out.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
	}
	t.Fatalf("docker-registry did not listen on %s", addr)
	return ""
}

func TestAttachAndList(t *testing.T) {
	for _, tc := range []struct {
		name     string
		host     func(t *testing.T) string
		fallback bool
	}{
		{"referrers API (go-containerregistry registry)", func(t *testing.T) string {
			srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(nilLogger())))
			t.Cleanup(srv.Close)
			return strings.TrimPrefix(srv.URL, "http://")
		}, false},
		{"no referrers API (docker-registry 2.8): tag schema", distribution, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			repo := tc.host(t) + "/sidecar"
			auth := authn.Anonymous
			idx, err := random.Index(256, 1, 2)
			if err != nil {
				t.Fatal(err)
			}
			ref, _ := name.ParseReference(repo + ":abc")
			if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx)); err != nil {
				t.Fatalf("push the subject index: %v", err)
			}
			d, _ := idx.Digest()
			raw, _ := idx.RawManifest()
			mt, _ := idx.MediaType()
			subject := v1.Descriptor{MediaType: mt, Digest: d, Size: int64(len(raw))}

			sbom := []byte(`{"spdxVersion":"SPDX-2.3"}`)
			prov := []byte(`{"_type":"https://in-toto.io/Statement/v1"}`)
			for _, a := range []Artifact{
				{ArtifactType: "application/spdx+json", Payload: sbom, Title: "sbom-linux-amd64.spdx.json", Annotations: map[string]string{"org.example.platform": "linux/amd64"}},
				{ArtifactType: "application/vnd.in-toto+json", Payload: prov, Title: "provenance.intoto.json"},
			} {
				if _, err := Attach(ctx, repo, subject, a, auth); err != nil {
					t.Fatalf("Attach %s: %v", a.ArtifactType, err)
				}
			}
			all, err := List(ctx, repo, d.String(), "", auth)
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 2 {
				t.Fatalf("%d referrers, want 2: %+v", len(all), all)
			}
			got, err := List(ctx, repo, d.String(), "application/spdx+json", auth)
			if err != nil || len(got) != 1 || string(got[0].Payload) != string(sbom) || got[0].Title != "sbom-linux-amd64.spdx.json" ||
				got[0].Annotations["org.example.platform"] != "linux/amd64" {
				t.Fatalf("SBOM referrer: %v %+v", err, got)
			}
			got, err = List(ctx, repo, d.String(), "application/vnd.in-toto+json", auth)
			if err != nil || len(got) != 1 || string(got[0].Payload) != string(prov) {
				t.Fatalf("provenance referrer: %v %+v", err, got)
			}
			// The referrers tag exists only where the registry lacks the API.
			tag, _ := name.NewTag(repo + ":sha256-" + d.Hex)
			_, err = remote.Head(tag, remote.WithContext(ctx))
			if tc.fallback && err != nil {
				t.Errorf("no referrers tag %s: %v", tag, err)
			}
			if !tc.fallback && err == nil {
				t.Errorf("referrers tag %s written although the registry has the API", tag)
			}
		})
	}
}

func nilLogger() *log.Logger { return log.New(io.Discard, "", 0) }
