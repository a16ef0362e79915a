package imagetag

import (
	"slices"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	const short = "3f9c2a7b1d04"
	for _, tc := range []struct {
		name      string
		in        Input
		wantNames []string
		wantSkips []string
	}{
		{"plain commit", Input{Short: short}, []string{short},
			[]string{"version skipped: no v* git tag on HEAD", "latest skipped: PUSH_LATEST=false"}},
		{"version tag loses one v", Input{Short: short, GitTag: "v1.2.3"}, []string{short, "1.2.3"},
			[]string{"latest skipped: PUSH_LATEST=false"}},
		{"only one v is stripped", Input{Short: short, GitTag: "vv2"}, []string{short, "v2"},
			[]string{"latest skipped: PUSH_LATEST=false"}},
		{"pre-release", Input{Short: short, GitTag: "v1.0.0-rc.1"}, []string{short, "1.0.0-rc.1"},
			[]string{"latest skipped: PUSH_LATEST=false"}},
		{"latest without a version", Input{Short: short, PushLatest: true}, []string{short, "latest"},
			[]string{"version skipped: no v* git tag on HEAD"}},
		{"every tag", Input{Short: short, GitTag: "v1.0.0", PushLatest: true}, []string{short, "1.0.0", "latest"}, nil},
		{"only a release-line tag", Input{Short: short, Ignored: []string{"v1.4 (a release-line tag)"}}, []string{short},
			[]string{"version skipped: no version git tag on HEAD, only v1.4 (a release-line tag); a version tag is v and a semantic version, such as v1.4.0",
				"latest skipped: PUSH_LATEST=false"}},
		{"ignored tags beside a version", Input{Short: short, GitTag: "v1.4.0", Ignored: []string{"v1.4 (a release-line tag)"}}, []string{short, "1.4.0"},
			[]string{"latest skipped: PUSH_LATEST=false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.in)
			if got := d.Names(); !slices.Equal(got, tc.wantNames) {
				t.Errorf("names = %v, want %v", got, tc.wantNames)
			}
			if got := d.Skips(); !slices.Equal(got, tc.wantSkips) {
				t.Errorf("skips = %v, want %v", got, tc.wantSkips)
			}
			if d.Commit() != short || !slices.Equal(d.Release(), tc.wantNames[1:]) {
				t.Errorf("commit %q release %v", d.Commit(), d.Release())
			}
			if len(d) != 3 || d[0].Kind != Commit || d[1].Kind != Version || d[2].Kind != Latest {
				t.Errorf("not one decision per kind in push order: %+v", d)
			}
		})
	}
}

func TestRulesUseTheDecision(t *testing.T) {
	r := Rules()
	if len(r) != 3 {
		t.Fatalf("%d rules, want one per kind", len(r))
	}
	for i, want := range []string{"3f9c2a7b1d04", "pushed as 1.0.0", "PUSH_LATEST=false"} {
		if !strings.Contains(r[i], want) {
			t.Errorf("rule %q lacks %q", r[i], want)
		}
	}
}
