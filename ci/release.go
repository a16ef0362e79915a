package ci

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"dagger.io/dagger"
	"golang.org/x/mod/semver"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/gitref"
	"github.com/example/sidecar/ci/imagefiles"
	"github.com/example/sidecar/ci/imagetag"
	"github.com/example/sidecar/ci/secrets"
)

// The release steps. They decide for every tag before pushing any, so a
// conflict pushes nothing; a stop after the candidate leaves the commit
// tag as an unreleased candidate, documented, so a released tag never
// lacks its SBOM and provenance.

// candidateOrigin says where the image under the commit tag, the one
// this run releases, comes from.
type candidateOrigin int

const (
	// pushedNow: the commit tag was free (or a mutable tag to move); this
	// run pushes its own build under it.
	pushedNow candidateOrigin = iota
	// inECRBefore: an earlier run pushed the commit; its image stands (a
	// rebuild is not byte-identical, so it is not pushed) and is what is
	// checked, documented and released.
	inECRBefore
)

// release is what the release steps decide and share.
type release struct {
	plan    ecr.Plan
	commit  string   // the commit tag
	promote []string // release tags to put on the candidate
	inPlace []string // release tags already on it before this run
	origin  candidateOrigin
	digest  string           // the candidate's digest, once known
	pushed  ecr.Pushed       // the candidate as ECR describes it
	files   imagefiles.Files // the candidate's files (for checks and documents)
	src     source           // what the candidate's labels record
	// onStop says what a stop before the release tags leaves undone.
	onStop string
}

func stepReleasePlan() Step {
	return Step{Name: "release plan", Doc: "looks up every tag in ECR and decides, for each, push, move or skip (a version tag on another image in an immutable repository stops here, nothing pushed); " +
		"a commit already in ECR keeps its pushed image, which is read back from ECR and released instead of this rebuild.",
		do: func(ctx context.Context, s *run) error { return s.planRelease(ctx) }}
}

func (s *run) planRelease(ctx context.Context) error {
	if err := removeDocuments(filepath.Join(s.Config.Dir, distDir)); err != nil {
		return err
	}
	reg, img := s.reg, s.img
	s.step("push: checking tags %s in %s", strings.Join(s.tags.Names(), ", "), reg.URI)
	existing, err := reg.Lookup(ctx, s.tags.Names())
	if err != nil {
		return err
	}
	rel := &release{commit: s.tags.Commit(), files: img.Files, src: s.src}
	if rel.plan, err = ecr.Decide(ecr.Tags{Repository: reg.Repository, Immutable: reg.ImmutableTag, Existing: existing}, img.Digest, rel.commit, s.tags.Release()); err != nil {
		return fmt.Errorf("push refused (nothing pushed): %w", err)
	}
	for _, tag := range s.tags.Release() {
		if _, ok := rel.plan.Skip[tag]; ok {
			rel.inPlace = append(rel.inPlace, tag)
		} else {
			rel.promote = append(rel.promote, tag)
		}
	}
	if err := s.keepNewerLatest(ctx, rel); err != nil {
		return err
	}
	rel.onStop = onStop(reg, rel.commit, rel.promote, rel.inPlace)
	s.rel = rel
	digest, ok := rel.plan.Skip[rel.commit]
	if !ok {
		return nil
	}
	rel.origin, rel.digest = inECRBefore, digest
	return s.readCandidate(ctx)
}

// readCandidate describes the commit's image already in ECR and, when it
// is not this build, reads its files and labels back from ECR.
func (s *run) readCandidate(ctx context.Context) error {
	reg, rel := s.reg, s.rel
	if rel.plan.Released {
		s.step("push: commit %s already in ECR as %s; this rebuild (%s) is not pushed", rel.commit, rel.digest, orUnknown(s.img.Digest))
	} else {
		s.step("push: %s already at %s: skipped", reg.Ref(rel.commit), rel.digest)
	}
	var err error
	if rel.pushed, err = reg.Describe(ctx, rel.digest); err != nil {
		return readBackFailed(reg, rel, "release refused: reading back the commit's image in ECR, which this run releases,", err)
	}
	if rel.digest != s.img.Digest { // not this build: read the candidate itself
		c, err := s.pullCandidate(ctx, reg, rel.pushed, s.src)
		if err != nil {
			return fmt.Errorf("release refused: the commit's image %s@%s in ECR is what this run releases, but its files "+
				"could not be read to check it and to make its SBOM and provenance: %w; %s. "+
				"Check that the ECR login may pull (ecr:BatchGetImage, ecr:GetDownloadUrlForLayer), or delete that image "+
				"(aws ecr batch-delete-image --repository-name %s --image-ids imageTag=%s) and run again, so that the run pushes and documents its own build",
				reg.URI, rel.digest, err, rel.onStop, reg.Repository, rel.commit)
		}
		rel.files, rel.src = c.files, c.src
	}
	namePlatform(&rel.pushed, rel.files)
	if missing := missingPlatforms(rel.pushed, s.Config.Platforms); len(missing) > 0 {
		return fmt.Errorf("release refused: the commit's image %s@%s in ECR, which this run releases, has no %s image "+
			"(PLATFORMS=%s; it has %s): an earlier run pushed it with fewer platforms; %s. "+
			"Delete that image (aws ecr batch-delete-image --repository-name %s --image-ids imageTag=%s) and run again, "+
			"so that the run pushes its own build",
			reg.URI, rel.digest, strings.Join(missing, " or "), s.Config.PlatformList(), strings.Join(platformNames(rel.pushed), ", "),
			rel.onStop, reg.Repository, rel.commit)
	}
	return nil
}

// keepNewerLatest leaves latest where it is when its image is newer than
// this release: by version when both carry one, else by history (latest's
// image carries a commit tag of a later commit on this one's line; latest
// following main, an older commit's job re-run).
func (s *run) keepNewerLatest(ctx context.Context, rel *release) error {
	at, ok := rel.plan.Moves["latest"]
	if !ok || !slices.Contains(rel.promote, "latest") {
		return nil
	}
	why, err := s.newerOnLatest(ctx, at)
	if err != nil {
		return fmt.Errorf("push refused (nothing pushed): %w", err)
	}
	if why == "" {
		return nil
	}
	rel.promote = slices.DeleteFunc(rel.promote, func(t string) bool { return t == "latest" })
	delete(rel.plan.Moves, "latest")
	s.step("push: latest stays on %s", why)
	return nil
}

// newerOnLatest says why latest, on the image at, must stay: that image
// has a newer version tag than this release, or a later commit's tag; ""
// when it has neither.
func (s *run) newerOnLatest(ctx context.Context, at string) (string, error) {
	tags, err := s.reg.TagsOf(ctx, at)
	if err != nil {
		return "", fmt.Errorf("reading the tags of latest's image, to keep latest from moving back: %w", err)
	}
	if version, newest := s.tags.Get(imagetag.Version).Name, newestVersion(tags); version != "" && newest != "" {
		if semver.Compare("v"+newest, "v"+version) > 0 {
			return fmt.Sprintf("%s (%s), newer than this release, %s", newest, at, version), nil
		}
		return "", nil
	}
	return s.laterOnLatest(ctx, at, tags)
}

// latestMovedOn judges latest again just before it is moved: another run
// (a later commit's, in another concurrency group) may have moved it while
// this one waited for the scan. True when latest stays where it is now.
func (s *run) latestMovedOn(ctx context.Context, rel *release) (bool, error) {
	now, err := s.reg.Lookup(ctx, []string{"latest"})
	if err != nil {
		return false, fmt.Errorf("reading latest again before moving it: %w", err)
	}
	at, ok := now["latest"]
	switch {
	case !ok || at == rel.plan.Moves["latest"]: // where the plan saw it (or gone)
		return false, nil
	case at == rel.digest:
		s.step("push: latest already points at %s: another run moved it there during this one", at)
		fmt.Fprintln(s.out(), s.reg.Ref("latest")+"@"+at) // a reference to this image, as every one is
		return true, nil
	}
	why, err := s.newerOnLatest(ctx, at)
	if err != nil || why == "" {
		return false, err
	}
	s.step("push: latest stays on %s: another run moved it there during this one", why)
	return true, nil
}

// newestVersion is the highest version tag of tags, "" when none.
func newestVersion(tags []string) string {
	newest := ""
	for _, t := range tags {
		// A commit tag has no dot; an all-digit one would read as vN.
		if strings.Contains(t, ".") && semver.IsValid("v"+t) && (newest == "" || semver.Compare("v"+t, "v"+newest) > 0) {
			newest = t
		}
	}
	return newest
}

// laterOnLatest says why latest stays when its image at carries the commit
// tag of a later commit than this one; "" when none does.
func (s *run) laterOnLatest(ctx context.Context, at string, tags []string) (string, error) {
	for _, t := range tags {
		later, known, err := gitref.Later(ctx, s.Config.Dir, s.ref.Commit, t)
		switch {
		case err != nil:
			return "", fmt.Errorf("is latest's commit %s later than this one: %w", t, err)
		case later:
			return fmt.Sprintf("commit %s (%s), a later commit than this one, %s", t, at, s.ref.Short), nil
		case !known && gitref.IsCommitTag(t):
			s.step("push: latest is on commit %s, which this clone's history lacks (a shallow clone?), so it cannot tell which is later: moving latest", t)
		}
	}
	return "", nil
}

// missingPlatforms are the platforms of want that pushed lacks.
func missingPlatforms(pushed ecr.Pushed, want []dagger.Platform) []string {
	have := platformNames(pushed)
	var missing []string
	for _, p := range want {
		if !slices.Contains(have, string(p)) {
			missing = append(missing, string(p))
		}
	}
	return missing
}

func stepVulncheck() Step {
	return Step{Name: "vulncheck", Doc: "govulncheck (binary mode, GOVULNDB) on each platform's sidecar binary of the image to be released; a finding that affects it stops the push, nothing pushed.",
		skip: skipUnless(func(c config.Config) bool { return c.VulnCheck }, "VULN_CHECK=false"),
		do: func(ctx context.Context, s *run) error {
			if s.rel.origin == inECRBefore {
				return s.vulnCheck(ctx, s.rel.files, platformNames(s.rel.pushed), "the commit's image "+s.reg.URI+"@"+s.rel.digest, s.rel.onStop)
			}
			var plats []string
			for _, p := range s.img.Platforms {
				plats = append(plats, string(p))
			}
			return s.vulnCheck(ctx, s.img.Files, plats, "this build "+orUnknown(s.img.Digest), "nothing pushed")
		}}
}

func stepCandidate() Step {
	return Step{Name: "candidate", Doc: "pushes the image under the commit tag only, unless the commit is in ECR already; prints every reference with its digest on stdout.",
		do: func(ctx context.Context, s *run) error {
			reg, rel := s.reg, s.rel
			if rel.origin == pushedNow {
				var err error
				if rel.digest, err = s.pushCandidate(ctx); err != nil {
					return err
				}
				if rel.pushed, err = reg.Describe(ctx, rel.digest); err != nil {
					return readBackFailed(reg, rel, "reading back the candidate this run pushed,", err)
				}
				namePlatform(&rel.pushed, rel.files)
			}
			fmt.Fprintln(s.out(), reg.Ref(rel.commit)+"@"+rel.digest)
			for _, tag := range rel.inPlace {
				s.step("push: %s already at %s: skipped", reg.Ref(tag), rel.plan.Skip[tag])
				fmt.Fprintln(s.out(), reg.Ref(tag)+"@"+rel.plan.Skip[tag])
			}
			return nil
		}}
}

func stepDocuments() Step {
	return Step{Name: "sbom+provenance", Doc: "writes an SPDX SBOM per platform and the SLSA provenance to dist/ and attaches them to the candidate as OCI referrers, " +
		"before the scan gate, so a candidate the gate stops is documented too; a candidate already in ECR keeps the valid ones it has and gets the missing ones.",
		do: func(ctx context.Context, s *run) error {
			if err := s.attest(ctx); err != nil {
				return fmt.Errorf("%w; %s", err, s.rel.onStop)
			}
			return nil
		}}
}

func stepScanGate() Step {
	return Step{Name: "scan gate", Doc: "when the repository scans, waits up to SCAN_TIMEOUT for ECR's scan of every platform manifest, prints counts by severity, " +
		"and stops on findings at or above SCAN_FAIL_ON, leaving the candidate unreleased.",
		do: func(ctx context.Context, s *run) error { return s.scanGate(ctx) }}
}

func stepReleaseTags() Step {
	return Step{Name: "release tags", Doc: "puts the version tag and latest on the candidate with ECR PutImage (no second push); a tag already on it is skipped.",
		skip: func(s *run) string {
			if len(s.tags.Release()) > 0 {
				return ""
			}
			// Said here too, not only in the preflight: the run's last line.
			return "no version tag or latest to put on the candidate: " +
				s.tags.Get(imagetag.Version).Skipped + ", " + s.tags.Get(imagetag.Latest).Skipped
		},
		do: func(ctx context.Context, s *run) error { return s.releaseTags(ctx) }}
}

// releaseTags moves each release tag this run promotes onto the
// candidate; a failure says which moved and which did not.
func (s *run) releaseTags(ctx context.Context) error {
	reg, rel := s.reg, s.rel
	for i, tag := range rel.promote {
		if tag == "latest" {
			stay, err := s.latestMovedOn(ctx, rel)
			if err != nil {
				return fmt.Errorf("promote latest: %w; %s", err, promoteStopped(reg, rel, i, err))
			}
			if stay {
				continue
			}
		}
		if old, ok := rel.plan.Moves[tag]; ok {
			s.step("push: moving mutable tag %s from %s", tag, old)
		}
		s.step("push: releasing %s as %s", rel.digest, reg.Ref(tag))
		if err := reg.Retag(ctx, rel.digest, tag); err != nil {
			return fmt.Errorf("promote %s: %w; %s", tag, err, promoteStopped(reg, rel, i, err))
		}
		fmt.Fprintln(s.out(), reg.Ref(tag)+"@"+rel.digest)
	}
	if len(rel.promote) == 0 && len(s.tags.Release()) > 0 {
		s.step("push: every tag already points at the commit's image")
	}
	return nil
}

// promoteStopped says what a failure (err) at rel.promote[at] leaves in
// ECR: the tags before it moved, it and those after it not, and how to
// finish.
func promoteStopped(reg *ecr.Registry, rel *release, at int, err error) string {
	// A run again keeps the commit's image (ecr.Decide) and moves only
	// the tags still missing.
	again := "fix the cause and run again: the commit's image stays what is released, and only the tags not yet on it are moved"
	var taken *ecr.TagTakenError
	if errors.As(err, &taken) {
		// A run again would be refused: the tag is on another image for good.
		again = fmt.Sprintf("%s is released as the other run's image %s: if that run built this same version (a re-run, a second trigger), "+
			"nothing is to be done; to release this run's image instead, tag a new version", taken.Tag, reg.URI+"@"+taken.Existing)
	}
	done, left := rel.promote[:at], rel.promote[at:]
	if len(done) == 0 {
		return onStop(reg, rel.commit, left, rel.inPlace) + "; " + again
	}
	var refs []string
	for _, tag := range done {
		refs = append(refs, reg.Ref(tag)+"@"+rel.digest)
	}
	return fmt.Sprintf("%s released (%s), but %s not moved; %s",
		strings.Join(done, " and "), strings.Join(refs, ", "), strings.Join(left, " and "), again)
}

// onStop says what a stop before the release tags leaves undone, by what
// this run was to move.
func onStop(reg *ecr.Registry, commit string, promote, inPlace []string) string {
	switch {
	case len(promote) > 0:
		return fmt.Sprintf("%s stays as an unreleased candidate; %s not moved", reg.Ref(commit), strings.Join(promote, " and "))
	case len(inPlace) > 0:
		return fmt.Sprintf("%s already pointed at the commit's image %s before this run; no tag was moved", strings.Join(inPlace, " and "), reg.Ref(commit))
	default:
		return fmt.Sprintf("%s stays in ECR; this run had no version tag or latest to move (no v* tag on HEAD, PUSH_LATEST=false)", reg.Ref(commit))
	}
}

// readBackFailed says whose read-back (what) of its manifest failed with
// err, what that leaves in ECR, and what to check.
func readBackFailed(reg *ecr.Registry, rel *release, what string, err error) error {
	return fmt.Errorf("%s %s@%s, failed (ecr:BatchGetImage of its manifest, which names its platforms): %w; %s. "+
		"Check that the AWS credentials may call ecr:BatchGetImage on repository %s, then run again: the commit's image stays what is released",
		what, reg.Ref(rel.commit), rel.digest, err, rel.onStop, reg.Repository)
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

// pushCandidate publishes this build under the commit tag and returns
// the digest the registry reports.
func (s *run) pushCandidate(ctx context.Context) (string, error) {
	reg, img, tag := s.reg, s.img, s.rel.commit
	secretFiles, err := secrets.NewFiles()
	if err != nil {
		return "", err
	}
	defer secretFiles.Close()
	pw, err := secretFiles.Secret(s.client, "ecr-password", reg.Password())
	if err != nil {
		return "", err
	}
	if moved := s.rel.plan.Moves[tag]; moved != "" {
		s.step("push: moving mutable tag %s from %s", tag, moved)
	}
	s.step("push: publishing the candidate %s (%d platforms)", reg.Ref(tag), len(img.Variants))
	ref, err := s.client.Container().WithRegistryAuth(reg.Host, reg.Username, pw).Publish(ctx, reg.Ref(tag), dagger.ContainerPublishOpts{
		PlatformVariants: img.Variants, ForcedCompression: dagger.ImageLayerCompressionGzip,
	})
	if err != nil {
		return "", s.publishFailed(ctx, tag, err)
	}
	_, digest, ok := strings.Cut(ref, "@")
	if !ok {
		return "", fmt.Errorf("publish %s: the engine returned %q, not a reference with a digest", reg.Ref(tag), ref)
	}
	s.step("push: pushed %s", ref)
	if digest != img.Digest {
		s.step("push: note: registry digest %s differs from the measured export %s", digest, img.Digest)
	}
	return digest, nil
}

// publishFailed is the candidate's failed publish (err), told from a race:
// another run of this commit pushed it under the tag since the release
// plan, and the repository's immutable tag refused this run's push.
func (s *run) publishFailed(ctx context.Context, tag string, err error) error {
	reg := s.reg
	if now, lerr := reg.Lookup(ctx, []string{tag}); lerr == nil && now[tag] != "" && reg.ImmutableTag(tag) {
		return fmt.Errorf("publish %s: another run pushed this commit meanwhile, as %s, and the tag is immutable: %w; "+
			"this run's build is not pushed and no tag moved; run again: that image is then what is released (read back from ECR, checked and documented)",
			reg.Ref(tag), now[tag], err)
	}
	return fmt.Errorf("publish %s (nothing pushed): %w", reg.Ref(tag), err)
}

// scanGate waits for ECR's scan of every platform manifest of the
// candidate (an index itself is not scanned) and fails on findings at or
// above SCAN_FAIL_ON, saying what that holds back (release.onStop). A
// repository that does not scan skips the gate with a warning; a scan
// that fails or times out is an error, not a pass. A candidate pushed by
// an earlier run has no scan coming (see ecr.WaitOptions.JustPushed).
func (s *run) scanGate(ctx context.Context) error {
	reg, pushed, onStop := s.reg, s.rel.pushed, s.rel.onStop
	setting, err := reg.ScanSetting(ctx)
	if err != nil {
		return fmt.Errorf("scan gate: %w; %s", err, onStop)
	}
	if !setting.Scans {
		s.step("push: WARNING: ECR repository %q does not scan pushed images (%s): no scan gate; "+
			"turn on scan on push (basic) or enhanced scanning to gate releases on it", reg.Repository, setting.How)
		return nil
	}
	s.step("push: waiting for the %s ECR scan (%s) of %d platform manifest(s), up to SCAN_TIMEOUT=%s",
		scanKind(setting.Type), setting.How, len(pushed.Platforms), s.Config.ScanTimeout)
	scans, err := reg.WaitForScans(ctx, pushed.Platforms, ecr.WaitOptions{
		Timeout: s.Config.ScanTimeout, Poll: s.scanPoll, Progress: s.scanProgress,
		Report:     func(line string) { s.step("push: %s", line) },
		JustPushed: s.rel.origin == pushedNow, ScanType: setting.Type,
	})
	if err != nil {
		return fmt.Errorf("scan gate: %w; %s", err, onStop)
	}
	var blocking []string
	for i, m := range pushed.Platforms {
		line := ecr.CountsLine(scans[i].Counts)
		if t := scans[i].Times(); t != "" {
			line += " (" + t + ")"
		}
		s.step("push: ECR scan of %s (%s): %s", m.Platform, m.Digest, line)
		blocking = append(blocking, blockingFindings(m.Platform, scans[i], s.Config.ScanFailOn)...)
	}
	if s.Config.ScanFailOn == "" {
		s.step("push: SCAN_FAIL_ON=none: scan results do not gate the release")
		return nil
	}
	if len(blocking) > 0 {
		return fmt.Errorf("release stopped: the ECR scan found vulnerabilities at or above SCAN_FAIL_ON=%s:\n  - %s\n%s",
			s.Config.ScanFailOn, strings.Join(blocking, "\n  - "), onStop)
	}
	s.step("push: no ECR findings at or above %s", s.Config.ScanFailOn)
	return nil
}

// scanKind names an ECR scan type for the log.
func scanKind(scanType string) string {
	switch scanType {
	case "BASIC":
		return "basic"
	case "ENHANCED":
		return "enhanced (Inspector)"
	default: // ecr:GetRegistryScanningConfiguration did not answer
		return "(scan type unknown)"
	}
}

// blockingFindings lists one platform's findings at or above failOn:
// the first ten by name, then how many more the counts hold
// (findingSeverityCounts rule: the named findings are capped).
func blockingFindings(platform string, scan ecr.Scan, failOn string) []string {
	total := 0
	for _, sev := range ecr.Severities() {
		if ecr.AtOrAbove(sev, failOn) {
			total += scan.Counts[sev]
		}
	}
	var blocking []string
	for _, f := range scan.Findings {
		if len(blocking) < 10 && ecr.AtOrAbove(f.Severity, failOn) {
			blocking = append(blocking, platform+": "+f.String())
		}
	}
	named := len(blocking)
	switch {
	case named == 0: // counts without named findings (not expected, but counts rule)
		for _, sev := range ecr.Severities() {
			if c := scan.Counts[sev]; c > 0 && ecr.AtOrAbove(sev, failOn) {
				blocking = append(blocking, fmt.Sprintf("%s: %d %s", platform, c, sev))
			}
		}
	case total > named:
		blocking = append(blocking, fmt.Sprintf("%s: and %d more", platform, total-named))
	}
	return blocking
}
