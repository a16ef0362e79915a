// Package redact makes addresses fit to print or publish: the sidecar's
// and the pipeline's messages and documents quote the addresses they were
// given, never the credentials in them.
//
// A credential is known by its key (Keyed): password=, pwd:, a
// --password=, --password or -p option, a key's name ending a word
// (DB_PASSWORD:, db.password:, db-password-old:). A key and its secret
// apart by a blank alone are masked after a long option (--password
// s3cr3t, docker login's --password TOKEN), and after a key's name where
// the secret holds a digit, as no English word does (password hunter2,
// DB_PASSWORD 4711): in prose ("wrong password for user app") a blank
// ends no key, mysql's -p and a blank prompts and takes the next word as
// the database, and docker run's -p 8080:80 is a port.
package redact

import (
	"slices"
	"strings"
)

// Mask is what stands in for a credential.
const Mask = "xxxxx"

// MaskedErr is err said as text, its text with credentials masked:
// errors.Is and As still see err. (ci's config.ShownErr, secrets.Scrubber.)
func MaskedErr(err error, text string) error { return maskedErr{err: err, text: text} }

type maskedErr struct {
	err  error
	text string
}

func (e maskedErr) Error() string { return e.text }
func (e maskedErr) Unwrap() error { return e.err }

// Userinfo returns an address fit to print: credentials before the host
// (scheme://user:password@host/…, user:password@registry/image, or a
// token as the user name) replaced by xxxxx; an image digest (@sha256:) at
// the end is kept. With a scheme, where the credentials end is not always clear (see
// userinfoEnd): then everything after the scheme is masked.
func Userinfo(addr string) string {
	body, digest := addr, ""
	// A digest ends the address and holds no @: one followed by an @ is a
	// password's (u:pw@sha256:x@host), to be masked.
	if i := strings.LastIndex(addr, "@sha256:"); i >= 0 && !strings.Contains(addr[i+1:], "@") {
		body, digest = addr[:i], addr[i:]
	}
	prefix, rest := "", body
	if HasScheme(body) {
		i := strings.Index(body, "://")
		prefix, rest = body[:i+3], body[i+3:]
	}
	at := userinfoEnd(rest, prefix != "")
	switch {
	case at < 0:
		return addr
	case at == len(rest):
		return prefix + Mask + digest
	}
	return prefix + Mask + rest[at:] + digest
}

// Query is Userinfo with a query or fragment masked too (either may carry
// a token): for messages, which keep the address's shape, where URL drops
// the parts.
func Query(addr string) string {
	shown := Userinfo(addr)
	if i := strings.IndexAny(shown, "?#"); i >= 0 {
		shown = shown[:i+1] + Mask
	}
	return shown
}

// URL returns a URL fit to publish (a provenance, an image label): the
// user info dropped, not masked, and a query or fragment too, since
// either may carry a token. A value without a scheme (a git scp-like
// user@host:path) names a user, not a secret, and is kept. When where the
// credentials end is not clear, all but the scheme is dropped (xxxxx).
func URL(u string) string {
	i := strings.Index(u, "://")
	switch {
	case i < 0:
		return u
	case !HasScheme(u):
		return Mask // what precedes :// is no scheme: it may be a password's
	}
	prefix, rest := u[:i+3], u[i+3:]
	switch at := userinfoEnd(rest, true); {
	case at == len(rest):
		return prefix + Mask
	case at >= 0:
		rest = rest[at+1:] // before cutting the query: a password may hold ? or #
	}
	if q := strings.IndexAny(rest, "?#"); q >= 0 {
		rest = rest[:q]
	}
	return prefix + rest
}

// HasScheme reports whether v starts scheme:// with a scheme as RFC 3986
// spells one (a letter, then letters, digits, +, - or .). Otherwise what
// precedes :// may be a password's start (user:pw,://x@db), not a scheme
// to print.
func HasScheme(v string) bool {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	scheme, _, ok := strings.Cut(strings.ToLower(v), "://")
	return ok && scheme != "" && strings.ContainsRune(letters, rune(scheme[0])) &&
		strings.Trim(scheme, letters+"0123456789+.-") == ""
}

// userinfoEnd is the index of the @ that ends the credentials in what
// follows an address's scheme, -1 for none, or len(rest) when it cannot
// tell. The host part's last @ ends them (a password may hold one); but a
// / in a password or token (base64 has them) cuts the host part short, so
// an @ past the first / (and before a query) ends them too. A ? or # before
// the @ is a password's when what precedes it is not a host and port;
// else it may start a query as well: it cannot tell then. A path's @ is
// masked with them: masking too much is better than printing a secret.
func userinfoEnd(rest string, scheme bool) int {
	if !scheme {
		return strings.LastIndexByte(rest, '@')
	}
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		slash = len(rest)
	}
	host, after := rest[:slash], rest[slash:]
	path := after
	if q := strings.IndexAny(path, "?#"); q >= 0 {
		path = path[:q]
	}
	at := strings.LastIndexByte(host, '@')
	if p := strings.LastIndexByte(path, '@'); p >= 0 {
		at = slash + p
		if strings.IndexByte(after[len(path):], '@') >= 0 {
			return len(rest) // user:pass/…@…?…@host
		}
	} else if strings.IndexByte(after, '@') >= 0 && !hostPort(host) {
		return len(rest) // user:pass/…?…@host
	}
	if q := strings.IndexAny(rest, "?#"); at >= 0 && q >= 0 && q < at {
		if pre := rest[:q]; hostPort(pre) || strings.ContainsRune(pre, '@') {
			return len(rest) // host?…@…: a query's @, or a password's ?
		}
	}
	return at
}

// hostPort reports whether h is a host with at most a numeric port: not
// user:password.
func hostPort(h string) bool {
	if strings.HasPrefix(h, "[") { // an IPv6 literal
		i := strings.IndexByte(h, ']')
		if i < 0 {
			return false
		}
		h = "x" + h[i+1:]
	}
	_, port, found := strings.Cut(h, ":")
	return !found || port != "" && strings.Trim(port, "0123456789") == ""
}

// Keyed masks v from its first query (a ? without a scheme: an IAM
// token, host:port/db?password=), credential's key= (a connection
// string's Pwd=, libpq's password =), key: (YAML's password: x, JSON's
// "password":"x") or mysql's -p (-pS3CRET) to the end, which a password
// may run to: for values where no host, port or list of them has either;
// a long option's value after a blank too (--password s3cr3t), and a
// word with a digit after a key's name and a blank (password hunter2:
// proseValue). A key's :
// is a name's (tokens:3306, token-service:1.2) where the word before it
// reads as one (see nameColon): password:3306 is a password's. After
// such a name a word that is no tag (token-service:hunter2) is masked
// up to an error's ": " (wordEnd), the rest of the line read on.
func Keyed(v string) string {
	var b strings.Builder
	at := 0
	for _, s := range keyedSpans(v) {
		b.WriteString(v[at:s[0]])
		b.WriteString(Mask)
		at = s[1]
	}
	b.WriteString(v[at:])
	return b.String()
}

// keyedSpans are the parts of v Keyed masks, in order: none, or the
// first from where it cuts v (KeyedAt) to its end or to the end of a
// word after a name's : (wordEnd), then those of what follows the word,
// read on from the word: a key in the word (token-service:password=a b)
// masks to the end after all.
func keyedSpans(v string) [][2]int {
	cut, end := keyedSpan(v)
	if cut == 0 {
		return nil
	}
	if end < len(v) {
		rest := keyedSpans(v[cut:])
		if len(rest) == 0 || rest[0][0] >= end-cut {
			spans := [][2]int{{cut, end}}
			for _, s := range rest {
				spans = append(spans, [2]int{cut + s[0], cut + s[1]})
			}
			return spans
		}
	}
	return [][2]int{{cut, len(v)}}
}

// KeyedWith is Keyed(mask(v)) for a mask that hides credentials up to
// an @ (Userinfo) and may reshape the rest (escape quotes), with the
// credential after a key cut away first, so mask neither shows it nor
// hides its key. In password: pw@rest or app:pwd=x@y@db the @ ends
// credentials that may start before the key, so it is kept for mask. A ?
// is left to mask: in user:pw?x@host it is the password's.
func KeyedWith(v string, mask func(string) string) string {
	noQuery := strings.ReplaceAll(v, "?", "#") // same length; # starts no key
	if cut := KeyedAt(noQuery); cut > 0 {
		rest := Mask
		if strings.Contains(v[cut:], "@") {
			rest += "@"
		}
		v = v[:cut] + rest
	}
	return Keyed(mask(v))
}

// KeyedAt is where Keyed cuts v, or 0 if it shows v whole.
func KeyedAt(v string) int {
	cut, _ := keyedSpan(v)
	return cut
}

// keyedSpan is where Keyed cuts v (0 for nowhere) and where its mask
// ends: len(v), or the end of a word after a name's : (wordEnd).
func keyedSpan(v string) (cut, end int) {
	cut, end = strings.IndexByte(v, '?')+1, len(v)
	// ASCII only, byte for byte: the keys are ASCII, and strings.ToLower
	// changes the length of some letters (the Kelvin sign, İ, Ⱥ), which
	// would move the cut off the key's = into the secret, or out of v.
	b := []byte(v)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	lower := string(b)
	earlier := func(at, to int) {
		if cut == 0 || at < cut {
			cut, end = at, to
		} else if at == cut {
			end = max(end, to)
		}
	}
	for _, key := range credentialKeys() {
		for i := strings.Index(lower, key); i >= 0; {
			rest := strings.TrimLeft(lower[i+len(key):], "abcdefghijklmnopqrstuvwxyz0123456789_-") // password, secret_key, password_2
			if eq := strings.TrimLeft(trimQuote(rest), " \t"); strings.HasPrefix(eq, "=") {
				earlier(len(v)-len(eq)+1, len(v))
				break
			}
			if colon := strings.TrimLeft(trimQuote(rest), " \t"); strings.HasPrefix(colon, ":") &&
				!nameColon(v, len(v)-len(colon)) {
				earlier(len(v)-len(colon)+1, wordEnd(v, len(v)-len(colon)))
				break
			}
			next := strings.Index(lower[i+len(key):], key)
			if next < 0 {
				break
			}
			i += len(key) + next
		}
	}
	// mysql's -pPASSWORD: a word that starts -p with more after it. Case
	// counts: -P is the port.
	for i := 0; i+2 < len(v); i++ {
		if v[i] == '-' && v[i+1] == 'p' && (i == 0 || blank(v[i-1])) && !blank(v[i+2]) {
			earlier(i+2, len(v))
			break
		}
	}
	if at := longOptionValue(v); at > 0 {
		earlier(at, len(v))
	}
	if at := proseValue(v); at > 0 {
		earlier(at, len(v))
	}
	return cut, end
}

// wordEnd is where the secret after the : at v[colon] ends: len(v), or,
// after a name (hostBefore: token-service:hunter2), before the ": " that
// ends its word and joins an error to its cause (token-service:hunter2:
// not found). A blank alone ends nothing: a properties file's value may
// hold blanks (token-service:correct horse), and so may a quoted one.
func wordEnd(v string, colon int) int {
	after := v[colon+1:]
	if after == "" || strings.ContainsRune(" \t\r\n\"'", rune(after[0])) || !hostBefore(v, colon) {
		return len(v)
	}
	word := after
	if end := strings.IndexAny(after, " \t\r\n"); end >= 0 {
		word = after[:end+1]
	}
	if end := len(word) - 2; end > 0 && strings.HasSuffix(word, ": ") {
		return colon + 1 + end
	}
	return len(v)
}

// proseValue is where the first word with a digit in it starts after a
// word named as a key (keyWord) and blanks on its line (password hunter2,
// DB_PASSWORD 4711, mysqladmin's password NEW), or 0. No English word
// holds a digit, so prose keeps its words (wrong password for user app);
// a secret of letters alone shows. A bare pass is English's (pass 2 of
// 3), and a word that starts with - is the next option's.
func proseValue(v string) int {
	for i := 1; i < len(v); i++ {
		if !blank(v[i]) || blank(v[i-1]) {
			continue
		}
		word := wordBefore(v, i)
		val := strings.TrimLeft(v[i:], " \t") // a line break ends the key's line: no value
		next := val
		if end := strings.IndexFunc(val, func(r rune) bool { return r < 0x80 && blank(byte(r)) }); end >= 0 {
			next = val[:end]
		}
		// A word, maybe quoted; not the key's own : or = (password :3306),
		// an option (-x) or an aside (token (1045), DAGGER_SESSION_TOKEN
		// (401 Unauthorized)).
		word1 := strings.TrimLeft(next, `"'`)
		if word1 != "" && isAlnum(word1[0]) && strings.ContainsAny(next, "0123456789") &&
			word != "" && keyWord(word) && !strings.EqualFold(withoutNumber(word), "pass") {
			return len(v) - len(val)
		}
	}
	return 0
}

// longOptionValue is where the value of the first long option named as a
// key (keyWord) starts when a blank, not =, parts them (--password s3cr3t,
// docker login's --password TOKEN), or 0. A value that starts with - is
// the next option's: mysql's --password alone prompts.
func longOptionValue(v string) int {
	for i := 0; i+2 < len(v); i++ {
		if v[i] != '-' || v[i+1] != '-' || i > 0 && strings.IndexByte(hostChars, v[i-1]) >= 0 { // a word's --
			continue
		}
		end := i + 2
		for end < len(v) && strings.IndexByte(hostChars, v[end]) >= 0 {
			end++
		}
		val := strings.TrimLeft(v[end:], " \t")
		if len(val) < len(v)-end && val != "" && val[0] != '-' && !blank(val[0]) && keyWord(v[i+2:end]) {
			return len(v) - len(val)
		}
	}
	return 0
}

// isAlnum reports whether c is an ASCII letter or digit.
func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// blank reports whether c ends a command line's word: a word starts after
// any blank, as a pasted command line may span lines.
func blank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// isPort reports whether s starts with a port number (1 to 65535) that
// ends s or a host:port (a , / ; ? or blank follows): a secret after a
// key's : may start with digits too (password:9xK…), and must not show.
func isPort(s string) bool {
	end := len(s) - len(strings.TrimLeft(s, "0123456789"))
	if end == 0 || end > 5 || end < len(s) && !strings.ContainsRune(",/;? \t", rune(s[end])) {
		return false
	}
	n := 0
	for _, c := range s[:end] {
		n = n*10 + int(c-'0')
	}
	return n >= 1 && n <= 65535
}

// nameColon reports whether the : at v[colon] follows a name, not a key:
// a host's before its port, an image's before its tag. A name with no dot
// that reads as a host's (hostBefore: token-service, passport) holds a
// key's word only inside a longer name, so what follows its : is no
// secret where it reads as a tag (isTag: token-service:1.2); any other
// word may be one (token-service:hunter2), and so may what follows a
// blank or quote (YAML's password-prod: x). A dotted name may be a
// property's (app.secret:x): its : is a host's only before a port.
// After an image path (acme/token-service) it is a tag's, whatever tag
// (ociTag: a commit's 3d5aaa4 too).
func nameColon(v string, colon int) bool {
	after := v[colon+1:]
	tag := isTag(after) || imagePath(v, colon) && ociTag(after)
	return (isPort(after) || tag && !strings.Contains(wordBefore(v, colon), ".")) && hostBefore(v, colon)
}

// imagePath reports whether the name that ends at v[colon] is an image
// reference's path: one or more components, each before a / (acme/,
// registry.example:5000/team/), then the name. A name after // (a
// scheme's: https://ci-token:pw@host) or a / at the start (a file's
// /run/secrets/x:y) is none.
func imagePath(v string, colon int) bool {
	start := colon
	for start > 0 && (v[start-1] == '/' || strings.IndexByte(hostChars, v[start-1]) >= 0) {
		start--
	}
	path := v[start:colon]
	return strings.Contains(path, "/") && path[0] != '/' && !strings.Contains(path, "//")
}

// ociTag reports whether s starts with a tag as the OCI reference grammar
// spells one ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}) that ends the reference:
// the end, a blank, a , ; or ), a ": " (an error's cause), or a digest.
// Another @ (tag:pw@registry) ends credentials, and a : or / a tag cannot
// hold.
func ociTag(s string) bool {
	n := len(s) - len(strings.TrimLeft(s, hostChars))
	if n == 0 || n > 128 || s[0] == '.' || s[0] == '-' {
		return false
	}
	rest := s[n:]
	return rest == "" || strings.ContainsRune(" \t\r\n,;)", rune(rest[0])) ||
		rest == ":" || strings.HasPrefix(rest, ": ") || strings.HasPrefix(rest, "@sha256:")
}

// isTag reports whether s starts with an image tag as releases are
// tagged: a version (8.4, v2.0.1-rc1, 1.2-alpine, 20261207) or a named
// one (latest). A word that starts otherwise (hunter2, 9xK2…, a commit's
// 3d5aaa4) cannot be told from a password, so it is not taken for a tag:
// masking a tag is better than printing a secret.
func isTag(s string) bool {
	tag := s[:len(s)-len(strings.TrimLeft(s, hostChars))]
	if slices.Contains(namedTags(), strings.ToLower(tag)) {
		return true
	}
	if tag != "" && (tag[0] == 'v' || tag[0] == 'V') {
		tag = tag[1:]
	}
	suffix := strings.TrimLeft(tag, "0123456789.")
	version := tag[:len(tag)-len(suffix)] // 8.4 of 8.4-oracle
	return version != "" && version[0] != '.' && version[len(version)-1] != '.' &&
		(suffix == "" || suffix[0] == '-' || suffix[0] == '_')
}

// namedTags are the tags images are given other than versions.
func namedTags() []string {
	return []string{"latest", "stable", "edge", "main"}
}

// hostBefore reports whether the word that ends at v[colon] (a :) reads
// as a host name, as people write one (tokens, PASSPORT-DB, db.secret):
// hostChars alone and no key's name (keyWord). A colon right after a
// quote or blank ends no word (JSON's "password": 1234): no host's, so
// what follows the : is masked even where it looks like a port.
func hostBefore(v string, colon int) bool {
	word := wordBefore(v, colon)
	return word != "" && !keyWord(word)
}

// wordBefore is the run of hostChars that ends at v[end].
func wordBefore(v string, end int) string {
	start := end
	for start > 0 && strings.IndexByte(hostChars, v[start-1]) >= 0 {
		start--
	}
	return v[start:end]
}

// keyWord reports whether word names a credential: a credential's name
// ends one of its names (keyName, nameParts: db-password, SECRET_KEY,
// dbPasswordOld, token2, db-password-old). A dotted word is a DNS name's
// (db.secret, tokens.example.com) unless its last label names a password
// (db.password, spring.datasource.pwd): a namespace may be called secret
// or token, but no zone is called password, while properties files name
// a password so.
func keyWord(word string) bool {
	if dot := strings.LastIndexByte(word, '.'); dot >= 0 {
		return slices.ContainsFunc(nameParts(word[dot+1:]), func(p string) bool {
			lower := strings.ToLower(p)
			return keyName(p) && (strings.Contains(lower, "pass") || strings.Contains(lower, "pwd"))
		})
	}
	return slices.ContainsFunc(nameParts(word), keyName)
}

// nameParts are word and the names a key joins in it, as no DNS name
// does: by _ (SECRET_KEY, PASSWORD_OLD, and two of them: API_KEY_OLD), by
// camelCase (dbPasswordOld, SecretAccessKey), and each also without a
// number (token2, DB_PASSWORD2, db-password-1, API_KEY_1) or a rotated
// key's -old, -new or -prev (db-password-old) at its end. Any other word
// after a - is a name's (token-service).
func nameParts(word string) []string {
	parts := []string{word}
	split := strings.Split(word, "_")
	for i := 1; i < len(split); i++ {
		parts = append(parts, split[i-1]+"_"+split[i]) // API_KEY_OLD
	}
	for _, part := range split {
		parts = append(parts, part)
		for i := len(part) - 1; i > 0; i-- {
			if 'a' <= part[i-1] && part[i-1] <= 'z' && 'A' <= part[i] && part[i] <= 'Z' {
				parts = append(parts, part[:i]) // ends where the next name starts
			}
		}
	}
	for _, p := range parts {
		if i := strings.LastIndexByte(p, '-'); i > 0 && slices.Contains(rotations(), strings.ToLower(p[i+1:])) {
			parts = append(parts, p[:i])
		}
	}
	for _, p := range parts {
		if t := withoutNumber(p); t != p {
			parts = append(parts, t)
		}
	}
	return parts
}

// withoutNumber is name without a number at its end, or the - or _ that
// joins one (token2, DB_PASSWORD_2, db-password-1).
func withoutNumber(name string) string {
	return strings.TrimRight(strings.TrimRight(name, "0123456789"), "-_")
}

// rotations end a rotated key's other copy (db-password-old).
func rotations() []string {
	return []string{"old", "new", "prev", "previous", "next", "current", "backup"}
}

// EnvKey reports whether name is spelled as an environment's or a
// properties file's key for a credential: a key's name ends it, after
// any number or rotation (DB_PASSWORD, API_KEY_OLD, MYSQL_PWD2,
// db.password). A key's word inside a longer name does not make one
// (token_service, auth_token_db: containers' names), though Keyed masks
// what follows such a name's : to be safe.
func EnvKey(name string) bool {
	if strings.Contains(name, ".") {
		return keyWord(name)
	}
	name = withoutNumber(name)
	if i := strings.LastIndexAny(name, "_-"); i > 0 && slices.Contains(rotations(), strings.ToLower(name[i+1:])) {
		name = withoutNumber(name[:i])
	}
	return name != "" && keyName(name)
}

// hostChars are the bytes of a host name (of either case: host names are
// not case-sensitive), with the _ of a key (DB_PASSWORD) or a container's
// name.
const hostChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_"

// keyName reports whether name ends with a credential's name, as keys
// are spelled (password, db-password, apitoken, PASSPHRASE, ClientSecret,
// dbpass, DBPASS), in any case; but a word that ends with pass in English
// (compass, bypass) ends a host's name, not a key.
func keyName(name string) bool {
	lower := strings.ToLower(name) // ASCII alone: hostBefore's bytes
	for _, k := range append([]string{"password", "passwd", "passphrase", "passcode", "passkey", "secretkey", "credentials"}, wholeKeyWords()...) {
		if strings.HasSuffix(lower, k) {
			return true
		}
	}
	return strings.HasSuffix(lower, "pass") &&
		!slices.ContainsFunc([]string{"bypass", "compass", "overpass", "underpass", "surpass", "trespass"}, func(w string) bool { return strings.HasSuffix(lower, w) })
}

// credentialKeys are the starts of keys that hold a secret: a connection
// string's Pwd= or password=, an IAM token's X-Amz-Security-Token= and
// X-Amz-Signature=, an API's api_key= or Authorization:, a key pair's
// private_key=.
func credentialKeys() []string {
	return append([]string{"pass"}, wholeKeyWords()...)
}

// wholeKeyWords are the credentials' names that both start a key
// (credentialKeys: a secret's key= follows) and end one (keyName: the
// word before a : is a key's, not a host's).
func wholeKeyWords() []string {
	return append([]string{"pwd", "secret", "token", "signature", "credential", "authorization"}, keySpellings("api", "access", "private")...)
}

// keySpellings spells word's key as keys join it to key: apikey, api_key,
// api-key.
func keySpellings(words ...string) []string {
	var out []string
	for _, w := range words {
		out = append(out, w+"key", w+"_key", w+"-key")
	}
	return out
}

// trimQuote drops one quote that closes a key: JSON's "password":, TOML's
// "password" =.
func trimQuote(s string) string {
	if s != "" && (s[0] == '"' || s[0] == '\'') {
		return s[1:]
	}
	return s
}
