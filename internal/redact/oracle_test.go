package redact

import (
	"strings"
	"testing"
)

// The oracle of these tests is how the values are built, not the
// package's own rules (FuzzKeyed asks hostBefore): a secret put after a
// key must not come back, and a host (with its port) must come back
// whole.

// keyWords are the credential names Keyed is meant to cover (see
// credentialKeys and keyName), each as lower, UPPER and CamelCase spell it.
var keyWords = []struct{ lower, upper, camel string }{
	{"password", "PASSWORD", "Password"},
	{"passwd", "PASSWD", "Passwd"},
	{"pwd", "PWD", "Pwd"},
	{"pass", "PASS", "Pass"},
	{"passphrase", "PASSPHRASE", "Passphrase"},
	{"passcode", "PASSCODE", "Passcode"},
	{"passkey", "PASSKEY", "Passkey"},
	{"token", "TOKEN", "Token"},
	{"auth_token", "AUTH_TOKEN", "AuthToken"},
	{"secret", "SECRET", "Secret"},
	{"secret_key", "SECRET_KEY", "SecretKey"},
	{"secretkey", "SECRETKEY", "Secretkey"},
	{"secret_access_key", "SECRET_ACCESS_KEY", "SecretAccessKey"},
	{"client_secret", "CLIENT_SECRET", "ClientSecret"},
	{"signature", "SIGNATURE", "Signature"},
	{"credential", "CREDENTIAL", "Credential"},
	{"credentials", "CREDENTIALS", "Credentials"},
	{"api_key", "API_KEY", "ApiKey"},
	{"apikey", "APIKEY", "Apikey"},
	{"access_key", "ACCESS_KEY", "AccessKey"},
	{"private_key", "PRIVATE_KEY", "PrivateKey"},
	{"authorization", "AUTHORIZATION", "Authorization"},
}

// keyNames spells each key word as people name a variable or field: bare,
// after a prefix (DB_, db-, my, app_, MYSQL_, AWS_) and before a suffix
// (_1, _OLD, 2, -old; -new and -prev as TestKeyed has them), in lower, UPPER and CamelCase; a password's word
// also as a dotted property (db.password, spring.datasource.pwd). Left
// out, as keyName and hostBefore say: a . before any other word
// (db.secret:3306 reads as a DNS name's host and port) and a - before any
// other suffix (token-service is a host's).
func keyNames() []string {
	var names []string
	for _, w := range keyWords {
		for _, p := range []string{"", "db_", "db-", "my", "db", "app_", "mysql_", "aws_"} {
			for _, s := range []string{"", "_1", "_old", "2", "_v2", "-1", "-old"} {
				if p == "db" && w.lower != "pass" {
					continue // my joins the others' words so: dbpass for a bare pass
				}
				names = append(names, p+w.lower+s, strings.ToUpper(p+w.lower+s))
			}
		}
		if strings.Contains(w.lower, "pass") || w.lower == "pwd" {
			for _, p := range []string{"db.", "spring.datasource.", "DB.", "app.db_"} {
				names = append(names, p+w.lower, p+w.camel+"Old")
			}
		}
		for _, p := range []string{"", "db", "my", "app", "mysql", "aws", "Db", "My"} {
			for _, s := range []string{"", "1", "Old", "V2"} {
				names = append(names, p+w.camel+s) // dbPassword, DbPasswordOld
			}
		}
	}
	return names
}

// joins put a key and its secret together as a value, a file or a pasted
// line holds them.
var joins = []string{
	"%k=%s", "%k = %s", "%k:%s", "%k: %s", "%k :%s", "%k : %s", "%k\t=\t%s",
	`"%k":"%s"`, `"%k": "%s"`, `"%k":%s`, `"%k": %s`, `'%k': '%s'`, `{"%k":"%s"}`,
	`%k="%s"`, `%k='%s'`, `%k: "%s"`, `"%k" = "%s"`, `"%k"="%s"`, "--%k=%s", "%k => '%s'", "export %k=%s",
	"--%k %s", "cmd --%k\t%s --user app",
}

// secretValues hold digits alone (a port's look) as well as letters; none
// of them is found in a setting or key name, so any of it in the output
// is the secret's.
var secretValues = []string{"S3cretXy", "9xK2qZ", "4711", "48213", "65535", "7"}

// settings are where else a key and secret stand in a value: after a
// host, in a connection string, in a FORWARDS list, in a URL's query.
var settings = []string{
	"db.example.com;%v",
	"Server=db;Uid=app;%v",
	"host=db %v",
	"8080=db:3306,%v",
	"8080=mydb.cluster-abc123.us-east-1.rds.amazonaws.com:3306 %v",
	"mysql://app@db:3306/orders?%v",
}

// keyedSecretCases yields each key name, join and secret alone and in
// one of the settings, in turn.
func keyedSecretCases(yield func(in, secret string) bool) {
	n := 0
	for _, name := range keyNames() {
		for _, join := range joins {
			for _, secret := range secretValues {
				kv := strings.NewReplacer("%k", name, "%s", secret).Replace(join)
				n++
				at := settings[n%len(settings)]
				if !yield(kv, secret) || !yield(strings.Replace(at, "%v", kv, 1), secret) {
					return
				}
			}
		}
	}
}

func TestKeyedHidesEverySecret(t *testing.T) {
	shown := map[string]func(string) string{
		"Keyed":     Keyed,
		"KeyedWith": func(v string) string { return KeyedWith(v, Userinfo) },
	}
	failed := 0
	for in, secret := range keyedSecretCases {
		for name, f := range shown {
			if out := f(in); strings.Contains(out, secret) {
				if failed++; failed <= 40 {
					t.Errorf("%s(%q) = %q: the secret %q shows", name, in, out, secret)
				}
			}
		}
	}
	if failed > 40 {
		t.Errorf("and %d more", failed-40)
	}
}

// A key's name, blanks and a secret with a digit in it, as prose or a
// tool's echo has them (password hunter2, DB_PASSWORD 4711): the secret
// is masked. Not after a bare pass, an English word (pass 2 of 3).
func TestKeyedHidesASecretAfterABlank(t *testing.T) {
	shown := map[string]func(string) string{
		"Keyed":     Keyed,
		"KeyedWith": func(v string) string { return KeyedWith(v, Userinfo) },
	}
	for _, name := range keyNames() {
		if strings.EqualFold(strings.TrimRight(name, "0123456789_-"), "pass") {
			continue
		}
		for _, join := range []string{"%k %s", "%k\t%s", "%k  %s and more", "login failed: %k %s rejected", "mysqladmin -u root %k %s"} {
			for _, secret := range []string{"hunter2", "S3cretXy", "4711", "9xK2qZ"} {
				in := strings.NewReplacer("%k", name, "%s", secret).Replace(join)
				for fn, f := range shown {
					if out := f(in); strings.Contains(out, secret) {
						t.Errorf("%s(%q) = %q: the secret %q shows", fn, in, out, secret)
					}
				}
			}
		}
	}
}

// hostNames are the targets the sidecar is given: Aurora endpoints,
// ECS Service Connect and container names (some holding a key's word),
// IP addresses.
var hostNames = []string{
	"mydb.cluster-abc123.us-east-1.rds.amazonaws.com",
	"mydb.cluster-ro-abc123.us-east-1.rds.amazonaws.com",
	"reports.cluster-custom-abc123.eu-west-1.rds.amazonaws.com",
	"secret-cluster.cluster-abc123.us-east-1.rds.amazonaws.com",
	"tokens-db.proxy-abc123.us-east-1.rds.amazonaws.com",
	"Tokens.Example.com", "db.secret", "passdb.example.com",
	"mysql", "db", "db2", "aurora-proxy", "secrets-db", "secrets-db1", "token-service", "PASSPORT-DB",
	"passport", "passports2", "my_db", "secrets_db_1", "compass", "compass_db", "bypass", "tokens", "TOKENS",
	"passwd-db", "pass-db", "credentials-api", "Secrets-DB", "Secrets-DB1", "tokens2", "compassDb",
	"aurora-proxy-2", "token-service-1",
	"127.0.0.1", "10.0.12.7", "[::1]", "[fd00:ec2::23]",
}

func TestKeyedShowsEveryHost(t *testing.T) {
	var values []string
	for _, h := range hostNames {
		for _, port := range []string{"", ":3306", ":1", ":65535", ":3306/orders"} {
			values = append(values, h+port)
		}
		for _, h2 := range []string{"db2", "mysql", h} {
			values = append(values,
				"8080="+h+":3306,8081="+h2+":3307",
				"8080="+h2+":3306,8081="+h+":3307",
				"8080="+h+":3306, 8081="+h2+":3307",
			)
		}
	}
	// An image named as a host (token-service) keeps its tag: a tag is no
	// port, but a name that is no key's holds no secret after its :.
	for _, h := range hostNames {
		if strings.ContainsAny(h, ".[:") {
			continue // a dotted name's : before no port may be a property's (app.secret:x)
		}
		for _, tag := range []string{":1.2", ":latest", ":v2.0.1-rc1", ":8.4", ":1.2@sha256:abcd", ":1.2-alpine", ":stable", ":20261207", ":V2"} {
			values = append(values, h+tag, "registry.example/team/"+h+tag, "registry.example:5000/"+h+tag)
		}
	}
	shown := map[string]func(string) string{
		"Keyed":     Keyed,
		"KeyedWith": func(v string) string { return KeyedWith(v, Userinfo) },
	}
	for _, in := range values {
		for name, f := range shown {
			if out := f(in); out != in {
				t.Errorf("%s(%q) = %q, want it whole", name, in, out)
			}
		}
	}
}

// A name that holds a key's word inside it (token-service) keeps a tag
// after its :, but a word that reads as no tag may be a password
// (token-service:hunter2): masked, alone, after a FORWARDS entry, in a
// line of prose, and before an @ (credentials, with or without a
// scheme). After an image path the : is a tag's (TestKeyedKeepsAnImagesTag).
func TestKeyedHidesAWordAfterAName(t *testing.T) {
	shown := map[string]func(string) string{
		"Keyed":     Keyed,
		"KeyedWith": func(v string) string { return KeyedWith(v, Userinfo) },
	}
	for _, h := range hostNames {
		holdsKey := false
		for _, w := range keyWords {
			holdsKey = holdsKey || strings.Contains(strings.ToLower(h), w.lower)
		}
		if !holdsKey || strings.ContainsAny(h, ".[") {
			continue // no key's word ends the name (db, tokens.example.com): no key to mask after
		}
		for _, secret := range []string{"hunter2", "S3cretXy", "9xK2qZ", "swordfish", "3d5aaa4", "v2beta"} {
			for _, in := range []string{h + ":" + secret, "8080=db:3306," + h + ":" + secret,
				"login to " + h + ":" + secret + " failed", "https://" + h + ":" + secret + "@registry.example/team/app",
				"ci/" + h + ":" + secret + "@registry.example", "/run/secrets/" + h + ":" + secret} {
				for name, f := range shown {
					if out := f(in); strings.Contains(out, secret) {
						t.Errorf("%s(%q) = %q: the secret %q shows", name, in, out, secret)
					}
				}
			}
		}
	}
}

// After an image path (a / before the name: acme/token-service,
// registry.example:5000/team/secrets-db) the : is the tag's, as the
// reference grammar has it: any tag is kept (a commit's 3d5aaa4, sha-…,
// main-…), with a digest and the rest of the line. A password there is
// no image reference's: its credentials come before the registry, and
// are masked (KeyedWith with Userinfo). After a bare name a word that is
// no version is masked, the rest of the line kept.
func TestKeyedKeepsAnImagesTag(t *testing.T) {
	shown := map[string]func(string) string{
		"Keyed":     Keyed,
		"KeyedWith": func(v string) string { return KeyedWith(v, Userinfo) },
	}
	for _, h := range hostNames {
		if strings.ContainsAny(h, ".[:") {
			continue // a dotted name's : before no port may be a property's (app.secret:x)
		}
		for _, tag := range []string{"3d5aaa4", "sha-3d5aaa4", "main-3d5aaa4", "v2beta", "_x.Y-9", "1.2"} {
			for _, path := range []string{"acme/", "docker.io/acme/", "registry.example:5000/team/"} {
				for _, rest := range []string{"", ": not found", " pushed", "@sha256:abcd", ",8080=db:3306"} {
					in := "pull " + path + h + ":" + tag + rest
					for name, f := range shown {
						if out := f(in); out != in {
							t.Errorf("%s(%q) = %q, want it whole", name, in, out)
						}
					}
				}
			}
			in := "https://ci:" + secretValues[0] + "@registry.example/team/" + h + ":" + tag
			if out := KeyedWith(in, Userinfo); out != "https://xxxxx@registry.example/team/"+h+":"+tag {
				t.Errorf("KeyedWith(%q, Userinfo) = %q: want the credentials masked, the tag kept", in, out)
			}
		}
	}
	for _, h := range hostNames {
		holdsKey := false
		for _, w := range keyWords {
			holdsKey = holdsKey || strings.Contains(strings.ToLower(h), w.lower)
		}
		if !holdsKey || strings.ContainsAny(h, ".[") {
			continue
		}
		in := "pull " + h + ":hunter2: not found"
		for name, f := range shown {
			if name == "KeyedWith" {
				continue // a value's credentials may run to its end
			}
			if out, want := f(in), "pull "+h+":"+Mask+": not found"; out != want {
				t.Errorf("%s(%q) = %q, want %q", name, in, out, want)
			}
		}
	}
}
