package vulncheck

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/example/sidecar/internal/sidecarbin"
)

// An authenticated mirror's URL carries a password; no error may print it.
func TestCredentialsNeverInErrors(t *testing.T) {
	const pw = "s3cr3t-token"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "denied", http.StatusUnauthorized)
	}))
	defer srv.Close()
	ctx := context.Background()
	// A token given as the user name, with no password, is masked too.
	lone := strings.Replace(srv.URL, "http://", "http://"+pw+"@", 1)
	if _, err := Probe(ctx, lone); err == nil || strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "xxxxx@") {
		t.Errorf("Probe with a token as the user name: %v", err)
	}
	db := strings.Replace(srv.URL, "http://", "http://user:"+pw+"@", 1)
	check := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: no error", what)
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("%s error shows the password: %v", what, err)
		}
	}
	_, err := Probe(ctx, db)
	check("Probe", err)
	if !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "user:xxxxx@") {
		t.Errorf("Probe error does not say what failed: %v", err)
	}
	_, err = Scan(ctx, db, sidecarbin.Build(t, runtime.GOARCH))
	check("Scan", err)
	check("ValidDB", ValidDB("https://user:"+pw+"%zz@mirror/"))
	for in, want := range map[string]string{
		db:                                   strings.Replace(db, pw, "xxxxx", 1),
		"https://user:" + pw + "%zz@mirror/": "https://xxxxx@mirror/",
		"https://" + pw + "@mirror/db":       "https://xxxxx@mirror/db", // a token as the user name
		"https://mirror/db?token=" + pw:      "https://mirror/db?xxxxx",
		"https://mirror/db#" + pw:            "https://mirror/db#xxxxx",
		DefaultDB:                            DefaultDB,
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidDB(t *testing.T) {
	for db, want := range map[string]string{
		DefaultDB: "", "file:///srv/vulndb": "", "https://user:pw@mirror.example/": "",
		"file://relative/db": "file:///absolute/path", "file://": "no path",
		"vuln.example.com": "scheme", "https://": "no host",
		"https://mirror.example/db?token=x": "query", "https://mirror.example/db?": "query", "https://mirror.example/db#x": "fragment",
	} {
		err := ValidDB(db)
		if (err == nil) != (want == "") || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("ValidDB(%q) = %v, want %q", db, err, want)
		}
	}
}
