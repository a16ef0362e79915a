package redact

import (
	"strings"
	"testing"
)

// FuzzKeyed builds prefix + a key form Keyed knows + secret and checks
// the secret is gone: the last part Keyed masks (keyedSpans) runs to the
// end from at or before where the secret starts. Any input, valid UTF-8
// or not, comes back without a panic as itself with parts of it, in
// order, put as xxxxx: a word after a name's : is masked alone
// (token-service:hunter2: not found).
func FuzzKeyed(f *testing.F) {
	forms := []string{
		"password=", "Pwd = ", "PASSWORD=", "password: ", "password:", `"password":"`,
		"'secret_key': ", "X-Amz-Security-Token=", "X-Amz-Signature=", " -p", "?",
		" --password ",
	}
	f.Add("Server=db;", uint8(0), "S3CRET")
	f.Add("\u212a", uint8(1), "s3cret")     // Kelvin sign: lowercases to 1 byte from 3
	f.Add("İİİ", uint8(3), "hunter2")       // İ: lowercases to 3 bytes from 2
	f.Add("\xff\xfe", uint8(5), "x\xffy")   // invalid UTF-8
	f.Add("host:3306/db", uint8(10), "a=b") // a query after a port
	f.Add("mysql -udb", uint8(9), "pw")
	f.Add("tokens:3306 ", uint8(4), "abc")
	f.Add("0", uint8(9), "\n")           // -p then a line break: no password
	f.Add("DB_", uint8(4), "9xK2S3CRET") // digits that are no port
	f.Add("DB_", uint8(4), "3306")       // a port's digits after a key that is no host's
	f.Add("my", uint8(4), "3306")        // mypassword:3306: a key, its password numeric
	f.Add("db.", uint8(4), "3306")       // db.password:3306: a property's, as no DNS name ends so
	f.Add("db.", uint8(4), "S3CRET")
	f.Add("registry.example/token-service", uint8(4), "1.2") // token-service:1.2: an image's tag
	f.Add("docker login -u AWS", uint8(11), "eyJwYXls")      // --password TOKEN
	f.Add("mysql", uint8(11), "--user app")                  // --password alone prompts
	f.Fuzz(func(t *testing.T, prefix string, form uint8, secret string) {
		key := forms[int(form)%len(forms)]
		v := prefix + key + secret
		got, spans := Keyed(v), keyedSpans(v)
		at := 0
		for _, s := range spans {
			if s[0] < at || s[1] < s[0] || s[1] > len(v) {
				t.Fatalf("Keyed(%q) = %q masks %v: not parts of the input, in order", v, got, spans)
			}
			at = s[1]
		}
		if secret == "" || !masks(prefix, key, secret) {
			return
		}
		if n := len(spans); n == 0 || spans[n-1][1] != len(v) || spans[n-1][0] > len(prefix)+len(key) {
			t.Fatalf("Keyed(%q) = %q: the secret after %q is shown", v, got, key)
		}
	})
}

// masks reports whether Keyed's documented rules take what follows key as
// a secret: a key's : is a name's where the word before it reads as one
// (nameColon: a host's before its port, an image's before its tag),
// mysql's -p needs a password right after it, and --password a word after
// its blank that is no option.
func masks(prefix, key, secret string) bool {
	switch {
	case strings.HasSuffix(key, ":") && nameColon(prefix+key+secret, len(prefix+key)-1):
		return false
	case key == " -p" && blank(secret[0]):
		return false
	case strings.HasPrefix(key, " --") && (blank(secret[0]) || secret[0] == '-'):
		return false
	}
	return true
}

// FuzzUserinfo builds scheme://user:secret@host+rest (and the form without
// a scheme) and checks what Userinfo, Query and URL print: the secret
// masked (or everything after the scheme), or for URL dropped; and no
// panic on any input.
func FuzzUserinfo(f *testing.F) {
	f.Add("https://", "ci", "s3cr/et", "goproxy.corp.example", "/mods?x=1")
	f.Add("", "user", "tok", "registry.example", "/x@sha256:abcd")
	f.Add("tcp://", "u", "p@w", "host:1", "/path@x")
	f.Add("https://", "ci", "Kx/m@?s3cret", "proxy.example", "")
	f.Add("mysql://", "app", "a@sha256:b", "db", "")
	f.Add("https://", "\xff", "\u212a", "[::1]:5000", "#frag")
	f.Fuzz(func(t *testing.T, scheme, user, secret, host, rest string) {
		if scheme != "" && !HasScheme(scheme) || !strings.HasSuffix(scheme, "://") || strings.Count(scheme, "://") != 1 {
			scheme = ""
		}
		if secret == "" || strings.ContainsAny(user, "@/?#") || strings.Contains(user+":"+secret, "://") ||
			host == "" || strings.ContainsAny(host, "@/?#") {
			return
		}
		if i := strings.IndexAny(secret, "/?#"); i >= 0 && hostPort(user+":"+secret[:i]) {
			return // user:1234/…#…@host reads as host:port/…#fragment too: ambiguous, see userinfoEnd
		}
		v := scheme + user + ":" + secret + "@" + host + rest
		after := v[len(scheme)+len(user)+1+len(secret):] // @host and the rest
		for name, redact := range map[string]func(string) string{"Userinfo": Userinfo, "Query": Query} {
			got := redact(v)
			shown, ok := strings.CutPrefix(got, scheme+"xxxxx")
			if !ok || !strings.Contains(after, strings.TrimSuffix(shown, "xxxxx")) {
				t.Errorf("%s(%q) = %q: the password %q is not masked", name, v, got, secret)
			}
		}
		if scheme == "" {
			return
		}
		got := URL(v)
		shown, ok := strings.CutPrefix(got, scheme)
		if !ok || shown != "xxxxx" && !strings.Contains(after, shown) {
			t.Errorf("URL(%q) = %q: the password %q is not dropped", v, got, secret)
		}
	})
}
