package ci

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/ci/ecr/ecrtest"
)

// The gate fails closed: a failure entry for the repository stops the
// release, naming the API call; an unreadable scan type is "unknown".
func TestPushScanGateFailsClosed(t *testing.T) {
	t.Parallel()
	t.Run("failure entry", func(t *testing.T) {
		t.Parallel()
		ecrSrv, fe := scanningPush(t, "BASIC", map[string]string{"PUSH_LATEST": "true"})
		ecrSrv.FailScanningConfiguration("sidecar", "REPOSITORY_NOT_FOUND")
		err := fe.runner.Push(testCtx(t))
		if err == nil || !strings.Contains(err.Error(), "ecr:BatchGetRepositoryScanningConfiguration") ||
			!strings.Contains(err.Error(), "REPOSITORY_NOT_FOUND") || !strings.Contains(err.Error(), "unreleased candidate") {
			t.Fatalf("err = %v; log:\n%s", err, fe.log)
		}
		if strings.Contains(fe.log.String(), "no scan gate") {
			t.Errorf("the gate was skipped:\n%s", fe.log)
		}
		if repo, _ := ecrSrv.Repository("sidecar"); repo.Tags["latest"] != "" {
			t.Errorf("latest promoted: %v", repo.Tags)
		}
	})
	t.Run("scan type unknown", func(t *testing.T) {
		t.Parallel()
		mutable := false
		ecrSrv := pushEnv(t, &mutable)
		ecrSrv.SetScanning("sidecar", "ENHANCED", "SCAN_ON_PUSH")
		ecrSrv.Deny("GetRegistryScanningConfiguration")
		fe := newLightPushEngine(t, ecrSrv, nil)
		fe.runner.scanPoll, fe.runner.scanProgress = 5*time.Millisecond, time.Nanosecond
		if err := fe.runner.Push(testCtx(t)); err != nil {
			t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
		}
		if !strings.Contains(fe.log.String(), "waiting for the (scan type unknown) ECR scan") || strings.Contains(fe.log.String(), "basic ECR scan") {
			t.Errorf("log does not say the scan type is unknown:\n%s", fe.log)
		}
	})
}

// More findings than are named (ScanOf stops at 1000): "and N more"
// counts from findingSeverityCounts; each platform's line has the scan's
// completion time and the age of its vulnerability data.
func TestPushScanGateCountsBeyondTheNamedFindings(t *testing.T) {
	t.Parallel()
	ecrSrv, fe := scanningPush(t, "BASIC", nil)
	fe.runner.scanPoll, fe.runner.scanProgress = 5*time.Millisecond, time.Nanosecond
	var many []ecrtest.ScanFinding
	for i := range 1200 {
		many = append(many, ecrtest.ScanFinding{Severity: "CRITICAL", Name: fmt.Sprintf("CVE-2026-%05d", i), Package: "busybox", Version: "1.37.0-r19"})
	}
	plats := fe.platformDigests(t)
	ecrSrv.ScriptScan(plats[0], ecrtest.ScanState{Status: "COMPLETE", Findings: many})
	ecrSrv.ScriptScan(plats[1], ecrtest.ScanState{Status: "COMPLETE"})
	err := fe.runner.Push(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "linux/amd64: and 1190 more") {
		t.Fatalf("err = %v, want 10 named and 1190 more", err)
	}
	when := "scan completed " + ecrSrv.ScanClock.Format(time.RFC3339) + ", vulnerability data of " + ecrSrv.ScanClock.Add(-6*time.Hour).Format(time.RFC3339)
	if !strings.Contains(fe.log.String(), "CRITICAL 1200, HIGH 0, MEDIUM 0, LOW 0 ("+when+")") {
		t.Errorf("log lacks the counts with %q:\n%s", when, fe.log)
	}
}

// A candidate pushed by an earlier run while scanning was off has no
// scan: under basic scanning the gate starts one (once) instead of
// waiting out SCAN_TIMEOUT; under enhanced scanning it fails at once.
func TestPushScanGateCandidateWithoutScan(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		scanType string
		released bool
		want     string
	}{
		{"BASIC", true, "started a basic scan with ecr:StartImageScan"},
		{"ENHANCED", false, "cannot scan it on demand"},
	} {
		t.Run(tc.scanType, func(t *testing.T) {
			t.Parallel()
			immutable := true
			ecrSrv := pushEnv(t, &immutable)
			ecrSrv.SetScanning("sidecar", tc.scanType, "SCAN_ON_PUSH")
			fe := newLightPushEngine(t, ecrSrv, map[string]string{"SCAN_TIMEOUT": "45m"}) // the longest: never waited out
			fe.runner.scanPoll, fe.runner.scanProgress = 5*time.Millisecond, time.Hour
			short := gitHead(t, fe.dir)[:12]
			ecrSrv.PushImage("sidecar", short, fe.topType, fe.top)
			plats := fe.platformDigests(t)
			for _, d := range plats {
				ecrSrv.ScriptScan(d, ecrtest.ScanState{}) // ScanNotFoundException until a scan starts
			}
			err := fe.runner.Push(testCtx(t))
			if tc.released {
				if err != nil {
					t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
				}
				if !strings.Contains(fe.log.String(), tc.want) {
					t.Errorf("log lacks %q:\n%s", tc.want, fe.log)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "stays in ECR; this run had no version tag or latest to move") {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			ops := ecrSrv.Operations()
			if n := count(ops, "StartImageScan"); tc.released && n != len(plats) || !tc.released && n != 0 {
				t.Errorf("%d StartImageScan calls for %d manifests: %v", n, len(plats), ops)
			}
		})
	}
}

func count(s []string, v string) int {
	n := 0
	for i := slices.Index(s, v); i >= 0; i = slices.Index(s, v) {
		n++
		s = s[i+1:]
	}
	return n
}
