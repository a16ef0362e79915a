//go:build !unix

package testkit

import "testing"

// RefusedPort returns a port on 127.0.0.1 where connections are refused.
// Here it is a FreePort: a parallel test's listener may take it.
func RefusedPort(t testing.TB) int {
	t.Helper()
	return FreePort(t)
}
