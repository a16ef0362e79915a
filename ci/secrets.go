package ci

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"dagger.io/dagger"
)

// Secrets (the smoke test's MySQL password, the ECR login token) reach the
// engine only by reference and are scrubbed from anything the pipeline
// prints.

// secretFile hands a secret to the engine by reference: the value goes
// into a private file that the session reads through the file:// secret
// provider, so it never travels in a GraphQL query (as setSecret's
// plaintext argument would) and never reaches the logs.
type secretFile struct {
	dir string
}

func newSecretFile() (*secretFile, error) {
	dir, err := os.MkdirTemp("", "sidecar-ci-secrets-")
	if err != nil {
		return nil, fmt.Errorf("secret directory: %w", err)
	}
	return &secretFile{dir: dir}, nil
}

// secret stores value under name and returns it as a Dagger secret.
func (s *secretFile) secret(client *dagger.Client, name, value string) (*dagger.Secret, error) {
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, []byte(value), 0o600); err != nil {
		return nil, fmt.Errorf("write secret %s: %w", name, err)
	}
	return client.Secret("file://" + path), nil
}

func (s *secretFile) Close() error { return os.RemoveAll(s.dir) }

// randomHex returns n random bytes as hex (passwords, cache busters).
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// redactor returns a function that replaces every occurrence of secret in
// a string, for container output shown in errors.
func redactor(secret string) func(string) string {
	return func(s string) string { return strings.ReplaceAll(s, secret, "[redacted]") }
}
