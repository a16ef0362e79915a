package ci

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// GOVULNDB=https://user:token@mirror/ is how an authenticated mirror is
// reached: the token appears in no step line, probe or scan error.
func TestPushNeverPrintsVulnDBCredentials(t *testing.T) {
	t.Parallel()
	const pw = "s3cr3t-token"
	for _, tc := range []struct {
		name  string
		probe int // status of index/db.json; every other path answers 500
		want  string
	}{
		{"probe refused", http.StatusUnauthorized, "401"},
		{"scan fails", http.StatusOK, "did not complete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/index/db.json" && tc.probe == http.StatusOK {
					w.Write([]byte(`{"modified":"2026-01-01T00:00:00Z"}`))
					return
				}
				if r.URL.Path == "/index/db.json" {
					http.Error(w, "denied", tc.probe)
					return
				}
				http.Error(w, "broken", http.StatusInternalServerError)
			}))
			defer srv.Close()
			db := strings.Replace(srv.URL, "http://", "http://user:"+pw+"@", 1)
			immutable := true
			ecrSrv := pushEnv(t, &immutable)
			fe := newLightPushEngine(t, ecrSrv, map[string]string{"GOVULNDB": db, "VULN_CHECK": "true"})
			err := fe.runner.Push(testCtx(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("error shows the GOVULNDB password: %v", err)
			}
			if !strings.Contains(err.Error(), "user:xxxxx@") {
				t.Errorf("error does not name the (redacted) database: %v", err)
			}
			assertSecretHidden(t, fe, pw)
		})
	}
}

// A GOVULNDB=file:// copy that is not there is a bad setting (exit 2),
// found before the AWS preflight touches ECR; an unreachable mirror is a
// failure of the run (exit 1).
func TestPushVulnDBExitCodes(t *testing.T) {
	t.Parallel()
	missing := "file://" + filepath.ToSlash(filepath.Join(t.TempDir(), "no-vulndb"))
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	for _, tc := range []struct {
		db       string
		code     int
		contains []string
	}{
		{missing, ExitConfig, []string{"bad configuration", `GOVULNDB="` + missing + `"`, "index/modules.json", "VULN_CHECK=false"}},
		{down.URL, ExitFailed, []string{"GOVULNDB=" + down.URL, "503", "VULN_CHECK=false"}},
	} {
		t.Run(tc.db, func(t *testing.T) {
			ecrSrv := pushEnv(t, nil)
			fe := newLightPushEngine(t, ecrSrv, map[string]string{"GOVULNDB": tc.db, "VULN_CHECK": "true"})
			err := fe.runner.Push(testCtx(t))
			if got := ExitCode(err); got != tc.code {
				t.Fatalf("exit code %d, want %d; err = %v", got, tc.code, err)
			}
			for _, want := range tc.contains {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
			if ops := ecrSrv.Operations(); len(ops) != 0 {
				t.Errorf("ECR was called before GOVULNDB was checked: %v", ops)
			}
		})
	}
}
