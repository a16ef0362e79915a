package ci

import (
	"net/http"
	"net/http/httptest"
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
