package ci

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/imagefiles"
	"github.com/example/sidecar/ci/tmpdir"
	"github.com/example/sidecar/ci/vulncheck"
)

// Paths in the image that the release reads back (see Dockerfile).
const (
	binaryPath = "/usr/local/bin/sidecar"
	apkDBPath  = "/lib/apk/db/installed"
	// On a usr-merged base (Wolfi, Chainguard) /lib is a symbolic link to
	// usr/lib, which imagefiles does not follow.
	apkDBUsrPath = "/usr/lib/apk/db/installed"
	// os-release(5): /etc/os-release, else /usr/lib/os-release (where the
	// /etc one is a symbolic link to it, which imagefiles does not follow).
	osReleasePath    = "/etc/os-release"
	osReleaseLibPath = "/usr/lib/os-release"
)

// apkDB is the image's apk database, nil when it has none.
func apkDB(files map[string][]byte) []byte { return firstFile(files, apkDBPath, apkDBUsrPath) }

// osRelease is the image's os-release file, nil when it has none.
func osRelease(files map[string][]byte) []byte {
	return firstFile(files, osReleasePath, osReleaseLibPath)
}

// firstFile is the first of paths the image has, nil when it has none.
func firstFile(files map[string][]byte, paths ...string) []byte {
	for _, p := range paths {
		if b, ok := files[p]; ok {
			return b
		}
	}
	return nil
}

// scanLimit bounds one govulncheck run (seconds with a reachable database).
const scanLimit = 5 * time.Minute

func imagePaths() []string {
	return []string{binaryPath, apkDBPath, apkDBUsrPath, osReleasePath, osReleaseLibPath}
}

// probeVulnDB checks GOVULNDB answers before anything is built, so an
// unreachable database fails in seconds.
func (r *Runner) probeVulnDB(ctx context.Context) error {
	if !r.Config.VulnCheck {
		return nil
	}
	db := config.Shown("GOVULNDB", r.Config.VulnDB) // a mirror's password is never printed
	r.step("push: checking the Go vulnerability database GOVULNDB=%s", db)
	modified, err := vulncheck.Probe(ctx, r.Config.VulnDB)
	err = config.ShownErr("GOVULNDB", r.Config.VulnDB, err) // it may quote a file:// URL's path
	if err != nil {
		if strings.HasPrefix(r.Config.VulnDB, "file:") {
			// A local copy that is not there is the setting's fault, not
			// the network's: exit 2, like any other bad value.
			return &config.Error{Problems: []string{fmt.Sprintf("GOVULNDB=%q: %v; "+
				"want a file:// URL of a directory holding a Go vulnerability database (index/modules.json), or set VULN_CHECK=false to skip the check", db, err)}}
		}
		return fmt.Errorf("GOVULNDB=%s: the Go vulnerability database is not usable (nothing was built or pushed): %w; "+
			"point GOVULNDB at a reachable mirror or a file:// copy, or set VULN_CHECK=false to skip the check", db, err)
	}
	if !modified.IsZero() {
		age := time.Since(modified)
		days := int(age.Hours() / 24)
		r.step("push: the vulnerability database was last modified %s (%d days ago)", modified.UTC().Format(time.DateOnly), days)
		if age > vulncheck.StaleAfter {
			r.step("push: note: the vulnerability database is %d days old: vulnerabilities published since are not checked; refresh GOVULNDB's copy or mirror", days)
		}
	}
	return nil
}

// vulnCheck runs govulncheck on each platform's sidecar binary in files,
// read from the image that is released (image names it: this build, or
// the commit's candidate already in ECR), prints the findings, and fails
// when any affects the binary. held says what that failure leaves undone
// ("nothing pushed" before the candidate is pushed).
func (r *Runner) vulnCheck(ctx context.Context, files imagefiles.Files, platforms []string, image, held string) error {
	dir, err := tmpdir.New(vulnDirPrefix)
	if err != nil {
		return err
	}
	defer dir.Remove()
	tmp := dir.Path
	db := config.Shown("GOVULNDB", r.Config.VulnDB)
	var affected []string
	for _, p := range platforms {
		bin, ok := files[p][binaryPath]
		if !ok {
			return fmt.Errorf("vulnerability check: the %s image of %s has no %s (%s)", p, image, binaryPath, held)
		}
		path := filepath.Join(tmp, strings.ReplaceAll(p, "/", "-"))
		if err := os.WriteFile(path, bin, 0o600); err != nil {
			return err
		}
		r.step("push: govulncheck -mode binary on the %s sidecar binary of %s (GOVULNDB=%s)", p, image, db)
		if stripped, err := vulncheck.Stripped(path); err == nil && stripped {
			// The Dockerfile keeps the symbol table; a binary built with -s
			// (a changed Dockerfile) turns the check into a module-level one.
			r.step("push: note: the %s binary is stripped (-ldflags -s): govulncheck cannot see which functions are linked in, so every known vulnerability of its Go version and modules counts; build without -s (as the Dockerfile does) for symbol-level findings", p)
		}
		// The database answered the probe; a stall mid-scan must still end.
		scanCtx, cancel := context.WithTimeout(ctx, scanLimit)
		fs, err := vulncheck.Scan(scanCtx, r.Config.VulnDB, path)
		err = config.ShownErr("GOVULNDB", r.Config.VulnDB, err)
		cancel()
		if err != nil {
			return fmt.Errorf("vulnerability check of the %s binary with GOVULNDB=%s did not complete (%s): %w", p, db, held, err)
		}
		fmt.Fprintln(r.log())
		vulncheck.Table(r.log(), p, fs)
		fmt.Fprintln(r.log())
		for _, f := range fs {
			if f.Affects() {
				affected = append(affected, fmt.Sprintf("%s: %s in %s %s (fixed in %s)", p, f.OSV, f.Module, f.Found, orNone(f.Fixed)))
			}
		}
	}
	if len(affected) > 0 {
		return fmt.Errorf("vulnerability check failed (%s): govulncheck reports vulnerabilities affecting the sidecar binary of %s:\n  - %s\n"+
			"rebuild with the fixed Go toolchain or module versions, or set VULN_CHECK=false to push anyway", held, image, strings.Join(affected, "\n  - "))
	}
	r.step("push: no known vulnerabilities affect the sidecar binary of %s", image)
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "no release yet"
	}
	return s
}
