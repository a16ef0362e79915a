package secrets

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/example/sidecar/ci/tmpdir"
	"github.com/example/sidecar/internal/redact"
)

// leaveEnv makes the test binary a run that makes its secrets' directory
// and exits without Close, as a run stopped by mage -t or a kill does.
const leaveEnv = "SECRETS_TEST_LEAVE"

func TestMain(m *testing.M) {
	if os.Getenv(leaveEnv) != "" {
		f, err := NewFiles()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(f.dir.Path)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The directory of a run that ended without Close (the ECR token in it)
// is the next run's to remove (tmpdir.Sweep); a live run's is not.
func TestFilesLeftByAnEndedRunAreSwept(t *testing.T) {
	// A temporary directory of its own, for this process and the helper:
	// every other run on the machine (the pipeline tests' among them)
	// sweeps the shared one, and could take the ended run's directory,
	// or be removing it, while this Sweep looks.
	t.Setenv("TMPDIR", t.TempDir())
	live, err := NewFiles()
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), leaveEnv+"=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	left := strings.TrimSpace(string(out))
	t.Cleanup(func() { os.RemoveAll(left) })
	removed, err := tmpdir.Sweep("", DirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !slices.Contains(removed, left) || !os.IsNotExist(err) {
		t.Errorf("Sweep removed %v; %s: %v, want it removed", removed, left, err)
	}
	if _, err := os.Stat(live.dir.Path); err != nil || slices.Contains(removed, live.dir.Path) {
		t.Errorf("Sweep removed the live run's %s: %v", live.dir.Path, err)
	}
}

func TestRandomHex(t *testing.T) {
	t.Parallel()
	a, b := RandomHex(24), RandomHex(24)
	if len(a) != 48 || a == b || strings.Trim(a, "0123456789abcdef") != "" {
		t.Errorf("RandomHex(24) = %q, %q", a, b)
	}
}

// Every value added is masked wherever it appears, in a string or an
// error's text, and the error is still what it wraps.
func TestScrubber(t *testing.T) {
	t.Parallel()
	var s Scrubber
	s.Add("")
	if got := s.String("nothing to mask"); got != "nothing to mask" {
		t.Errorf("the zero Scrubber and an empty value made %q", got)
	}
	s.Add("s3cret")
	s.Add("t0ken")
	want := "user=root password=" + redact.Mask + "; again " + redact.Mask + ", token " + redact.Mask
	if got := s.String("user=root password=s3cret; again s3cret, token t0ken"); got != want {
		t.Errorf("masked to %q, want %q", got, want)
	}
	err := s.Err(fmt.Errorf("publish: %w", &os.PathError{Op: "open", Path: "/run/s3cret", Err: os.ErrNotExist}))
	var pe *os.PathError
	if err.Error() != "publish: open /run/"+redact.Mask+": file does not exist" || !errors.Is(err, os.ErrNotExist) || !errors.As(err, &pe) {
		t.Errorf("Err made %q (%T), want the text masked and the error kept", err, err)
	}
	if plain := errors.New("no secret"); s.Err(plain) != plain || s.Err(nil) != nil {
		t.Error("Err changed an error that quotes no secret, or nil")
	}
}

func TestFilesArePrivateAndRemoved(t *testing.T) {
	t.Parallel()
	f, err := NewFiles()
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(f.dir.Path)
	if err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Errorf("secret directory %s: %v, mode %v; want private", f.dir.Path, err, st.Mode())
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.dir.Path); !os.IsNotExist(err) {
		t.Errorf("secret directory left behind: %v", err)
	}
}
