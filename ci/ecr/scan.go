package ecr

// The scan gate: which manifests ECR scans, waiting for their scans, and
// the findings by severity. Both kinds of scanning DescribeImageScanFindings
// reports are handled: basic (findings) and enhanced, Amazon Inspector
// (enhancedFindings); both carry findingSeverityCounts.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecr/types"
)

// Severities are ECR's finding severities, most severe first. Basic
// scanning also reports INFORMATIONAL and UNDEFINED, enhanced scanning
// UNTRIAGED; those are counted and printed but never gate.
func Severities() []string { return []string{"CRITICAL", "HIGH", "MEDIUM", "LOW"} }

// FailOnValues are the accepted values of a severity threshold
// (SCAN_FAIL_ON): a severity, or none for no gate.
func FailOnValues() []string { return append(Severities(), "none") }

// ParseFailOn returns the canonical threshold ("" for none).
func ParseFailOn(s string) (string, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	switch {
	case u == "NONE":
		return "", nil
	case slices.Contains(Severities(), u):
		return u, nil
	}
	return "", fmt.Errorf("want one of %s", strings.Join(FailOnValues(), ", "))
}

// AtOrAbove reports whether severity sev is at or above threshold failOn
// ("" never).
func AtOrAbove(sev, failOn string) bool {
	i, j := slices.Index(Severities(), sev), slices.Index(Severities(), failOn)
	return i >= 0 && j >= 0 && i <= j
}

// ScanSetting is how the repository is scanned.
type ScanSetting struct {
	Scans bool   // images pushed to the repository are scanned
	Type  string // BASIC or ENHANCED; "" when it could not be read
	How   string // e.g. "scan on push", "continuous scan"
}

// ScanSetting reads the repository's effective scanning configuration
// (registry rules applied, ecr:BatchGetRepositoryScanningConfiguration)
// and the registry's scan type. Only an explicit MANUAL frequency means
// "not scanned": a failure entry for the repository, or no entry at all,
// is an error, so the gate never opens on an answer it did not get.
func (r *Registry) ScanSetting(ctx context.Context) (ScanSetting, error) {
	var s ScanSetting
	// The type only names the scanner in messages ("" prints as unknown);
	// the repository's own configuration decides whether the gate runs.
	if out, err := r.client.GetRegistryScanningConfiguration(ctx, &ecr.GetRegistryScanningConfigurationInput{}); err == nil && out.ScanningConfiguration != nil {
		s.Type = string(out.ScanningConfiguration.ScanType)
	}
	call := fmt.Sprintf("ecr:BatchGetRepositoryScanningConfiguration for %q", r.Repository)
	out, err := r.client.BatchGetRepositoryScanningConfiguration(ctx, &ecr.BatchGetRepositoryScanningConfigurationInput{
		RepositoryNames: []string{r.Repository},
	})
	if err != nil {
		return s, fmt.Errorf("%s: %w", call, err)
	}
	for _, f := range out.Failures {
		if n := aws.ToString(f.RepositoryName); n == r.Repository || n == "" {
			return s, fmt.Errorf("%s failed: %s: %s", call, f.FailureCode, aws.ToString(f.FailureReason))
		}
	}
	i := slices.IndexFunc(out.ScanningConfigurations, func(c types.RepositoryScanningConfiguration) bool {
		return aws.ToString(c.RepositoryName) == r.Repository
	})
	if i < 0 {
		return s, fmt.Errorf("%s: the answer has no configuration for the repository", call)
	}
	// scanFrequency is the effective rule; the repository's own
	// scanOnPush flag is overridden by registry rules, so it is not read.
	switch f := out.ScanningConfigurations[i].ScanFrequency; f {
	case types.ScanFrequencyContinuousScan:
		s.Scans, s.How = true, "continuous scan"
	case types.ScanFrequencyScanOnPush:
		s.Scans, s.How = true, "scan on push"
	case types.ScanFrequencyManual:
		s.How = "manual scans only"
	default:
		return s, fmt.Errorf("%s: scan frequency %q is none of SCAN_ON_PUSH, CONTINUOUS_SCAN, MANUAL", call, f)
	}
	return s, nil
}

// Manifest is one platform manifest of a pushed image.
type Manifest struct {
	Platform  string // os/arch[/variant]
	Digest    string
	MediaType string
	Size      int64
}

// Pushed is an image in the repository: its top manifest and, for an
// image index, the platform manifests it lists.
type Pushed struct {
	Digest    string
	MediaType string
	Size      int64
	Manifest  []byte     // the raw top manifest
	Platforms []Manifest // the index's platform manifests; the image itself when not an index
}

// Describe reads the image with digest from the repository.
func (r *Registry) Describe(ctx context.Context, digest string) (Pushed, error) {
	out, err := r.client.BatchGetImage(ctx, &ecr.BatchGetImageInput{
		RepositoryName:     aws.String(r.Repository),
		ImageIds:           []types.ImageIdentifier{{ImageDigest: aws.String(digest)}},
		AcceptedMediaTypes: manifestTypes(),
	})
	if err != nil {
		return Pushed{}, fmt.Errorf("ecr:BatchGetImage %s in %q: %w", digest, r.Repository, err)
	}
	if len(out.Images) == 0 || out.Images[0].ImageManifest == nil {
		return Pushed{}, fmt.Errorf("ecr:BatchGetImage: image %s not found in %q", digest, r.Repository)
	}
	raw := []byte(aws.ToString(out.Images[0].ImageManifest))
	var doc struct {
		MediaType string `json:"mediaType"`
		Manifests []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
			Size      int64  `json:"size"`
			Platform  *struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
				Variant      string `json:"variant"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return Pushed{}, fmt.Errorf("image %s in %q: manifest is not JSON: %w", digest, r.Repository, err)
	}
	p := Pushed{Digest: digest, Manifest: raw, Size: int64(len(raw)), MediaType: aws.ToString(out.Images[0].ImageManifestMediaType)}
	if p.MediaType == "" {
		p.MediaType = doc.MediaType
	}
	if doc.Manifests == nil { // a single image manifest
		p.Platforms = []Manifest{{Platform: "(single platform)", Digest: digest, MediaType: p.MediaType, Size: p.Size}}
		return p, nil
	}
	for _, m := range doc.Manifests {
		if m.Platform == nil || m.Platform.OS == "unknown" { // attestations, not images
			continue
		}
		plat := m.Platform.OS + "/" + m.Platform.Architecture
		if m.Platform.Variant != "" && m.Platform.Architecture != "arm64" {
			plat += "/" + m.Platform.Variant
		}
		p.Platforms = append(p.Platforms, Manifest{Platform: plat, Digest: m.Digest, MediaType: m.MediaType, Size: m.Size})
	}
	if len(p.Platforms) == 0 {
		return Pushed{}, fmt.Errorf("image index %s in %q lists no platform manifests", digest, r.Repository)
	}
	return p, nil
}

// Scan is the state of one manifest's scan.
type Scan struct {
	Status      string // ECR's status: IN_PROGRESS, COMPLETE, ACTIVE, FAILED, …
	Description string
	Counts      map[string]int // severity -> findings
	Findings    []Finding      // named findings, at most findingsCap, most severe first
	NotStarted  bool           // ECR has no scan for the image yet
	// Results: the answer carries a completion time, counts or findings.
	// Under enhanced scanning ECR can answer COMPLETE with none of them
	// right after a push, the findings coming seconds later
	// (aws/aws-sdk#289): such a scan is still pending.
	Results bool
	// CompletedAt is ECR's imageScanCompletedAt; SourceUpdatedAt its
	// vulnerabilitySourceUpdatedAt, the age of the vulnerability data.
	// Zero when ECR does not say.
	CompletedAt, SourceUpdatedAt time.Time
}

// Times renders when the scan completed and the age of its vulnerability
// data, e.g. "scan completed 2026-12-01T10:00:00Z, vulnerability data of
// 2026-12-01T04:00:00Z"; "" when ECR gave neither.
func (s Scan) Times() string {
	var parts []string
	if !s.CompletedAt.IsZero() {
		parts = append(parts, "scan completed "+s.CompletedAt.UTC().Format(time.RFC3339))
	}
	if !s.SourceUpdatedAt.IsZero() {
		parts = append(parts, "vulnerability data of "+s.SourceUpdatedAt.UTC().Format(time.RFC3339))
	}
	return strings.Join(parts, ", ")
}

// Finding is one named finding of a scan.
type Finding struct {
	Severity, Name, Package string
}

func (f Finding) String() string {
	s := f.Severity + " " + f.Name
	if f.Package != "" {
		s += " (" + f.Package + ")"
	}
	return s
}

// finished is whether ECR's status says the scan finished.
func (s Scan) finished() bool { return s.Status == "COMPLETE" || s.Status == "ACTIVE" }

// awaitingResults is a finished status without results yet.
func (s Scan) awaitingResults() bool { return s.finished() && !s.Results }

// Done reports whether the scan finished with results.
func (s Scan) Done() bool { return s.finished() && s.Results }

// Pending reports whether the scan may still finish.
func (s Scan) Pending() bool {
	return s.NotStarted || s.Status == "IN_PROGRESS" || s.Status == "PENDING" || s.awaitingResults()
}

// State is the status, and whether results are still missing from a
// finished one, for progress and timeout messages.
func (s Scan) State() string {
	if s.awaitingResults() {
		return s.Status + ", no results yet"
	}
	return s.Status
}

// findingsCap bounds the findings named in messages.
const findingsCap = 1000

// ScanOf reads the scan of the manifest with digest.
func (r *Registry) ScanOf(ctx context.Context, digest string) (Scan, error) {
	in := &ecr.DescribeImageScanFindingsInput{
		RepositoryName: aws.String(r.Repository),
		ImageId:        &types.ImageIdentifier{ImageDigest: aws.String(digest)},
	}
	var s Scan
	for page := 0; ; page++ {
		out, err := r.client.DescribeImageScanFindings(ctx, in)
		var nf *types.ScanNotFoundException
		if errors.As(err, &nf) {
			return Scan{NotStarted: true, Status: "NOT_STARTED"}, nil
		}
		if err != nil {
			return Scan{}, fmt.Errorf("ecr:DescribeImageScanFindings %s in %q: %w", digest, r.Repository, err)
		}
		if page == 0 {
			if out.ImageScanStatus != nil {
				s.Status = string(out.ImageScanStatus.Status)
				s.Description = aws.ToString(out.ImageScanStatus.Description)
			}
			if !s.finished() {
				return s, nil
			}
			s.Counts = map[string]int{}
		}
		if f := out.ImageScanFindings; f != nil {
			if page == 0 {
				for k, v := range f.FindingSeverityCounts {
					s.Counts[k] = int(v)
				}
				s.CompletedAt = aws.ToTime(f.ImageScanCompletedAt)
				s.SourceUpdatedAt = aws.ToTime(f.VulnerabilitySourceUpdatedAt)
				s.Results = f.ImageScanCompletedAt != nil || f.FindingSeverityCounts != nil
			}
			s.Results = s.Results || len(f.Findings) > 0 || len(f.EnhancedFindings) > 0
			for _, b := range f.Findings { // basic scanning
				s.Findings = append(s.Findings, Finding{Severity: string(b.Severity), Name: aws.ToString(b.Name), Package: basicPackage(b.Attributes)})
			}
			for _, e := range f.EnhancedFindings { // enhanced scanning (Inspector)
				name := aws.ToString(e.Title)
				pkg := ""
				if d := e.PackageVulnerabilityDetails; d != nil {
					if id := aws.ToString(d.VulnerabilityId); id != "" {
						name = id
					}
					if len(d.VulnerablePackages) > 0 {
						pkg = aws.ToString(d.VulnerablePackages[0].Name) + " " + aws.ToString(d.VulnerablePackages[0].Version)
					}
				}
				s.Findings = append(s.Findings, Finding{Severity: aws.ToString(e.Severity), Name: name, Package: strings.TrimSpace(pkg)})
			}
		}
		if out.NextToken == nil || len(s.Findings) >= findingsCap {
			break
		}
		in.NextToken = out.NextToken
	}
	sort.SliceStable(s.Findings, func(i, j int) bool { return rank(s.Findings[i].Severity) < rank(s.Findings[j].Severity) })
	return s, nil
}

func basicPackage(attrs []types.Attribute) string {
	var name, version string
	for _, a := range attrs {
		switch aws.ToString(a.Key) {
		case "package_name":
			name = aws.ToString(a.Value)
		case "package_version":
			version = aws.ToString(a.Value)
		}
	}
	return strings.TrimSpace(name + " " + version)
}

func rank(sev string) int {
	if i := slices.Index(Severities(), sev); i >= 0 {
		return i
	}
	return len(Severities())
}

// CountsLine renders severity counts most severe first, e.g.
// "CRITICAL 0, HIGH 2, MEDIUM 1, LOW 0" (other severities appended when
// present).
func CountsLine(counts map[string]int) string {
	var parts []string
	for _, sev := range Severities() {
		parts = append(parts, fmt.Sprintf("%s %d", sev, counts[sev]))
	}
	var other []string
	for k := range counts {
		if !slices.Contains(Severities(), k) {
			other = append(other, k)
		}
	}
	sort.Strings(other)
	for _, k := range other {
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
	}
	return strings.Join(parts, ", ")
}

// Defaults of WaitOptions (docs/pipeline.md quotes DefaultProgress and
// DefaultResultsGrace).
const (
	DefaultPoll     = 5 * time.Second
	DefaultProgress = 15 * time.Second
	// DefaultResultsGrace: how long a finished scan may go on showing no
	// results before it is taken for a clean one. ECR's first answers
	// under enhanced scanning can be empty for seconds (aws/aws-sdk#289),
	// and whether it ever sends counts for a clean image is not known.
	DefaultResultsGrace = 2 * time.Minute
)

// WaitOptions bounds WaitForScans.
type WaitOptions struct {
	Timeout  time.Duration // whole wait
	Poll     time.Duration // between DescribeImageScanFindings rounds; DefaultPoll when zero
	Progress time.Duration // between progress lines; DefaultProgress when zero
	// Report receives a progress line (pending manifests with their status).
	Report func(line string)
	// JustPushed says this run pushed the images, so a scan on push may
	// not exist yet and is waited for. Otherwise (an image pushed by an
	// earlier run, perhaps while scanning was off) a missing scan never
	// appears by itself: under BASIC scanning (or an unknown ScanType)
	// WaitForScans starts one with ecr:StartImageScan, once per manifest;
	// under ENHANCED it fails at once with a ScanMissingError.
	JustPushed bool
	ScanType   string // the registry's: BASIC, ENHANCED, "" unknown
	// ResultsGrace: DefaultResultsGrace when zero.
	ResultsGrace time.Duration
}

// ScanMissingError is an image that has no scan and will not get one:
// pushed before enhanced scanning covered it, where no scan can be
// started on demand.
type ScanMissingError struct {
	Platform, Digest string
}

func (e *ScanMissingError) Error() string {
	return fmt.Sprintf("ECR has no scan of %s (%s), an image pushed by an earlier run, and enhanced (Inspector) scanning "+
		"cannot scan it on demand (ecr:StartImageScan starts basic scans only): it was pushed while the repository's "+
		"scanning rules did not cover it; check the registry's enhanced scanning rules include the repository, then "+
		"release a new commit, whose candidate is scanned on push", e.Platform, e.Digest)
}

// StartScan starts a basic scan of the manifest with digest
// (ecr:StartImageScan; ECR allows one per image per 24 hours).
func (r *Registry) StartScan(ctx context.Context, digest string) error {
	_, err := r.client.StartImageScan(ctx, &ecr.StartImageScanInput{
		RepositoryName: aws.String(r.Repository),
		ImageId:        &types.ImageIdentifier{ImageDigest: aws.String(digest)},
	})
	if err != nil {
		return fmt.Errorf("ecr:StartImageScan %s in %q: %w", digest, r.Repository, err)
	}
	return nil
}

// withDefaults fills the zero pacing fields.
func (o WaitOptions) withDefaults() WaitOptions {
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.ResultsGrace <= 0 {
		o.ResultsGrace = DefaultResultsGrace
	}
	if o.Progress <= 0 {
		o.Progress = DefaultProgress
	}
	return o
}

// ScanTimeoutError is a wait that ran out.
type ScanTimeoutError struct {
	Timeout time.Duration
	Pending []string // "linux/amd64 (IN_PROGRESS)"
}

func (e *ScanTimeoutError) Error() string {
	return fmt.Sprintf("ECR scan did not finish within %s: still waiting for %s", e.Timeout, strings.Join(e.Pending, ", "))
}

// ScanFailedError is a scan that ended without results.
type ScanFailedError struct {
	Platform, Digest, Status, Description string
}

func (e *ScanFailedError) Error() string {
	s := fmt.Sprintf("ECR scan of %s (%s) ended %s", e.Platform, e.Digest, e.Status)
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s + "; a scan without results is not a pass"
}

// WaitForScans polls the scan of every manifest until all are done,
// any ends without results (ScanFailedError) or the timeout passes
// (ScanTimeoutError). Results are in the order of ms.
func (r *Registry) WaitForScans(ctx context.Context, ms []Manifest, o WaitOptions) ([]Scan, error) {
	o = o.withDefaults()
	start := time.Now()
	deadline := start.Add(o.Timeout)
	lastReport := start
	w := make([]scanWait, len(ms))
	for {
		var pending []string
		for i, m := range ms {
			if w[i].done {
				continue
			}
			p, err := r.pollScan(ctx, m, &w[i], o)
			if err != nil {
				return nil, err
			}
			if p != "" {
				pending = append(pending, p)
			}
		}
		if len(pending) == 0 {
			scans := make([]Scan, len(w))
			for i := range w {
				scans[i] = w[i].scan
			}
			return scans, nil
		}
		now := time.Now()
		if !now.Before(deadline) {
			return nil, &ScanTimeoutError{Timeout: o.Timeout, Pending: pending}
		}
		if o.Report != nil && now.Sub(lastReport) >= o.Progress {
			lastReport = now
			o.Report(fmt.Sprintf("waiting for the ECR scan of %s (%s of %s)", strings.Join(pending, ", "),
				now.Sub(start).Round(time.Second), o.Timeout))
		}
		wait := min(o.Poll, time.Until(deadline))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// scanWait is one manifest's state in WaitForScans.
type scanWait struct {
	scan    Scan
	done    bool
	started bool      // StartImageScan called (at most once)
	empty   time.Time // first seen finished without results
}

// pollScan reads m's scan once into w: "" when it is done, else its
// pending line; an error when it cannot finish.
func (r *Registry) pollScan(ctx context.Context, m Manifest, w *scanWait, o WaitOptions) (string, error) {
	s, err := r.ScanOf(ctx, m.Digest)
	if err != nil {
		return "", err
	}
	w.scan = s
	if s.NotStarted && !o.JustPushed && !w.started {
		if o.ScanType == "ENHANCED" {
			return "", &ScanMissingError{Platform: m.Platform, Digest: m.Digest}
		}
		if err := r.StartScan(ctx, m.Digest); err != nil {
			return "", fmt.Errorf("no ECR scan of %s exists (an image pushed by an earlier run, perhaps while scanning was off) and starting one failed: %w", m.Platform, err)
		}
		w.started = true
		if o.Report != nil {
			o.Report(fmt.Sprintf("no ECR scan of %s (%s) exists (pushed by an earlier run, perhaps while scanning was off): started a basic scan with ecr:StartImageScan", m.Platform, m.Digest))
		}
	}
	if s.awaitingResults() && w.empty.IsZero() {
		w.empty = time.Now()
	}
	switch {
	case s.Done():
		w.done = true
	case s.awaitingResults() && time.Since(w.empty) >= o.ResultsGrace:
		w.done = true
		if o.Report != nil {
			o.Report(fmt.Sprintf("ECR has reported the scan of %s (%s) %s for %s without counts or findings: taken as no findings",
				m.Platform, m.Digest, s.Status, o.ResultsGrace))
		}
	case s.Pending():
		return fmt.Sprintf("%s (%s)", m.Platform, s.State()), nil
	default:
		return "", &ScanFailedError{Platform: m.Platform, Digest: m.Digest, Status: s.Status, Description: s.Description}
	}
	return "", nil
}
