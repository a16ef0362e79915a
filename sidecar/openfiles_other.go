//go:build !unix

package main

// openFilesLimit has no RLIMIT_NOFILE to read here: the sidecar runs on
// Linux, and elsewhere the limit check is skipped.
func openFilesLimit() (uint64, bool) { return 0, false }
