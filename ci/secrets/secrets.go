// Package secrets hands secrets (the smoke test's MySQL password, the
// ECR login token) to the Dagger engine by reference only, and scrubs
// them from anything the pipeline prints.
package secrets

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"dagger.io/dagger"

	"github.com/example/sidecar/ci/tmpdir"
	"github.com/example/sidecar/internal/redact"
)

// Files hands secrets to the engine by reference: each value goes into a
// private file that the session reads through the file:// secret
// provider, so it never travels in a GraphQL query (as setSecret's
// plaintext argument would) and never reaches the logs.
type Files struct {
	dir *tmpdir.Dir
}

// DirPrefix names the secrets' directories in os.TempDir(): a run that
// ends without Close leaves one, which the next run's tmpdir.Sweep removes.
const DirPrefix = "sidecar-ci-secrets-"

// NewFiles makes the private directory the secrets go into; Close
// removes it.
func NewFiles() (*Files, error) {
	dir, err := tmpdir.New(DirPrefix)
	if err != nil {
		return nil, fmt.Errorf("secret directory: %w", err)
	}
	return &Files{dir: dir}, nil
}

// Secret stores value under name and returns it as a Dagger secret.
func (s *Files) Secret(client *dagger.Client, name, value string) (*dagger.Secret, error) {
	path := filepath.Join(s.dir.Path, name)
	if err := os.WriteFile(path, []byte(value), 0o600); err != nil {
		return nil, fmt.Errorf("write secret %s: %w", name, err)
	}
	return client.Secret("file://" + path), nil
}

// Close removes the secrets' files.
func (s *Files) Close() error { return s.dir.Remove() }

// RandomHex returns n random bytes as hex (passwords, cache busters).
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// Scrubber masks the values of the secrets a run handed the engine in
// what the run prints: the engine's errors and a container's output may
// quote them. The zero value masks nothing.
type Scrubber struct{ values []string }

// Add has s mask value too.
func (s *Scrubber) Add(value string) {
	if value != "" { // "" would mask between every character
		s.values = append(s.values, value)
	}
}

// String is text with every value masked as the pipeline masks a
// credential (redact.Mask).
func (s *Scrubber) String(text string) string {
	for _, v := range s.values {
		text = strings.ReplaceAll(text, v, redact.Mask)
	}
	return text
}

// Err is err with its text masked; errors.Is and As still see err.
func (s *Scrubber) Err(err error) error {
	if err == nil {
		return nil
	}
	text := s.String(err.Error())
	if text == err.Error() {
		return err
	}
	return redact.MaskedErr(err, text)
}
