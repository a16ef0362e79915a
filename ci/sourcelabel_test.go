package ci

import (
	"os/exec"
	"testing"

	"github.com/example/sidecar/ci/daggertest"
)

// The image's source label is the real repository, GitHub's in Actions or
// the http(s) origin remote, and is left out when neither is known.
func TestSourceLabel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		env    map[string]string
		remote string
		want   string // "" = no label
	}{
		{"GitHub Actions", map[string]string{"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://ghe.example.com", "GITHUB_REPOSITORY": "team/sidecar"}, "",
			"https://ghe.example.com/team/sidecar"},
		{"https remote, credentials stripped", nil, "https://x-access-token:secret@github.com/team/sidecar.git", "https://github.com/team/sidecar"},
		{"ssh remote", nil, "git@github.com:team/sidecar.git", ""},
		{"nothing known", nil, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fe := newEngine(t, map[string]string{"LOCAL_IMAGE": "none"}, nil)
			fe.setEnv(tc.env)
			if tc.remote != "" {
				if out, err := exec.Command("git", "-C", fe.dir, "remote", "add", "origin", tc.remote).CombinedOutput(); err != nil {
					t.Fatalf("git remote add: %v %s", err, out)
				}
			}
			if err := fe.runner.Build(testCtx(t)); err != nil {
				t.Fatalf("Build: %v", err)
			}
			builds := fe.srv.Select(func(q daggertest.Query) bool { return q.Leaf().Field == "id" && q.Has("dockerBuild") })
			if len(builds) != 2 {
				t.Fatalf("%d variants", len(builds))
			}
			for _, q := range builds {
				l, ok := q.Find("withLabel")
				if w, removed := q.Find("withoutLabel"); (tc.want == "") != (removed && w.Arg("name") == "org.opencontainers.image.source") {
					t.Errorf("withoutLabel %v with source %q: want the base's source label removed only when none is known", w.Args, tc.want)
				}
				switch {
				case tc.want == "" && ok:
					t.Errorf("label %v set with no known repository", l.Args)
				case tc.want != "" && (!ok || l.Arg("name") != "org.opencontainers.image.source" || l.Arg("value") != tc.want):
					t.Errorf("withLabel %v, want source %s", l.Args, tc.want)
				}
			}
		})
	}
}
