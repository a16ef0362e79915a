package ecr_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/ecr/ecrtest"
)

// The gate never opens on an answer it did not get: only an explicit
// MANUAL frequency means "not scanned".
func TestScanSettingFailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(*ecrtest.Server)
		wantErr string
		scans   bool
		typ     string
	}{
		{name: "failure entry", setup: func(s *ecrtest.Server) { s.FailScanningConfiguration("sidecar", "REPOSITORY_NOT_FOUND") },
			wantErr: "ecr:BatchGetRepositoryScanningConfiguration for \"sidecar\" failed: REPOSITORY_NOT_FOUND"},
		{name: "no entry", setup: func(s *ecrtest.Server) { s.FailScanningConfiguration("sidecar", "") },
			wantErr: "ecr:BatchGetRepositoryScanningConfiguration for \"sidecar\": the answer has no configuration"},
		// The repository's own flag says scan on push; registry rules
		// make the effective frequency MANUAL.
		{name: "scanOnPush true, frequency MANUAL", setup: func(s *ecrtest.Server) {
			s.SetScanning("sidecar", "BASIC", "MANUAL")
			s.SetRepositoryScanOnPush("sidecar", true)
		}, scans: false, typ: "BASIC"},
		// The type is unknown, not guessed "basic"; the gate still runs.
		{name: "registry configuration denied", setup: func(s *ecrtest.Server) {
			s.SetScanning("sidecar", "ENHANCED", "SCAN_ON_PUSH")
			s.Deny("GetRegistryScanningConfiguration")
		}, scans: true, typ: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := ecrtest.Start(t, "eu-west-1")
			srv.AddRepository("sidecar", true)
			srv.SetScanning("sidecar", "BASIC", "SCAN_ON_PUSH")
			reg := preflight(t, srv)
			tc.setup(srv)
			s, err := reg.ScanSetting(ctx(t))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ScanSetting = %+v, %v; want error %q", s, err, tc.wantErr)
				}
				return
			}
			if err != nil || s.Scans != tc.scans || s.Type != tc.typ {
				t.Errorf("ScanSetting = %+v, %v; want scans=%v type %q", s, err, tc.scans, tc.typ)
			}
		})
	}
}

// A candidate pushed by an earlier run while scanning was off has no
// scan and gets none by waiting.
func TestWaitForScansOfAnEarlierPush(t *testing.T) {
	notFound := ecrtest.ScanState{} // ScanNotFoundException, for ever
	for _, tc := range []struct {
		name       string
		scanType   string
		justPushed bool
		amd        []ecrtest.ScanState
		wantErr    string
		wantStart  bool
	}{
		{name: "basic: started once", scanType: "BASIC", amd: []ecrtest.ScanState{notFound}, wantStart: true},
		{name: "enhanced: fails at once", scanType: "ENHANCED", amd: []ecrtest.ScanState{notFound},
			wantErr: "cannot scan it on demand"},
		{name: "just pushed: waits for scan on push", scanType: "BASIC", justPushed: true,
			amd: []ecrtest.ScanState{notFound, notFound, {Status: "COMPLETE"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, reg, plats, p := scriptedScans(t, tc.scanType, tc.amd, []ecrtest.ScanState{{Status: "COMPLETE"}})
			var lines []string
			scans, err := reg.WaitForScans(ctx(t), p.Platforms, ecr.WaitOptions{
				Timeout: 10 * time.Second, Poll: 5 * time.Millisecond, Progress: time.Hour,
				Report:     func(l string) { lines = append(lines, l) },
				JustPushed: tc.justPushed, ScanType: tc.scanType,
			})
			if srv.ScanStarted(plats[0]) != tc.wantStart || srv.ScanStarted(plats[1]) {
				t.Errorf("StartImageScan called: amd64 %v arm64 %v, want %v false", srv.ScanStarted(plats[0]), srv.ScanStarted(plats[1]), tc.wantStart)
			}
			if tc.wantErr != "" {
				var me *ecr.ScanMissingError
				if !errors.As(err, &me) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "linux/amd64") {
					t.Fatalf("err = %v, want a ScanMissingError %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			said := strings.Contains(strings.Join(lines, "\n"), "started a basic scan with ecr:StartImageScan")
			if said != tc.wantStart {
				t.Errorf("progress lines %q (want a StartImageScan line: %v)", lines, tc.wantStart)
			}
			if !scans[0].CompletedAt.Equal(srv.ScanClock) || !scans[0].SourceUpdatedAt.Equal(srv.ScanClock.Add(-6*time.Hour)) {
				t.Errorf("scan times %s / %s, want %s and 6h before", scans[0].CompletedAt, scans[0].SourceUpdatedAt, srv.ScanClock)
			}
			if got := scans[0].Times(); !strings.Contains(got, "scan completed "+srv.ScanClock.Format(time.RFC3339)) || !strings.Contains(got, "vulnerability data of") {
				t.Errorf("Times() = %q", got)
			}
		})
	}
}
