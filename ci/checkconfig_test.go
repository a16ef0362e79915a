package ci

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// go tool mage config refuses an AWS region push would refuse, with the
// other problems, and accepts none set: build and test need no region.
func TestCheckConfig(t *testing.T) {
	t.Parallel()
	// No shared AWS files of this machine: only the variables below count.
	empty := filepath.Join(t.TempDir(), "none")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string // "": accepted
	}{
		{"no region", nil, nil},
		{"a region", map[string]string{"AWS_REGION": "eu-west-1"}, nil},
		{"malformed AWS_REGION", map[string]string{"AWS_REGION": "eu_west_1"},
			[]string{"bad configuration (nothing was run)", `AWS region "eu_west_1" is not a region name`, "us-east-1", "AWS_REGION"}},
		{"malformed AWS_DEFAULT_REGION", map[string]string{"AWS_DEFAULT_REGION": "Ireland"},
			[]string{`AWS region "Ireland" is not a region name`}},
		// A credential pasted into the region is not shown.
		{"a password as AWS_REGION", map[string]string{"AWS_REGION": "password=S3CRET"},
			[]string{`AWS region "password=xxxxx" is not a region name`}},
		{"a token as AWS_DEFAULT_REGION", map[string]string{"AWS_DEFAULT_REGION": "token: S3CRET"},
			[]string{`AWS region "token:xxxxx" is not a region name`}},
		{"with other problems, all listed", map[string]string{"AWS_REGION": "eu west 1", "SIZE_BUDGET": "huge"},
			[]string{`SIZE_BUDGET="huge"`, `AWS region "eu west 1" is not a region name`}},
		// Build and test read no AWS configuration: a profile only push's
		// machine has (or a shared config file push alone mounts) is no
		// problem of theirs; a region set in the environment is still checked.
		{"a profile the shared files lack", map[string]string{"AWS_PROFILE": "ci-pusher"}, nil},
		{"a profile the shared files lack, a region", map[string]string{"AWS_PROFILE": "ci-pusher", "AWS_REGION": "us-gov-west-1"}, nil},
		{"a profile the shared files lack, a malformed region", map[string]string{"AWS_PROFILE": "ci-pusher", "AWS_DEFAULT_REGION": "eu_west_1"},
			[]string{`AWS region "eu_west_1" is not a region name`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"LOCAL_IMAGE": "none", "AWS_CONFIG_FILE": empty, "AWS_SHARED_CREDENTIALS_FILE": empty}
			for k, v := range tc.env {
				env[k] = v
			}
			_, err := CheckConfig(context.Background(), t.TempDir(), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if ExitCode(err) != ExitConfig {
				t.Fatalf("err = %v (exit %d), want exit %d", err, ExitCode(err), ExitConfig)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
