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

// Redactor returns a function that replaces every occurrence of secret
// in a string, for container output shown in errors.
func Redactor(secret string) func(string) string {
	return func(s string) string { return strings.ReplaceAll(s, secret, "[redacted]") }
}
