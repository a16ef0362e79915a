// Package redact makes addresses fit to print or publish: the sidecar's
// and the pipeline's messages and documents quote the addresses they were
// given, never the credentials in them.
package redact

import "strings"

// Userinfo returns an address fit to print: credentials before the host
// (scheme://user:password@host/…, user:password@registry/image, or a
// token as the user name) replaced by xxxxx. With a scheme, only the part
// before the first / can hold them (but see userinfoEnd); an image digest
// (@sha256:) is kept.
func Userinfo(addr string) string {
	body, digest := addr, ""
	if i := strings.LastIndex(addr, "@sha256:"); i >= 0 {
		body, digest = addr[:i], addr[i:]
	}
	prefix, rest := "", body
	if i := strings.Index(body, "://"); i >= 0 {
		prefix, rest = body[:i+3], body[i+3:]
	}
	at := userinfoEnd(rest, prefix != "")
	if at < 0 {
		return addr
	}
	return prefix + "xxxxx" + rest[at:] + digest
}

// Query is Userinfo with a query or fragment masked too (either may carry
// a token): for messages, which keep the address's shape, where URL drops
// the parts.
func Query(addr string) string {
	shown := Userinfo(addr)
	if i := strings.IndexAny(shown, "?#"); i >= 0 {
		shown = shown[:i+1] + "xxxxx"
	}
	return shown
}

// URL returns a URL fit to publish (a provenance, an image label): the
// user info dropped, not masked, and a query or fragment too, since
// either may carry a token. A value without a scheme (a git scp-like
// user@host:path) names a user, not a secret, and is kept.
func URL(u string) string {
	i := strings.Index(u, "://")
	if i < 0 {
		return u
	}
	prefix, rest := u[:i+3], u[i+3:]
	if at := userinfoEnd(rest, true); at >= 0 {
		rest = rest[at+1:] // before cutting the query: a password may hold ? or #
	}
	if q := strings.IndexAny(rest, "?#"); q >= 0 {
		rest = rest[:q]
	}
	return prefix + rest
}

// userinfoEnd is the index of the @ that ends the credentials in what
// follows an address's scheme (the host's last @: a password may hold
// one), or -1. With a scheme only the part before the first / can hold
// them, unless that part holds a : or an @ and an @ follows the /: a
// password with a / in it (base64 has them) cuts the host short, and
// masking a path is better than printing a password.
func userinfoEnd(rest string, scheme bool) int {
	slash := strings.IndexByte(rest, '/')
	if !scheme || slash < 0 {
		return strings.LastIndexByte(rest, '@')
	}
	host, path := rest[:slash], rest[slash:]
	if q := strings.IndexAny(path, "?#"); q >= 0 {
		path = path[:q] // a query may hold an @ of its own
	}
	if at := strings.LastIndexByte(path, '@'); at >= 0 && strings.ContainsAny(host, ":@") {
		return slash + at
	}
	return strings.LastIndexByte(host, '@')
}
