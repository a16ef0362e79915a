package ci

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/vulncheck"
)

func TestReleaseConfig(t *testing.T) {
	t.Parallel()
	none := func(string) (string, bool) { return "", false }
	c, err := config.Load(t.TempDir(), none)
	if err != nil {
		t.Fatal(err)
	}
	if !c.VulnCheck || c.VulnDB != vulncheck.DefaultDB || c.ScanTimeout != 10*time.Minute || c.ScanFailOn != "CRITICAL" {
		t.Errorf("defaults: VulnCheck %v VulnDB %q ScanTimeout %s ScanFailOn %q", c.VulnCheck, c.VulnDB, c.ScanTimeout, c.ScanFailOn)
	}
	for _, tc := range []struct {
		env  map[string]string
		want []string
		ok   func(config.Config) bool
	}{
		{env: map[string]string{"VULN_CHECK": "false", "GOVULNDB": "file:///srv/vulndb", "SCAN_TIMEOUT": "5m", "SCAN_FAIL_ON": "none"},
			ok: func(c config.Config) bool {
				return !c.VulnCheck && c.VulnDB == "file:///srv/vulndb" && c.ScanTimeout == 5*time.Minute && c.ScanFailOn == ""
			}},
		{env: map[string]string{"SCAN_FAIL_ON": "high"}, ok: func(c config.Config) bool { return c.ScanFailOn == "HIGH" }},
		{env: map[string]string{"VULN_CHECK": "sometimes"}, want: []string{`VULN_CHECK="sometimes"`, "true or false"}},
		{env: map[string]string{"GOVULNDB": "vuln.example.com"}, want: []string{`GOVULNDB="vuln.example.com"`, "http(s):// or file://"}},
		{env: map[string]string{"SCAN_TIMEOUT": "10"}, want: []string{`SCAN_TIMEOUT="10"`, "from 30s to 45m such as 90s, 10m or 30m"}},
		{env: map[string]string{"SCAN_TIMEOUT": "-1m"}, want: []string{`SCAN_TIMEOUT="-1m"`, "from 30s to 45m", "without a sign"}},
		{env: map[string]string{"SCAN_FAIL_ON": "SEVERE"}, want: []string{`SCAN_FAIL_ON="SEVERE"`, "CRITICAL, HIGH, MEDIUM, LOW, none"}},
	} {
		c, err := config.Load(t.TempDir(), func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
		if tc.ok != nil {
			if err != nil || !tc.ok(c) {
				t.Errorf("%v: %v %+v", tc.env, err, c)
			}
			continue
		}
		if !config.IsError(err) {
			t.Errorf("%v: err = %v, want a ConfigError", tc.env, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error lacks %q: %v", tc.env, w, err)
			}
		}
	}
}

// docs/pipeline.md's copies of the release timings are the code's:
// the probe timeout, the scan wait's progress interval and its grace for
// a scan without results (the pipeline leaves both zero in
// ecr.WaitOptions, so the defaults apply) and the default SCAN_TIMEOUT as
// the timeout message prints it.
func TestReleaseTimingsInTheDocs(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/pipeline.md")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(t.TempDir(), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		re   string
		want time.Duration
	}{
		{`did not answer within (\d+) s`, vulncheck.ProbeTimeout},
		{`printing a progress line every (\d+) s`, ecr.DefaultProgress},
		{`If it still shows nothing after (\d+) minutes`, ecr.DefaultResultsGrace},
		{`did not finish within (\S+): still waiting`, c.ScanTimeout},
	} {
		m := regexp.MustCompile(tc.re).FindStringSubmatch(string(doc))
		if m == nil {
			t.Errorf("docs/pipeline.md lacks %q", tc.re)
			continue
		}
		got, err := time.ParseDuration(m[1])
		if err != nil {
			unit := map[bool]string{true: "m", false: "s"}[strings.HasSuffix(m[0], "minutes")]
			got, err = time.ParseDuration(m[1] + unit)
		}
		if err != nil || got != tc.want {
			t.Errorf("docs/pipeline.md says %q (%s), the code %s", m[0], got, tc.want)
		}
	}
}

// A GOVULNDB with credentials (an authenticated mirror) is printed
// redacted in configuration errors; a file URL with a host is refused.
func TestReleaseConfigVulnDBURL(t *testing.T) {
	t.Parallel()
	const pw = "s3cr3t-token"
	for db, want := range map[string][]string{
		"https://user:" + pw + "@/":     {`GOVULNDB="https://user:xxxxx@/"`, "no host"},
		"https://user:" + pw + "%zz@m/": {`GOVULNDB="https://xxxxx@m/"`, "not a URL"},
		"file://relative/db":            {`GOVULNDB="file://relative/db"`, "file:///absolute/path"},
	} {
		_, err := config.Load(t.TempDir(), func(k string) (string, bool) { return db, k == "GOVULNDB" })
		if !config.IsError(err) {
			t.Errorf("GOVULNDB=%s: err = %v, want a ConfigError (exit 2)", vulncheck.Redact(db), err)
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("configuration error shows the password: %v", err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error lacks %q: %v", w, err)
			}
		}
	}
}
