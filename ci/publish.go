package ci

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"dagger.io/dagger"

	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/imagefiles"
	"github.com/example/sidecar/ci/imagetag"
)

// publish releases the tested multi-platform image in five steps:
//
//  1. check: govulncheck the binaries of the image to be released: this
//     build, or, when the commit is in ECR already (whose image then
//     stands: a rebuild is not byte-identical, so it is not pushed), that
//     image's, read back from ECR;
//  2. candidate: push this build under the commit tag (unless the commit
//     is in ECR already);
//  3. documents: attach an SBOM per platform and the provenance to the
//     candidate and write them to dist/; a candidate already in ECR keeps
//     the valid ones it has and gets the missing ones, made from its own
//     files;
//  4. gate: wait for ECR's scan of every platform manifest and stop on
//     findings at or above SCAN_FAIL_ON;
//  5. promote: put the version tag and latest on the candidate with
//     PutImage (no second push).
//
// It decides for every tag before pushing any, so a conflict pushes
// nothing; a stop after the candidate leaves the commit tag as an
// unreleased candidate, documented, so a released tag never lacks its
// SBOM and provenance.
func (r *Runner) publish(ctx context.Context, client *dagger.Client, img *Image, reg *ecr.Registry, tags imagetag.Tags, src source) error {
	if err := removeDocuments(filepath.Join(r.Config.Dir, distDir)); err != nil {
		return err
	}
	r.step("push: checking tags %s in %s", strings.Join(tags.Names(), ", "), reg.URI)
	existing, err := reg.Lookup(ctx, tags.Names())
	if err != nil {
		return err
	}
	commit := tags.Commit()
	plan, err := ecr.Decide(reg.Repository, img.Digest, commit, tags.Release(), existing, reg.Immutable)
	if err != nil {
		return fmt.Errorf("push refused (nothing pushed): %w", err)
	}
	var promote, already []string
	for _, tag := range tags.Release() {
		if _, ok := plan.Skip[tag]; ok {
			already = append(already, tag)
		} else {
			promote = append(promote, tag)
		}
	}
	held := heldBack(reg, commit, promote, already)

	candidate, reused := plan.Skip[commit]
	var pushed ecr.Pushed
	files, docSrc := img.Files, src
	if reused {
		if plan.Released {
			r.step("push: commit %s already in ECR as %s; this rebuild (%s) is not pushed", commit, candidate, orUnknown(img.Digest))
		} else {
			r.step("push: %s already at %s: skipped", reg.Ref(commit), candidate)
		}
		if pushed, err = reg.Describe(ctx, candidate); err != nil {
			return err
		}
		if candidate != img.Digest { // not this build: read the candidate itself
			c, err := r.pullCandidate(ctx, reg, pushed, src)
			if err != nil {
				return fmt.Errorf("release refused: the commit's image %s@%s in ECR is what this run releases, but its files "+
					"could not be read to check it and to make its SBOM and provenance: %w; %s. "+
					"Check that the ECR login may pull (ecr:BatchGetImage, ecr:GetDownloadUrlForLayer), or delete that image "+
					"(aws ecr batch-delete-image --repository-name %s --image-ids imageTag=%s) and run again, so that the run pushes and documents its own build",
					reg.URI, candidate, err, held, reg.Repository, commit)
			}
			files, docSrc = c.files, c.src
		}
		namePlatform(&pushed, files)
		if err := r.vulnCheck(ctx, files, platformNames(pushed), "the commit's image "+reg.URI+"@"+candidate, held); err != nil {
			return err
		}
	} else {
		var plats []string
		for _, p := range img.Platforms {
			plats = append(plats, string(p))
		}
		if err := r.vulnCheck(ctx, img.Files, plats, "this build "+orUnknown(img.Digest), "nothing pushed"); err != nil {
			return err
		}
		if candidate, err = r.pushCandidate(ctx, client, img, reg, commit, plan.Moves[commit]); err != nil {
			return err
		}
		if pushed, err = reg.Describe(ctx, candidate); err != nil {
			return err
		}
		namePlatform(&pushed, files)
	}
	fmt.Fprintln(r.out(), reg.Ref(commit)+"@"+candidate)
	for _, tag := range already {
		r.step("push: %s already at %s: skipped", reg.Ref(tag), plan.Skip[tag])
		fmt.Fprintln(r.out(), reg.Ref(tag)+"@"+plan.Skip[tag])
	}

	// Before the gate: a candidate the gate (or a timeout) stops is
	// documented too, so no later run can promote an undocumented image.
	var pins []PinnedImage // what an earlier run's build resolved is not known
	if !reused {
		pins = img.Bases
	}
	if err := r.attest(ctx, files, img.Engine, pins, reg, pushed, docSrc, !reused); err != nil {
		return fmt.Errorf("%w; %s", err, held)
	}
	if err := r.scanGate(ctx, reg, pushed, held, !reused); err != nil {
		return err
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
	if len(promote) == 0 && len(tags.Release()) > 0 {
		r.step("push: every tag already points at the commit's image")
	}
	return nil
}

// heldBack says what a stop before promotion leaves undone, by what this
// run was to move.
func heldBack(reg *ecr.Registry, commit string, promote, already []string) string {
	switch {
	case len(promote) > 0:
		return fmt.Sprintf("%s stays as an unreleased candidate; %s not moved", reg.Ref(commit), strings.Join(promote, " and "))
	case len(already) > 0:
		return fmt.Sprintf("%s already pointed at the commit's image %s before this run; no tag was moved", strings.Join(already, " and "), reg.Ref(commit))
	default:
		return fmt.Sprintf("%s stays in ECR; this run had no version tag or latest to move (no v* tag on HEAD, PUSH_LATEST=false)", reg.Ref(commit))
	}
}

// namePlatform names the platform of a single-platform image (a plain
// manifest, which names none) from its files.
func namePlatform(pushed *ecr.Pushed, files imagefiles.Files) {
	if len(pushed.Platforms) == 1 && pushed.Platforms[0].Digest == pushed.Digest && len(files) == 1 {
		for p := range files {
			pushed.Platforms[0].Platform = p
		}
	}
}

func platformNames(pushed ecr.Pushed) []string {
	var ps []string
	for _, m := range pushed.Platforms {
		ps = append(ps, m.Platform)
	}
	return ps
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
// above SCAN_FAIL_ON; candidate says what a failure holds back. A repository that does not scan skips the gate with
// a warning; a scan that fails or times out is an error, not a pass.
// justPushed says this run pushed the candidate: otherwise a missing scan
// will not appear by waiting (see ecr.WaitOptions.JustPushed).
func (r *Runner) scanGate(ctx context.Context, reg *ecr.Registry, pushed ecr.Pushed, candidate string, justPushed bool) error {
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
