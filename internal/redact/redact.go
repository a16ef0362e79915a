// Package redact makes addresses fit to print: the sidecar's and the
// pipeline's messages quote the addresses they were given, never the
// credentials in them.
package redact

import "strings"

// Userinfo returns an address fit to print: credentials before the host
// (scheme://user:password@host/…, user:password@registry/image, or a
// token as the user name) replaced by xxxxx. With a scheme, only the part
// before the first / can hold them; an image digest (@sha256:) is kept.
// A malformed value is masked up to its last @, to be safe.
func Userinfo(addr string) string {
	body, digest := addr, ""
	if i := strings.LastIndex(addr, "@sha256:"); i >= 0 {
		body, digest = addr[:i], addr[i:]
	}
	prefix, rest := "", body
	if i := strings.Index(body, "://"); i >= 0 {
		prefix, rest = body[:i+3], body[i+3:]
	}
	host := rest
	if i := strings.IndexByte(rest, '/'); i >= 0 && prefix != "" {
		host = rest[:i]
	}
	at := strings.LastIndexByte(host, '@')
	if at < 0 {
		return addr
	}
	return prefix + "xxxxx" + rest[at:] + digest
}
