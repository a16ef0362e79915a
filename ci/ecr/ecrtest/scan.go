package ecrtest

import (
	"fmt"
	"maps"
	"net/http"
	"time"
)

// SetScanning sets how repository name is scanned: scanType BASIC or
// ENHANCED (registry-wide, as in ECR), frequency SCAN_ON_PUSH,
// CONTINUOUS_SCAN or MANUAL.
func (s *Server) SetScanning(name, scanType, frequency string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scanType = scanType
	s.repos[name].ScanFrequency = frequency
	s.repos[name].ScanOnPush = frequency != "MANUAL"
}

// SetRepositoryScanOnPush sets the repository's own (legacy) scanOnPush
// flag without changing its effective scanFrequency, as in ECR, where
// registry scanning rules override it: scanOnPush true with
// scanFrequency MANUAL is a real answer.
func (s *Server) SetRepositoryScanOnPush(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[name].ScanOnPush = on
}

// FailScanningConfiguration makes BatchGetRepositoryScanningConfiguration
// answer a failures entry with code (e.g. REPOSITORY_NOT_FOUND) for
// repository name, or, with code "", leave the repository out of both
// lists.
func (s *Server) FailScanningConfiguration(name, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scanConfFailure[name] = code
}

// Deny makes operation op answer AccessDeniedException, as for an IAM
// policy without ecr:<op>.
func (s *Server) Deny(op string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied[op] = true
}

// FailPutImage makes PutImage of tag answer the error code (400), as a
// call that fails part way through a run's tags does (AccessDeniedException,
// a throttle the retries did not outlast); code "" lets it pass again.
func (s *Server) FailPutImage(tag, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putFailures[tag] = code
}

// FailImageReads makes BatchGetImage of an image by digest (reading the
// image back, as Registry.Describe does; tag lookups still answer) fail
// with the error code (400); code "" lets it pass again.
func (s *Server) FailImageReads(code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readFailure = code
}

// RacePutImage makes the next PutImage of tag find it already on digest,
// put there by another run between this run's lookup and its PutImage;
// digest "" is the image that PutImage brings.
func (s *Server) RacePutImage(tag, digest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putRaces[tag] = digest
}

// Delay makes operation op answer only after d, as a slow or congested
// path to ECR does.
func (s *Server) Delay(op string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delays[op] = d
}

// ScanStarted reports whether StartImageScan was called for digest.
func (s *Server) ScanStarted(digest string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started[digest]
}

// scanRequest reads the repository and imageId.imageDigest that
// StartImageScan and DescribeImageScanFindings both take (s.mu held); ok is
// false where the repository is unknown and has been answered.
func (s *Server) scanRequest(w http.ResponseWriter, body map[string]any) (name string, repo *Repo, digest string, ok bool) {
	name, repo, ok = s.requestRepo(w, body)
	id, _ := body["imageId"].(map[string]any)
	digest, _ = id["imageDigest"].(string)
	return name, repo, digest, ok
}

// startScan answers StartImageScan (s.mu held): under BASIC scanning it
// starts a scan, after which DescribeImageScanFindings answers COMPLETE
// where it answered ScanNotFoundException; ENHANCED scanning has no
// on-demand scan (StartImageScan "starts a basic image vulnerability
// scan"), so it is refused.
func (s *Server) startScan(w http.ResponseWriter, body map[string]any) {
	name, _, digest, ok := s.scanRequest(w, body)
	if !ok {
		return
	}
	if _, ok := s.manifests[imageKey{name, digest}]; !ok && !s.scripted(digest) {
		awsError(w, http.StatusBadRequest, "ImageNotFoundException", "no image "+digest+" in "+name)
		return
	}
	if s.scanType == "ENHANCED" {
		awsError(w, http.StatusBadRequest, "ValidationException", "basic scans cannot be started when the registry uses enhanced scanning")
		return
	}
	if s.started[digest] {
		awsError(w, http.StatusBadRequest, "LimitExceededException", "The scan quota per image has been exceeded. Wait and try again.")
		return
	}
	s.started[digest] = true
	reply(w, map[string]any{"registryId": s.Account, "repositoryName": name, "imageId": map[string]any{"imageDigest": digest},
		"imageScanStatus": map[string]any{"status": "IN_PROGRESS"}})
}

func (s *Server) scripted(digest string) bool { _, ok := s.scans[digest]; return ok }

// ScanFinding is one finding a scripted scan reports.
type ScanFinding struct {
	Severity string // CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL, UNDEFINED, UNTRIAGED
	Name     string // CVE id
	Package  string // affected package name
	Version  string
}

// ScanState is one answer of DescribeImageScanFindings for a manifest.
// Status "" answers ScanNotFoundException (no scan yet).
type ScanState struct {
	Status      string // IN_PROGRESS, COMPLETE, FAILED, UNSUPPORTED_IMAGE, ACTIVE, PENDING, …
	Description string
	Findings    []ScanFinding
	// NoResults answers a finished status with an empty findings list and
	// nothing else, as ECR does right after a push under enhanced
	// scanning (aws/aws-sdk#289).
	NoResults bool
	// Meanwhile moves tags of the repository (tag -> digest) as this
	// state is answered: another run releasing while this one waits.
	Meanwhile map[string]string
}

// ScriptScan makes DescribeImageScanFindings for digest answer states in
// turn, one per call; the last repeats. Without a script, a scanned
// repository's images answer COMPLETE with no findings, an unscanned
// one's ScanNotFoundException.
func (s *Server) ScriptScan(digest string, states ...ScanState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scans[digest] = states
}

// describeScan answers DescribeImageScanFindings (s.mu held), in the
// finding format of the scan type: findings for BASIC, enhancedFindings
// for ENHANCED. Pages of maxResults (default 100) with nextToken.
func (s *Server) describeScan(w http.ResponseWriter, body map[string]any) {
	name, repo, digest, ok := s.scanRequest(w, body)
	if !ok {
		return
	}
	var st ScanState
	if script, ok := s.scans[digest]; ok && len(script) > 0 {
		st = script[0]
		if len(script) > 1 {
			s.scans[digest] = script[1:]
		}
	} else if frequency(repo) != "MANUAL" {
		st = ScanState{Status: "COMPLETE"}
	}
	if st.Status == "" && s.started[digest] {
		st = ScanState{Status: "COMPLETE"}
	}
	if st.Status == "" {
		awsError(w, http.StatusBadRequest, "ScanNotFoundException",
			fmt.Sprintf("Image scan does not exist for image with '{imageDigest:'%s'}' in the repository with name '%s' in the registry with id '%s'", digest, name, s.Account))
		return
	}
	maps.Copy(repo.Tags, st.Meanwhile)
	out := map[string]any{
		"registryId": s.Account, "repositoryName": name, "imageId": map[string]any{"imageDigest": digest},
		"imageScanStatus": map[string]any{"status": st.Status, "description": st.Description},
	}
	if st.Status == "COMPLETE" || st.Status == "ACTIVE" {
		s.scanFindings(out, st, body)
	}
	reply(w, out)
}

// scanFindings adds a finished scan's counts and one page of its findings
// to out.
func (s *Server) scanFindings(out map[string]any, st ScanState, body map[string]any) {
	if st.NoResults {
		out["imageScanFindings"] = map[string]any{"findings": []any{}}
		return
	}
	counts := map[string]any{}
	for _, f := range st.Findings {
		n, _ := counts[f.Severity].(int)
		counts[f.Severity] = n + 1
	}
	size := 100
	if m, ok := body["maxResults"].(float64); ok && m > 0 {
		size = int(m)
	}
	from := 0
	if tok, ok := body["nextToken"].(string); ok {
		fmt.Sscanf(tok, "page-%d", &from)
	}
	to := min(from+size, len(st.Findings))
	findings := map[string]any{"findingSeverityCounts": counts, "imageScanCompletedAt": float64(s.ScanClock.Unix())}
	if s.scanType != "ENHANCED" { // basic scanning's CVE data date
		findings["vulnerabilitySourceUpdatedAt"] = float64(s.ScanClock.Add(-6 * time.Hour).Unix())
	}
	if page := st.Findings[from:to]; len(page) > 0 {
		if s.scanType == "ENHANCED" {
			findings["enhancedFindings"] = enhancedFindings(page)
		} else {
			findings["findings"] = basicFindings(page)
		}
	}
	out["imageScanFindings"] = findings
	if to < len(st.Findings) {
		out["nextToken"] = fmt.Sprintf("page-%d", to)
	}
}

// enhancedFindings are findings in enhanced (Inspector) scanning's format.
func enhancedFindings(fs []ScanFinding) []any {
	var out []any
	for _, f := range fs {
		out = append(out, map[string]any{
			"severity": f.Severity, "title": f.Name + " - " + f.Package, "type": "PACKAGE_VULNERABILITY", "status": "ACTIVE",
			"packageVulnerabilityDetails": map[string]any{"vulnerabilityId": f.Name, "source": "NVD",
				"vulnerablePackages": []any{map[string]any{"name": f.Package, "version": f.Version}}},
		})
	}
	return out
}

// basicFindings are findings in basic scanning's format.
func basicFindings(fs []ScanFinding) []any {
	var out []any
	for _, f := range fs {
		out = append(out, map[string]any{
			"name": f.Name, "severity": f.Severity, "uri": "https://nvd.nist.gov/vuln/detail/" + f.Name,
			"attributes": []any{map[string]any{"key": "package_name", "value": f.Package}, map[string]any{"key": "package_version", "value": f.Version}},
		})
	}
	return out
}

func frequency(r *Repo) string {
	switch {
	case r.ScanFrequency != "":
		return r.ScanFrequency
	case r.ScanOnPush:
		return "SCAN_ON_PUSH"
	}
	return "MANUAL"
}
