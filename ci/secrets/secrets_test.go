package secrets

import (
	"os"
	"strings"
	"testing"
)

func TestRandomHex(t *testing.T) {
	t.Parallel()
	a, b := RandomHex(24), RandomHex(24)
	if len(a) != 48 || a == b || strings.Trim(a, "0123456789abcdef") != "" {
		t.Errorf("RandomHex(24) = %q, %q", a, b)
	}
}

func TestRedactor(t *testing.T) {
	t.Parallel()
	scrub := Redactor("s3cret")
	if got := scrub("user=root password=s3cret; again s3cret"); got != "user=root password=[redacted]; again [redacted]" {
		t.Errorf("scrubbed to %q", got)
	}
}

func TestFilesArePrivateAndRemoved(t *testing.T) {
	t.Parallel()
	f, err := NewFiles()
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(f.dir)
	if err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Errorf("secret directory %s: %v, mode %v; want private", f.dir, err, st.Mode())
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.dir); !os.IsNotExist(err) {
		t.Errorf("secret directory left behind: %v", err)
	}
}
