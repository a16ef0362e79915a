package ci

import (
	"context"
	"fmt"
	"strings"

	"dagger.io/dagger"

	"github.com/example/sidecar/ci/ecr"
)

// publish releases the tested multi-platform image in three steps:
//
//  1. candidate: push it under the commit tag (unless the commit is in
//     ECR already, whose image then stands);
//  2. gate: wait for ECR's scan of every platform manifest and stop on
//     findings at or above SCAN_FAIL_ON;
//  3. attach the SBOM and provenance to the candidate (and write them to
//     dist/), then promote: put the version tag and latest on it with
//     PutImage (no second push).
//
// It decides for every tag before pushing any, so a conflict pushes
// nothing; a failed gate leaves the commit tag as an unreleased candidate.
func (r *Runner) publish(ctx context.Context, client *dagger.Client, img *Image, reg *ecr.Registry, tags []string, src source) error {
	r.step("push: checking tags %s in %s", strings.Join(tags, ", "), reg.URI)
	existing, err := reg.Lookup(ctx, tags)
	if err != nil {
		return err
	}
	plan, err := ecr.Decide(reg.Repository, img.Digest, tags, existing, reg.Immutable)
	if err != nil {
		return fmt.Errorf("push refused (nothing pushed): %w", err)
	}
	commit := tags[0]
	candidate, ok := plan.Skip[commit]
	built := false // this run pushed the candidate
	switch {
	case ok && plan.Released:
		// A rebuild is not byte-identical; the commit's pushed image stands.
		r.step("push: commit %s already in ECR as %s; this rebuild (%s) is not pushed", commit, candidate, orUnknown(img.Digest))
	case ok:
		r.step("push: %s already at %s: skipped", reg.Ref(commit), candidate)
	default:
		if candidate, err = r.pushCandidate(ctx, client, img, reg, commit, plan.Moves[commit]); err != nil {
			return err
		}
		built = true
	}
	fmt.Fprintln(r.out(), reg.Ref(commit)+"@"+candidate)

	var promote []string
	for _, tag := range tags[1:] {
		if d, ok := plan.Skip[tag]; ok {
			r.step("push: %s already at %s: skipped", reg.Ref(tag), d)
			fmt.Fprintln(r.out(), reg.Ref(tag)+"@"+d)
		} else {
			promote = append(promote, tag)
		}
	}

	pushed, err := reg.Describe(ctx, candidate)
	if err != nil {
		return err
	}
	if len(pushed.Platforms) == 1 && pushed.Platforms[0].Digest == pushed.Digest && len(img.Platforms) == 1 {
		// A single-platform push: a plain manifest, which names no platform.
		pushed.Platforms[0].Platform = string(img.Platforms[0])
	}
	if err := r.scanGate(ctx, reg, pushed, commit, promote, built); err != nil {
		return err
	}
	// Before promotion: a released tag never lacks its SBOM and provenance.
	if err := r.attest(ctx, img, reg, pushed, src, built); err != nil {
		return fmt.Errorf("%w; %s stays as an unreleased candidate", err, reg.Ref(commit))
	}
	for _, tag := range promote {
		if old, ok := plan.Moves[tag]; ok {
			r.step("push: moving mutable tag %s from %s", tag, old)
		}
		r.step("push: releasing %s as %s", candidate, reg.Ref(tag))
		if err := reg.Retag(ctx, candidate, tag); err != nil {
			return fmt.Errorf("promote %s (the candidate %s stays): %w", tag, reg.Ref(commit), err)
		}
		fmt.Fprintln(r.out(), reg.Ref(tag)+"@"+candidate)
	}
	if len(promote) == 0 && len(tags) > 1 {
		r.step("push: every tag already points at the commit's image")
	}
	return nil
}

// pushCandidate publishes the image under the commit tag and returns the
// digest the registry reports.
func (r *Runner) pushCandidate(ctx context.Context, client *dagger.Client, img *Image, reg *ecr.Registry, tag, moved string) (string, error) {
	secrets, err := newSecretFile()
	if err != nil {
		return "", err
	}
	defer secrets.Close()
	pw, err := secrets.secret(client, "ecr-password", reg.Password())
	if err != nil {
		return "", err
	}
	if moved != "" {
		r.step("push: moving mutable tag %s from %s", tag, moved)
	}
	r.step("push: publishing the candidate %s (%d platforms)", reg.Ref(tag), len(img.Variants))
	ref, err := client.Container().WithRegistryAuth(reg.Host, reg.Username, pw).Publish(ctx, reg.Ref(tag), dagger.ContainerPublishOpts{
		PlatformVariants: img.Variants, ForcedCompression: dagger.ImageLayerCompressionGzip,
	})
	if err != nil {
		return "", fmt.Errorf("publish %s (nothing pushed): %w", reg.Ref(tag), err)
	}
	_, digest, ok := strings.Cut(ref, "@")
	if !ok {
		return "", fmt.Errorf("publish %s: the engine returned %q, not a reference with a digest", reg.Ref(tag), ref)
	}
	r.step("push: pushed %s", ref)
	if digest != img.Digest {
		r.step("push: note: registry digest %s differs from the measured export %s", digest, img.Digest)
	}
	return digest, nil
}

// scanGate waits for ECR's scan of every platform manifest of the
// candidate (an index itself is not scanned) and fails on findings at or
// above SCAN_FAIL_ON. A repository that does not scan skips the gate with
// a warning; a scan that fails or times out is an error, not a pass.
// justPushed says this run pushed the candidate: otherwise a missing scan
// will not appear by waiting (see ecr.WaitOptions.JustPushed).
func (r *Runner) scanGate(ctx context.Context, reg *ecr.Registry, pushed ecr.Pushed, commit string, promote []string, justPushed bool) error {
	held := "the version and latest tags were not moved"
	if len(promote) > 0 {
		held = strings.Join(promote, " and ") + " not moved"
	}
	candidate := fmt.Sprintf("%s stays as an unreleased candidate; %s", reg.Ref(commit), held)
	setting, err := reg.ScanSetting(ctx)
	if err != nil {
		return fmt.Errorf("scan gate: %w; %s", err, candidate)
	}
	if !setting.Scans {
		r.step("push: WARNING: ECR repository %q does not scan pushed images (%s): no scan gate; "+
			"turn on scan on push (basic) or enhanced scanning to gate releases on it", reg.Repository, setting.How)
		return nil
	}
	var kind string
	switch setting.Type {
	case "BASIC":
		kind = "basic"
	case "ENHANCED":
		kind = "enhanced (Inspector)"
	default: // ecr:GetRegistryScanningConfiguration did not answer
		kind = "(scan type unknown)"
	}
	r.step("push: waiting for the %s ECR scan (%s) of %d platform manifest(s), up to SCAN_TIMEOUT=%s",
		kind, setting.How, len(pushed.Platforms), r.Config.ScanTimeout)
	scans, err := reg.WaitForScans(ctx, pushed.Platforms, ecr.WaitOptions{
		Timeout: r.Config.ScanTimeout, Poll: r.scanPoll, Progress: r.scanProgress,
		Report:     func(line string) { r.step("push: %s", line) },
		JustPushed: justPushed, ScanType: setting.Type,
	})
	if err != nil {
		return fmt.Errorf("scan gate: %w; %s", err, candidate)
	}
	var blocking []string
	for i, m := range pushed.Platforms {
		line := ecr.CountsLine(scans[i].Counts)
		if t := scans[i].Times(); t != "" {
			line += " (" + t + ")"
		}
		r.step("push: ECR scan of %s (%s): %s", m.Platform, m.Digest, line)
		// findingSeverityCounts rule: the named findings are capped.
		total := 0
		for _, sev := range ecr.Severities() {
			if ecr.AtOrAbove(sev, r.Config.ScanFailOn) {
				total += scans[i].Counts[sev]
			}
		}
		named := 0
		for _, f := range scans[i].Findings {
			if named < 10 && ecr.AtOrAbove(f.Severity, r.Config.ScanFailOn) {
				blocking = append(blocking, m.Platform+": "+f.String())
				named++
			}
		}
		switch {
		case named == 0: // counts without named findings (not expected, but counts rule)
			for _, sev := range ecr.Severities() {
				if c := scans[i].Counts[sev]; c > 0 && ecr.AtOrAbove(sev, r.Config.ScanFailOn) {
					blocking = append(blocking, fmt.Sprintf("%s: %d %s", m.Platform, c, sev))
				}
			}
		case total > named:
			blocking = append(blocking, fmt.Sprintf("%s: and %d more", m.Platform, total-named))
		}
	}
	if r.Config.ScanFailOn == "" {
		r.step("push: SCAN_FAIL_ON=none: scan results do not gate the release")
		return nil
	}
	if len(blocking) > 0 {
		return fmt.Errorf("release stopped: the ECR scan found vulnerabilities at or above SCAN_FAIL_ON=%s:\n  - %s\n%s",
			r.Config.ScanFailOn, strings.Join(blocking, "\n  - "), candidate)
	}
	r.step("push: no ECR findings at or above %s", r.Config.ScanFailOn)
	return nil
}
