package ecr_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/ecr/ecrtest"
)

// pushIndex records a two-platform index in the stand-in and returns its
// digest and the platform manifests' digests.
func pushIndex(t *testing.T, srv *ecrtest.Server, tag string) (string, []string) {
	t.Helper()
	amd, arm := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	idx := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`+
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":500,"platform":{"os":"linux","architecture":"amd64"}},`+
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":501,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},`+
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":502,"platform":{"os":"unknown","architecture":"unknown"}}]}`,
		amd, arm, strings.Repeat("c", 64))
	return srv.PushImage("sidecar", tag, "application/vnd.oci.image.index.v1+json", []byte(idx)), []string{amd, arm}
}

func preflight(t *testing.T, srv *ecrtest.Server) *ecr.Registry {
	t.Helper()
	srv.Env(t)
	reg, err := ecr.Preflight(ctx(t), defaults())
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// scriptedScans pushes a two-platform index to a repository with scanType
// scanning on push, scripts the amd64 and arm64 scan states and describes
// the index; it returns the server, the registry, the platform digests
// (amd64 first) and the description.
func scriptedScans(t *testing.T, scanType string, amd, arm []ecrtest.ScanState) (*ecrtest.Server, *ecr.Registry, []string, ecr.Pushed) {
	t.Helper()
	srv := ecrtest.Start(t, "eu-west-1")
	srv.AddRepository("sidecar", true)
	srv.SetScanning("sidecar", scanType, "SCAN_ON_PUSH")
	reg := preflight(t, srv)
	d, plats := pushIndex(t, srv, "abc")
	srv.ScriptScan(plats[0], amd...)
	srv.ScriptScan(plats[1], arm...)
	p, err := reg.Describe(ctx(t), d)
	if err != nil {
		t.Fatal(err)
	}
	return srv, reg, plats, p
}

func TestDescribeListsPlatformManifests(t *testing.T) {
	srv := ecrtest.Start(t, "eu-west-1")
	srv.AddRepository("sidecar", true)
	reg := preflight(t, srv)
	d, plats := pushIndex(t, srv, "abc")
	p, err := reg.Describe(ctx(t), d)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range p.Platforms {
		got = append(got, m.Platform+"="+m.Digest)
	}
	// The index itself is not scanned; the attestation entry is not an image.
	if want := []string{"linux/amd64=" + plats[0], "linux/arm64=" + plats[1]}; !slices.Equal(got, want) {
		t.Errorf("platforms %v, want %v", got, want)
	}
	if p.MediaType != "application/vnd.oci.image.index.v1+json" || p.Size == 0 {
		t.Errorf("index %s size %d", p.MediaType, p.Size)
	}
}

func TestScanSetting(t *testing.T) {
	for _, tc := range []struct {
		scanType, freq string
		scans          bool
		how            string
	}{
		{"BASIC", "SCAN_ON_PUSH", true, "scan on push"},
		{"ENHANCED", "CONTINUOUS_SCAN", true, "continuous scan"},
		{"ENHANCED", "SCAN_ON_PUSH", true, "scan on push"},
		{"BASIC", "MANUAL", false, "manual"},
	} {
		t.Run(tc.scanType+" "+tc.freq, func(t *testing.T) {
			srv := ecrtest.Start(t, "eu-west-1")
			srv.AddRepository("sidecar", true)
			srv.SetScanning("sidecar", tc.scanType, tc.freq)
			reg := preflight(t, srv)
			s, err := reg.ScanSetting(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			if s.Scans != tc.scans || s.Type != tc.scanType || !strings.Contains(s.How, tc.how) {
				t.Errorf("ScanSetting = %+v, want scans=%v type %s how %q", s, tc.scans, tc.scanType, tc.how)
			}
		})
	}
}

func TestWaitForScans(t *testing.T) {
	all := []ecrtest.ScanFinding{
		{Severity: "CRITICAL", Name: "CVE-2026-0001", Package: "busybox", Version: "1.36.1-r0"},
		{Severity: "HIGH", Name: "CVE-2026-0002", Package: "musl", Version: "1.2.5-r0"},
		{Severity: "MEDIUM", Name: "CVE-2026-0003", Package: "zlib", Version: "1.3.1-r0"},
		{Severity: "LOW", Name: "CVE-2026-0004", Package: "ssl_client", Version: "1.36.1-r0"},
		{Severity: "INFORMATIONAL", Name: "CVE-2026-0005", Package: "alpine-baselayout", Version: "3.6.8-r1"},
	}
	inProgress := ecrtest.ScanState{Status: "IN_PROGRESS"}
	for _, tc := range []struct {
		name      string
		scanType  string
		amd, arm  []ecrtest.ScanState
		timeout   time.Duration
		grace     time.Duration // ResultsGrace; 0 = the default
		wantErr   string
		wantLine  string // a progress line
		wantCount string // amd64 counts
		wantNames []string
	}{
		{name: "complete, no findings", scanType: "BASIC",
			amd: []ecrtest.ScanState{{}, inProgress, {Status: "COMPLETE"}}, arm: []ecrtest.ScanState{{Status: "COMPLETE"}},
			wantLine: "linux/amd64", wantCount: "CRITICAL 0, HIGH 0, MEDIUM 0, LOW 0"},
		{name: "basic findings of each severity", scanType: "BASIC",
			amd: []ecrtest.ScanState{inProgress, {Status: "COMPLETE", Findings: all}}, arm: []ecrtest.ScanState{{Status: "COMPLETE"}},
			wantCount: "CRITICAL 1, HIGH 1, MEDIUM 1, LOW 1, INFORMATIONAL 1", wantNames: []string{"CRITICAL CVE-2026-0001 (busybox 1.36.1-r0)", "LOW CVE-2026-0004"}},
		{name: "enhanced findings, many pages", scanType: "ENHANCED",
			amd: []ecrtest.ScanState{{Status: "PENDING"}, {Status: "ACTIVE", Findings: slices.Repeat(all, 50)}}, arm: []ecrtest.ScanState{{Status: "ACTIVE"}},
			wantCount: "CRITICAL 50, HIGH 50, MEDIUM 50, LOW 50, INFORMATIONAL 50", wantNames: []string{"CRITICAL CVE-2026-0001 (busybox 1.36.1-r0)"}},
		{name: "enhanced COMPLETE without results is waited out", scanType: "ENHANCED",
			amd:      []ecrtest.ScanState{{Status: "COMPLETE", NoResults: true}, {Status: "COMPLETE", NoResults: true}, {Status: "COMPLETE", Findings: all[:1]}},
			arm:      []ecrtest.ScanState{{Status: "ACTIVE", NoResults: true}, {Status: "ACTIVE"}},
			wantLine: "linux/amd64 (COMPLETE, no results yet)", wantCount: "CRITICAL 1, HIGH 0, MEDIUM 0, LOW 0", wantNames: []string{"CRITICAL CVE-2026-0001"}},
		{name: "results that never come, within the grace", scanType: "ENHANCED", amd: []ecrtest.ScanState{{Status: "ACTIVE", NoResults: true}},
			arm: []ecrtest.ScanState{{Status: "ACTIVE"}}, timeout: 300 * time.Millisecond,
			wantErr: "did not finish within 300ms: still waiting for linux/amd64 (ACTIVE, no results yet)"},
		{name: "results that never come, past the grace: no findings", scanType: "ENHANCED", amd: []ecrtest.ScanState{{Status: "ACTIVE", NoResults: true}},
			arm: []ecrtest.ScanState{{Status: "ACTIVE"}}, grace: 100 * time.Millisecond,
			wantLine: "ECR has reported the scan of linux/amd64 (sha256:", wantCount: "CRITICAL 0, HIGH 0, MEDIUM 0, LOW 0"},
		{name: "failed", scanType: "BASIC", amd: []ecrtest.ScanState{{Status: "COMPLETE"}},
			arm:     []ecrtest.ScanState{inProgress, {Status: "FAILED", Description: "scanner crashed"}},
			wantErr: "linux/arm64 (sha256:bbbb"},
		{name: "unsupported", scanType: "BASIC", amd: []ecrtest.ScanState{{Status: "UNSUPPORTED_IMAGE", Description: "UnsupportedImageError: The operating system is not supported"}},
			arm: []ecrtest.ScanState{{Status: "COMPLETE"}}, wantErr: "ended UNSUPPORTED_IMAGE: UnsupportedImageError"},
		{name: "timeout", scanType: "BASIC", amd: []ecrtest.ScanState{inProgress}, arm: []ecrtest.ScanState{{Status: "COMPLETE"}},
			timeout: 300 * time.Millisecond, wantErr: "did not finish within 300ms: still waiting for linux/amd64 (IN_PROGRESS)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, reg, _, p := scriptedScans(t, tc.scanType, tc.amd, tc.arm)
			var lines []string
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			scans, err := reg.WaitForScans(ctx(t), p.Platforms, ecr.WaitOptions{
				Timeout: timeout, Poll: 10 * time.Millisecond, Progress: time.Nanosecond, ResultsGrace: tc.grace,
				Report: func(l string) { lines = append(lines, l) },
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				var fe *ecr.ScanFailedError
				var te *ecr.ScanTimeoutError
				if !errors.As(err, &fe) && !errors.As(err, &te) {
					t.Errorf("err is %T", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ecr.CountsLine(scans[0].Counts); got != tc.wantCount {
				t.Errorf("amd64 counts %q, want %q", got, tc.wantCount)
			}
			var names []string
			for _, f := range scans[0].Findings {
				names = append(names, f.String())
			}
			for _, w := range tc.wantNames {
				if !slices.Contains(names, w) && !strings.Contains(strings.Join(names, "|"), w) {
					t.Errorf("findings lack %q: %v", w, names)
				}
			}
			if want := len(tc.amd[len(tc.amd)-1].Findings); len(names) != want {
				t.Errorf("%d findings read, want %d (all pages)", len(names), want)
			}
			if len(names) > 0 && !strings.HasPrefix(names[0], "CRITICAL") {
				t.Errorf("findings not most severe first: %v", names[:3])
			}
			if tc.wantLine != "" && !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, tc.wantLine) }) {
				t.Errorf("progress lines %q lack %q", lines, tc.wantLine)
			}
		})
	}
}

func TestParseFailOn(t *testing.T) {
	for in, want := range map[string]string{"CRITICAL": "CRITICAL", "high": "HIGH", " Medium ": "MEDIUM", "LOW": "LOW", "none": "", "NONE": ""} {
		if got, err := ecr.ParseFailOn(in); err != nil || got != want {
			t.Errorf("ParseFailOn(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "SEVERE", "INFORMATIONAL", "crit"} {
		if _, err := ecr.ParseFailOn(bad); err == nil || !strings.Contains(err.Error(), "CRITICAL, HIGH, MEDIUM, LOW, none") {
			t.Errorf("ParseFailOn(%q) err = %v", bad, err)
		}
	}
	if !ecr.AtOrAbove("CRITICAL", "HIGH") || ecr.AtOrAbove("MEDIUM", "HIGH") || ecr.AtOrAbove("CRITICAL", "") || ecr.AtOrAbove("UNTRIAGED", "LOW") {
		t.Error("AtOrAbove")
	}
}
