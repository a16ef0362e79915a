package ci

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/ci/vulncheck"
	"github.com/example/sidecar/ci/vulncheck/vulndbtest"
)

// The push says how old its vulnerability database is, and notes one
// older than vulncheck.StaleAfter: an old copy passes binaries whose
// vulnerabilities were published since.
func TestVulnDBAgeIsShown(t *testing.T) {
	fresh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"modified":%q}`, time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	}))
	defer fresh.Close()
	for _, tc := range []struct {
		name, db, want string
		stale          bool
	}{
		{"an old copy", vulndbtest.Write(t), "last modified " + vulndbtest.Modified().Format(time.DateOnly), true},
		{"a fresh mirror", fresh.URL, "last modified " + time.Now().Add(-time.Hour).UTC().Format(time.DateOnly) + " (0 days ago)", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log strings.Builder
			r := &Runner{Log: &log}
			r.Config.VulnCheck, r.Config.VulnDB = true, tc.db
			if err := r.probeVulnDB(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(log.String(), tc.want) {
				t.Errorf("log lacks %q:\n%s", tc.want, log.String())
			}
			if stale := strings.Contains(log.String(), "note: the vulnerability database is"); stale != tc.stale {
				t.Errorf("stale note %v, want %v:\n%s", stale, tc.stale, log.String())
			}
		})
	}
	doc, err := os.ReadFile("../docs/pipeline.md")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("notes one more than %d days old", int(vulncheck.StaleAfter.Hours()/24))
	if !strings.Contains(strings.Join(strings.Fields(string(doc)), " "), want) {
		t.Errorf("docs/pipeline.md does not say %q", want)
	}
}
