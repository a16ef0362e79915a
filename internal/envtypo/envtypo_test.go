package envtypo

import (
	"reflect"
	"testing"
)

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"MODE", "MODE", 0}, {"MODE", "MDOE", 1}, {"MODE", "HOME", 2}, {"LISTN_PORT", "LISTEN_PORT", 1},
		{"TARGET_HOTS", "TARGET_HOST", 1}, {"KEEPALIVE", "KEEP_ALIVE", 1}, {"ABC", "", 3}, {"TARGET_PORT", "TARGET_HOST", 2},
	} {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestFind(t *testing.T) {
	names := []string{"ECR_REPOSITORY", "AWS_ENDPOINT_URL_ECR", "PLATFORMS", "MODE"}
	environ := []string{
		"ECR_REPO=team/app",         // cut short inside a word
		"ECR_REPOSITRY=x",           // one deletion
		"platfroms=linux/amd64",     // swap, any case
		"PLATFORMS=linux/amd64",     // ours
		"AWS_ENDPOINT_URL=http://x", // a prefix ending at our underscore: another real variable
		"ECR_=x",                    // too short to be an abbreviation
		"MDOE=1", "HOME=/root",      // short names: one edit only
		"ECR_REPO=again",              // reported once
		"SECRET_TOKEN=ECR_REPOSITORY", // values are not looked at
	}
	want := []Typo{{"ECR_REPO", "ECR_REPOSITORY"}, {"ECR_REPOSITRY", "ECR_REPOSITORY"}, {"MDOE", "MODE"}, {"platfroms", "PLATFORMS"}}
	if got := Find(environ, names); !reflect.DeepEqual(got, want) {
		t.Errorf("Find =\n%v\nwant\n%v", got, want)
	}
}
