package ecr_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/ecr/ecrtest"
)

// imdsStandIn speaks the EC2 instance metadata protocol on loopback, like
// an IMDS that refuses IMDSv2 tokens: PUT /latest/api/token answers 404,
// which makes the SDK fall back to IMDSv1 (and, by default, warn).
type imdsStandIn struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string
}

func startIMDS(t *testing.T, serveCredentials bool) *imdsStandIn {
	s := &imdsStandIn{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.Method+" "+r.URL.Path)
		s.mu.Unlock()
		const creds = "/latest/meta-data/iam/security-credentials/"
		switch {
		case !serveCredentials || r.Method == http.MethodPut:
			http.NotFound(w, r)
		case r.URL.Path == creds:
			_, _ = w.Write([]byte("sidecar-ci"))
		case r.URL.Path == creds+"sidecar-ci":
			_, _ = w.Write([]byte(`{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"AKIDIMDS",` +
				`"SecretAccessKey":"imds-secret","Token":"imds-token","LastUpdated":"` + time.Now().UTC().Format(time.RFC3339) +
				`","Expiration":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *imdsStandIn) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

func (s *imdsStandIn) saw(req string) bool { return slices.Contains(s.Requests(), req) }

// The preflight must not print the SDK's "WARN falling back to IMDSv1"
// (noise wherever the metadata service refuses IMDSv2 tokens), but must
// still fail naming the credentials when there are none. The preflight
// runs in a child process so its real stderr is what is checked.
func TestPreflightQuietsIMDSv1Fallback(t *testing.T) {
	for _, mode := range []string{"credentials", "none"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.CommandContext(ctx(t), os.Args[0], "-test.run=^TestPreflightIMDSChild$", "-test.v")
			cmd.Env = append(os.Environ(), "ECR_IMDS_CHILD="+mode)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestPreflightIMDSChild") {
				t.Fatalf("child preflight: %v\n%s", err, out)
			}
			if strings.Contains(string(out), "IMDSv1") {
				t.Errorf("the IMDSv1 fallback warning was printed:\n%s", out)
			}
		})
	}
}

// TestPreflightIMDSChild is TestPreflightQuietsIMDSv1Fallback's child: it
// runs the preflight with its default log (stderr), credentials coming only
// from the metadata stand-in.
func TestPreflightIMDSChild(t *testing.T) {
	mode := os.Getenv("ECR_IMDS_CHILD")
	if mode == "" {
		t.Skip("run by TestPreflightQuietsIMDSv1Fallback")
	}
	srv := ecrtest.Start(t, "eu-west-1")
	ecrtest.Isolate(t)
	imds := startIMDS(t, mode == "credentials")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL)
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ENDPOINT_URL_ECR", srv.URL)
	o := defaults()
	o.CredentialsTimeout = 30 * time.Second // safety net: loopback answers at once
	_, err := ecr.Preflight(ctx(t), o)
	if !imds.saw("PUT /latest/api/token") {
		t.Errorf("the SDK did not ask the metadata stand-in for a token: %v", imds.Requests())
	}
	switch mode {
	case "credentials":
		if err != nil {
			t.Fatalf("preflight with IMDSv1 credentials: %v", err)
		}
		if !imds.saw("GET /latest/meta-data/iam/security-credentials/sidecar-ci") {
			t.Errorf("credentials did not come from the metadata stand-in: %v", imds.Requests())
		}
	default:
		var pe *ecr.PreflightError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "AWS credentials not found") {
			t.Fatalf("err = %v, want a PreflightError naming the credentials", err)
		}
	}
}

// Options.Env's AWS_EC2_METADATA_DISABLED decides, over the process
// environment's, whether the credential chain asks the metadata service:
// the pipeline's tests hand their settings through Env, so with "true" a
// run without keys must not reach 169.254.169.254 (here a stand-in).
func TestEnvDecidesTheMetadataService(t *testing.T) {
	for _, tc := range []struct{ process, env string }{
		{process: "false", env: "true"},
		{process: "true", env: "false"},
		{process: "false", env: "TRUE"}, // the SDK reads it in any case
	} {
		t.Run("process "+tc.process+", Env "+tc.env, func(t *testing.T) {
			srv := ecrtest.Start(t, "eu-west-1")
			ecrtest.Isolate(t)
			imds := startIMDS(t, false)
			t.Setenv("AWS_EC2_METADATA_DISABLED", tc.process)
			t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL)
			vars := srv.Vars(t)
			delete(vars, "AWS_ACCESS_KEY_ID")
			delete(vars, "AWS_SECRET_ACCESS_KEY")
			vars["AWS_EC2_METADATA_DISABLED"] = tc.env
			o := defaults()
			o.Env = func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
			o.Log = io.Discard
			_, err := ecr.Preflight(ctx(t), o)
			if err == nil || !strings.Contains(err.Error(), "AWS credentials not found") {
				t.Fatalf("err = %v, want the credentials named", err)
			}
			asked := len(imds.Requests()) > 0
			if want := !strings.EqualFold(tc.env, "true"); asked != want {
				t.Errorf("metadata service asked: %v, want %v (requests %v)", asked, want, imds.Requests())
			}
		})
	}
}
