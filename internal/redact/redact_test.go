package redact

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestUserinfo(t *testing.T) {
	for in, want := range map[string]string{
		"tcp://user:S3CRET@127.0.0.1:1234":           "tcp://xxxxx@127.0.0.1:1234",
		"ssh://TOKEN@docker.internal":                "ssh://xxxxx@docker.internal",
		"user:pass@registry.example.com/golang:1.26": "xxxxx@registry.example.com/golang:1.26",
		"registry.example.com/golang@sha256:abcd":    "registry.example.com/golang@sha256:abcd",
		"unix:///run/dagger/engine.sock":             "unix:///run/dagger/engine.sock",
		"docker-container://dagger-engine":           "docker-container://dagger-engine",
		"tcp://u:p@w@host:1/path@x":                  "tcp://xxxxx@x", // p@w/path may be the password
		"https://ci:s3cr/et@goproxy.corp.example":    "https://xxxxx@goproxy.corp.example",
		"https://ci:s3c?ret@proxy.example":           "https://xxxxx@proxy.example",
		"https://ci:s3c#ret@proxy.example/mods":      "https://xxxxx@proxy.example/mods",
		"tcp://ci:pa?ss@host:1234":                   "tcp://xxxxx@host:1234",
		"https://ci:1234?x@proxy.example":            "https://xxxxx", // host:port?query@, or a password
		"https://ci:2024/s3cret@proxy.example/mods":  "https://xxxxx@proxy.example/mods",
		"https://proxy.example/mods@v/list":          "https://xxxxx@v/list", // a path's @ may end a token with a /
		"https://AbC/dEf@proxy.example/mods":         "https://xxxxx@proxy.example/mods",
		"https://u:p@proxy.example?who=a@b&t=s3cret": "https://xxxxx",
		"https://proxy.example?who=ci@corp&t=s3cret": "https://xxxxx",
		"https://ci:Kx/m@?s3cret@proxy.example":      "https://xxxxx",
		"https://ci:ab/c?d@proxy.example":            "https://xxxxx",
		"http://[::1]:5000/p?who=a@b":                "http://[::1]:5000/p?who=a@b",
		"http://127.0.0.1:1/creds?who=a@b":           "http://127.0.0.1:1/creds?who=a@b",
		"public.ecr.aws/docker/library/mysql:8.4":    "public.ecr.aws/docker/library/mysql:8.4",
		// Without a scheme the credentials run to the last @ (a
		// digest's aside), even past a / in a token or password.
		"user:tok@registry.example/x@sha256:abcd":       "xxxxx@registry.example/x@sha256:abcd",
		"registry/x:tok@en/img":                         "xxxxx@en/img",
		"AbC/dEf+gh@registry.example/team/img:1":        "xxxxx@registry.example/team/img:1",
		"AbC/dEf@registry.example/team/img@sha256:abcd": "xxxxx@registry.example/team/img@sha256:abcd",
		// A password's @sha256: is no digest: an @ follows it.
		"mysql://app:a@sha256:b@db":      "mysql://xxxxx@db",
		"user:pw@sha256:beef@registry/x": "xxxxx@registry/x",
		// What precedes :// is no scheme: a password's start.
		"user:pwA,://x@db":  "xxxxx@db",
		"1tcp://u:p@h:1":    "xxxxx@h:1",
		"git+ssh://u:p@h/r": "git+ssh://xxxxx@h/r",
	} {
		if got := Userinfo(in); got != want {
			t.Errorf("Userinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

// An address as a message shows it: credentials, query and fragment masked.
func TestQuery(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:1/creds?token=s3cret": "http://127.0.0.1:1/creds?xxxxx",
		"https://u:p@proxy.example/mods#s3cret": "https://xxxxx@proxy.example/mods#xxxxx",
		"https://proxy.example/mods":            "https://proxy.example/mods",
		"/v2/credentials/id?x=1":                "/v2/credentials/id?xxxxx",
	} {
		if got := Query(in); got != want {
			t.Errorf("Query(%q) = %q, want %q", in, got, want)
		}
	}
}

// A remote URL as the provenance and the source label publish it.
func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://x-access-token:ghs_secret@github.com/example/sidecar.git": "https://github.com/example/sidecar.git",
		"https://github.com/example/sidecar":                               "https://github.com/example/sidecar",
		"git@github.com:example/sidecar.git":                               "git@github.com:example/sidecar.git",
		"ssh://git@github.com/example/sidecar.git":                         "ssh://github.com/example/sidecar.git",
		"https://github.com/example/a@b":                                   "https://b", // a path's @ may end a token with a /
		"https://user:p@ss@github.com/example/sidecar.git":                 "https://github.com/example/sidecar.git",
		"https://github.com/example/sidecar.git?access_token=ghs_secret":   "https://github.com/example/sidecar.git",
		"https://github.com/example/sidecar.git#ghs_secret":                "https://github.com/example/sidecar.git",
		"https://ci:ghs/secret@github.com/example/sidecar.git":             "https://github.com/example/sidecar.git",
		"https://ci:s3c?ret@github.com/example/sidecar.git":                "https://github.com/example/sidecar.git",
		"user:pw,://x@github.com/example/sidecar.git":                      "xxxxx", // no scheme before ://
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

// No password is printed or published, whatever it holds (/ ? # @ :) and
// whatever follows the host. A token given as the user name, without a
// password, is not covered: "https://to/k?en@host" is also host "to" with
// a query, and Query and URL hide only what follows its ?.
func TestNoPasswordShown(t *testing.T) {
	specials := []string{"", "/", "?", "#", "@", ":", "/?", "?/", "/#", "#/", "@/", "/@", "?@", "@?", "a/b?c", "a/b#c", "x:y", "%40"}
	hosts := []string{"h.example", "h.example:5000", "[::1]:5000", "127.0.0.1:1", "[::1]"}
	tails := []string{"", "/", "/p/q", "?q=1", "#f", "/p?q=1", "/p#f", "/p@v/list", "?who=a@b", "/p?who=a@b"}
	shown := map[string]func(string) string{"Userinfo": Userinfo, "Query": Query, "URL": URL}
	for _, s1 := range specials {
		for _, s2 := range specials {
			for _, h := range hosts {
				for _, tail := range tails {
					in := "https://ci:Kx" + s1 + "m" + s2 + "Zy@" + h + tail
					for name, f := range shown {
						if out := f(in); strings.Contains(out, "Kx") || strings.Contains(out, "Zy") {
							t.Errorf("%s(%q) = %q", name, in, out)
						}
					}
				}
			}
		}
	}
	// A password holding :// without a scheme before it: what precedes
	// :// is then the password's start, not a scheme to keep.
	for _, pre := range []string{"", "ci:", "tcp:", "https://ci:"} {
		for _, sep := range []string{",://", "/://", " ://", "%40://", ":1://"} {
			for _, h := range hosts {
				in := pre + "Kx" + sep + "Zy@" + h + "/img"
				for name, f := range shown {
					if out := f(in); strings.Contains(out, "Kx") || strings.Contains(out, "Zy") {
						t.Errorf("%s(%q) = %q", name, in, out)
					}
				}
			}
		}
	}
	// A query's token, after a query holding an @.
	for _, in := range []string{
		"https://h.example?who=a@b&token=TOKEN",
		"https://h.example:5000?who=a@b&token=TOKEN",
		"https://[::1]:5000?who=a@b&token=TOKEN",
		"https://h.example#a@b&TOKEN",
		"https://h.example/p?who=a@b&token=TOKEN",
		"https://u:p@h.example?who=a@b&token=TOKEN",
		"http://169.254.170.2?x=a@b&t=TOKEN",
	} {
		for _, name := range []string{"Query", "URL"} {
			if out := shown[name](in); strings.Contains(out, "TOKEN") {
				t.Errorf("%s(%q) = %q", name, in, out)
			}
		}
	}
}

func TestHasScheme(t *testing.T) {
	for in, want := range map[string]bool{
		"tcp://h:1":        true,
		"git+ssh://h/r":    true,
		"HTTPS://h":        true,
		"x-y.z://h":        true,
		"docker-image://x": true,
		"://h":             false,
		"1tcp://h":         false,
		"user:pw,://x@db":  false,
		"a b://h":          false,
		"tcp:/h":           false,
		"h:1":              false,
	} {
		if got := HasScheme(in); got != want {
			t.Errorf("HasScheme(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestKeyed(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"db.example.com", "db.example.com"},
		{"tokens.example.com:3306", "tokens.example.com:3306"},
		{"Server=db;Uid=app;Pwd=S3CRET;", "Server=db;Uid=app;Pwd=xxxxx"},
		{"host=db password = S3CRET", "host=db password =xxxxx"},
		{"db:3306/orders?user=app&password=S3CRET", "db:3306/orders?xxxxx"},
		{"db;Secret_Key=S3CRET?x", "db;Secret_Key=xxxxx"},
		{"a?b;pwd=S3CRET", "a?xxxxx"},
		// key: value (YAML, a pasted line) and JSON, as people paste them.
		{"password: S3CRET", "password:xxxxx"},
		{"DB_PASSWORD:S3CRET", "DB_PASSWORD:xxxxx"},
		// A secret that starts with digits is no port: masked all the same.
		{"DB_PASSWORD:9xK2S3CRET", "DB_PASSWORD:xxxxx"},
		{"password:123456789", "password:xxxxx"},
		{"token:70000,x", "token:xxxxx"},
		// A numeric password is no port after a credential's key: the key
		// spelled alone, quoted, upper case or with an _ (no host's).
		{"password:3306", "password:xxxxx"},
		{"pwd:1234", "pwd:xxxxx"},
		{"DB_PASSWORD:12345", "DB_PASSWORD:xxxxx"},
		{"PASSWORD:3306", "PASSWORD:xxxxx"},
		{"mysql_pwd:3306/orders", "mysql_pwd:xxxxx"},
		{"Server=db;Password:1234", "Server=db;Password:xxxxx"},
		{`"password":3306`, `"password":xxxxx`},
		{`{"host":"db","password": 3306}`, `{"host":"db","password":xxxxx`},
		{"password :3306", "password :xxxxx"},
		{"token:3306", "token:xxxxx"},
		{"8080=db:3306,secret:3307", "8080=db:3306,secret:xxxxx"},
		{`{"user":"app","password":"S3CRET"}`, `{"user":"app","password":xxxxx`},
		{`{'Secret' : 'S3CRET'}`, `{'Secret' :xxxxx`},
		// A quoted key before an = (TOML, HCL): "password" = "S3CRET".
		{`"password" = "S3CRET"`, `"password" =xxxxx`},
		{`db;'Pwd'=1234`, `db;'Pwd'=xxxxx`},
		// A mysql command line: -pPASSWORD, --password=PASSWORD.
		{"mysql -h db -u app -pS3CRET orders", "mysql -h db -u app -pxxxxx"},
		{"-pS3CRET", "-pxxxxx"},
		{"mysql -u app\n-pS3CRET", "mysql -u app\n-pxxxxx"},
		{"mysql -u app \\\r\n-pS3CRET", "mysql -u app \\\r\n-pxxxxx"},
		{"mysql --password=S3CRET", "mysql --password=xxxxx"},
		// What is no credential stays: a host:port whose name holds a key,
		// a mode, a path, -P (the port), a name with -p inside it.
		{"passdb.example.com:3306", "passdb.example.com:3306"},
		{"tokens:3306", "tokens:3306"},
		{"secrets-db:3306/orders", "secrets-db:3306/orders"},
		{"8080=tokens:3306,8081=passport:3307", "8080=tokens:3306,8081=passport:3307"},
		{"compass:3306", "compass:3306"},
		{"db.secret:3306", "db.secret:3306"},
		{"host:3306", "host:3306"},
		{"8080=secrets.example:3306,8081=[::1]:3306", "8080=secrets.example:3306,8081=[::1]:3306"},
		{"verify-identity", "verify-identity"},
		{"/run/secrets/rds-ca.pem", "/run/secrets/rds-ca.pem"},
		{"mydb.cluster-abc123.us-east-1.rds.amazonaws.com", "mydb.cluster-abc123.us-east-1.rds.amazonaws.com"},
		{"mysql -h db-pool.example -P3306 -p", "mysql -h db-pool.example -P3306 -p"},
		// A name that ends with a credential's name, in any case, is a
		// key, its digits a secret (passphrase:12345 would show a numeric
		// passphrase); a host name holds a key word elsewhere, in any case
		// too. A word's end is no key's: compass, bypass.
		{"passphrase:12345", "passphrase:xxxxx"},
		{"apitoken:3306", "apitoken:xxxxx"},
		{"db-password:3306", "db-password:xxxxx"},
		{"mypassword:3306", "mypassword:xxxxx"},
		{"ClientSecret:1234", "ClientSecret:xxxxx"},
		{"db-pass:1234", "db-pass:xxxxx"},
		{"DBPASS:1234", "DBPASS:xxxxx"},
		{"dbPass:1234", "dbPass:xxxxx"},
		{"passcode:1234", "passcode:xxxxx"},
		{"secretkey:1234", "secretkey:xxxxx"},
		{"credentials:1234", "credentials:xxxxx"},
		{"8080=db:3306,db-token:3307", "8080=db:3306,db-token:xxxxx"},
		{"PASSPORT-DB:3306", "PASSPORT-DB:3306"},
		{"Tokens.Example.com:3306", "Tokens.Example.com:3306"},
		{"TOKENS:3306", "TOKENS:3306"},
		{"bypass:3306", "bypass:3306"},
		{"token-service:3306/orders", "token-service:3306/orders"},
		{"8080=PASSPORT-DB:3306,8081=Secrets-DB:3307", "8080=PASSPORT-DB:3306,8081=Secrets-DB:3307"},
		// A _ joins a key's words (SECRET_KEY, PASSWORD_OLD): one of them a
		// credential's name makes the whole a key, wherever it stands. A
		// container's name of words that are none shows its port.
		{"SECRET_KEY:4711", "SECRET_KEY:xxxxx"},
		{"secret_key:4711", "secret_key:xxxxx"},
		{"PASSWORD_OLD:1234", "PASSWORD_OLD:xxxxx"},
		{"db_token_rw:1234", "db_token_rw:xxxxx"},
		{"secrets_db_1:3306", "secrets_db_1:3306"},
		// A key's number (DB_PASSWORD_2, password2) is the key's: the
		// secret after it is masked, whatever it holds.
		{"DB_PASSWORD_2=S3CRET", "DB_PASSWORD_2=xxxxx"},
		{"Server=db;password2=S3CRET", "Server=db;password2=xxxxx"},
		{"token_v2: S3CRET", "token_v2:xxxxx"},
		{"8080=db:3306,secrets-db1:3307", "8080=db:3306,secrets-db1:3307"},
		{"compass_db:3306", "compass_db:3306"},
		// So does a key's number (DB_PASSWORD2, token2) and a key's word
		// in camelCase (dbPasswordOld, SecretAccessKey): no host is
		// written so. A number or capital after a host's word keeps it
		// one.
		{"DB_PASSWORD2:4711", "DB_PASSWORD2:xxxxx"},
		{"token2:4711", "token2:xxxxx"},
		{"db-password-1:4711", "db-password-1:xxxxx"},
		{"dbPasswordOld:4711", "dbPasswordOld:xxxxx"},
		{"SecretAccessKey:4711", "SecretAccessKey:xxxxx"},
		{"AuthTokenV2:4711", "AuthTokenV2:xxxxx"},
		{"8080=db:3306,mysqlPwd1:4711", "8080=db:3306,mysqlPwd1:xxxxx"},
		{"tokens2:3306", "tokens2:3306"},
		{"passports2:3306", "passports2:3306"},
		{"compassDb:3306", "compassDb:3306"},
		{"Secrets-DB1:3306", "Secrets-DB1:3306"},
		// A dotted property's password (no DNS name ends so), a rotated
		// key's -old, a bare pass that ends a word other than English's.
		{"spring.datasource.password:4711", "spring.datasource.password:xxxxx"},
		{"db.password:3306", "db.password:xxxxx"},
		{"db.secret:S3CRET", "db.secret:xxxxx"},
		{"db-password-old:4711", "db-password-old:xxxxx"},
		{"API-TOKEN-NEW:4711", "API-TOKEN-NEW:xxxxx"},
		{"db-secret-prev:4711", "db-secret-prev:xxxxx"},
		{"dbpass:4711", "dbpass:xxxxx"},
		{"token-old-db:3306", "token-old-db:3306"},
		{"overpass:3306", "overpass:3306"},
		// A long option's value after a blank; none where the next word is
		// an option (--password alone prompts). -p and a blank: mysql
		// prompts and takes the word as the database, docker run's -p
		// publishes a port. Prose's password and a word: no key's.
		{"docker login -u AWS --password eyJwYXls", "docker login -u AWS --password xxxxx"},
		{"mysql --password s3cr3t -h db", "mysql --password xxxxx"},
		{"run --db-password\t4711", "run --db-password\txxxxx"},
		{"mysql --password --user app", "mysql --password --user app"},
		{"mysql --password-file /run/pw", "mysql --password-file /run/pw"},
		{"mysql -p orders", "mysql -p orders"},
		{"docker run -p 8080:80 app", "docker run -p 8080:80 app"},
		{"wrong password for user app", "wrong password for user app"},
		// A key's name then a word with a digit in it, as no English word
		// has: a secret in prose or a tool's echo (mysqladmin's password
		// NEW). A word with none is prose's, a secret without one shows.
		{"password 4711", "password xxxxx"},
		{"password hunter2", "password xxxxx"},
		{"login failed: password S3cr3t rejected", "login failed: password xxxxx"},
		{"mysqladmin -u root password n3wpw", "mysqladmin -u root password xxxxx"},
		{"DB_PASSWORD  9xK2qZ", "DB_PASSWORD  xxxxx"},
		{"db.password\t4711", "db.password\txxxxx"},
		{"token eyJ0eXAiOiJKV1Qi", "token xxxxx"},
		{"the password was wrong for user app2", "the password was wrong for user app2"},
		{"the security token included in the request is invalid", "the security token included in the request is invalid"},
		{"Authentication plugin 'caching_sha2_password' 2 reported error", "Authentication plugin 'caching_sha2_password' 2 reported error"},
		{"password 2026-12-07T03:25:03Z", "password xxxxx"},
		{"password\n2026-12-07T03:25:03Z next line", "password\n2026-12-07T03:25:03Z next line"},
		{"password \r\n2026-12-07T03:25:03Z next line", "password \r\n2026-12-07T03:25:03Z next line"},
		{"tokens 2 of 3 used", "tokens 2 of 3 used"},
		{"pass 2 of 3", "pass 2 of 3"},
		{"a refused token (1045) is logged", "a refused token (1045) is logged"},
		{"refused DAGGER_SESSION_TOKEN (401 Unauthorized): x", "refused DAGGER_SESSION_TOKEN (401 Unauthorized): x"},
		{"password 'hunter2'", "password xxxxx"},
		{`password "S3cr3t"`, "password xxxxx"},
		{"dbpass 4711", "dbpass xxxxx"},
		{"passport 2 renewed", "passport 2 renewed"},
		{"mysql --password --user app2", "mysql --password --user app2"},
		{"mysql -p orders2", "mysql -p orders2"},
		{"password swordfish", "password swordfish"},
		// An image named as a host keeps its tag: a tag is no port, but
		// after a name that is no key's it is no secret either.
		{"registry.example/team/token-service:1.2", "registry.example/team/token-service:1.2"},
		{"secrets-db:latest", "secrets-db:latest"},
		{"registry.example/team/db-token:1.2", "registry.example/team/db-token:xxxxx"},
		{"password-prod: S3CRET", "password-prod:xxxxx"},
		// A tag is a version or a named release; any other word after such
		// a name may be its password: masked.
		{"token-service:hunter2", "token-service:xxxxx"},
		{"secrets-db:9xK2qZ", "secrets-db:xxxxx"},
		{"passport:swordfish", "passport:xxxxx"},
		{"token-service:3d5aaa4", "token-service:xxxxx"},
		{"token-service:v", "token-service:xxxxx"},
		{"token-service:1.", "token-service:xxxxx"},
		{"token-service:.1", "token-service:xxxxx"},
		{"token-service:1.x", "token-service:xxxxx"},
		{"token-service:1.2-alpine", "token-service:1.2-alpine"},
		{"token-service:V2", "token-service:V2"},
		{"token-service:20261207", "token-service:20261207"},
		{"secrets-db:stable", "secrets-db:stable"},
		{"passport:main,8080=db:3306", "passport:main,8080=db:3306"},
		{"pulled token-service:1.2 from cache", "pulled token-service:1.2 from cache"},
		// After an image path (a / before the name) the : is the tag's, by
		// the reference grammar: any tag is kept, and what follows it.
		{"pull docker.io/acme/token-service:3d5aaa4: not found", "pull docker.io/acme/token-service:3d5aaa4: not found"},
		{"LOCAL_IMAGE=acme/token-service:3d5aaa4", "LOCAL_IMAGE=acme/token-service:3d5aaa4"},
		{"registry.example:5000/team/secrets-db:sha-3d5aaa4 pushed", "registry.example:5000/team/secrets-db:sha-3d5aaa4 pushed"},
		{"acme/password-reset:main-3d5aaa4", "acme/password-reset:main-3d5aaa4"},
		{"acme/token-service:3d5aaa4@sha256:abcd", "acme/token-service:3d5aaa4@sha256:abcd"},
		// Not an image's tag: credentials before a host (an @ after the
		// word), a scheme's // before the name, a path from the root or
		// with an empty component, a key's name ending the path, a word no
		// tag can be.
		{"https://ci-token:hunter2@registry.example/x", "https://ci-token:xxxxx"},
		{"ci/token-svc:hunter2@registry.example", "ci/token-svc:xxxxx"},
		{"/run/secrets/db-token-file:hunter2", "/run/secrets/db-token-file:xxxxx"},
		{"acme//token-service:3d5aaa4", "acme//token-service:xxxxx"},
		{"acme/db-password:hunter2", "acme/db-password:xxxxx"},
		{"acme/token-service:-x", "acme/token-service:xxxxx"},
		{"acme/token-service:3d5aaa4/x", "acme/token-service:xxxxx"},
		{"acme/token-service:" + strings.Repeat("a", 129), "acme/token-service:xxxxx"},
		// The word masked after a bare name ends at the ": " that joins an
		// error to its cause: the rest is read on. A blank or a quote may
		// be a value's (a properties file's token-service:correct horse).
		{"token-service:hunter2: not found", "token-service:xxxxx: not found"},
		{"token-service:hunter2: password=S3CRET", "token-service:xxxxx: password=xxxxx"},
		{"token-service:pw1: password hunter2", "token-service:xxxxx: password xxxxx"},
		{"token-service:password=S3: CRET", "token-service:xxxxx"},
		{"pulled token-service:hunter2 from cache", "pulled token-service:xxxxx"},
		{"token-service:correct horse: battery", "token-service:xxxxx"},
		{`token-service:"S3: CRET"`, "token-service:xxxxx"},
		{"app.secret:correct horse battery", "app.secret:xxxxx"},
		{"token-service: S3CRET", "token-service:xxxxx"},
		{`"secret-store":"S3CRET"`, `"secret-store":xxxxx`},
		// Letters whose lower case has another length in UTF-8 (the
		// Kelvin sign, İ: shorter; Ⱥ: longer), before or in the secret:
		// the cut stays at the key's =.
		{"Pwd=ab\u212Acd", "Pwd=xxxxx"},
		{"Server=db;Pwd=\u0130\u0130\u0130\u0130", "Server=db;Pwd=xxxxx"},
		{"Pwd=\u023A\u023A\u023A\u023A\u023A\u023A", "Pwd=xxxxx"},
		{"\u212A\u023A;Pwd=S3CRET", "\u212A\u023A;Pwd=xxxxx"},
		{"\u212Aey.example.com", "\u212Aey.example.com"},
	} {
		if got := Keyed(tc.in); got != tc.want {
			t.Errorf("Keyed(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestKeyedWith(t *testing.T) {
	escape := func(s string) string { return strings.ReplaceAll(s, `"`, "%22") } // reshapes the key, as url escaping does
	for _, tc := range []struct {
		name, in string
		mask     func(string) string
		want     string
	}{
		{"no key: mask alone", "user:pw@db:3306", Userinfo, Userinfo("user:pw@db:3306")},
		{"key before an @: the @ is kept for mask", "password: pw@S3CRET", Userinfo, Userinfo("password:" + Mask + "@")},
		{"credentials that start before the key", "app:pwd=x@S3CRET@db", Userinfo, Userinfo("app:pwd=" + Mask + "@")},
		{"a ? is mask's", "user:pw?x@db", Userinfo, Userinfo("user:pw?x@db")},
		{"cut before a mask that reshapes the key", `https://vuln.example/"Pwd":"S3CRET"`, escape, `https://vuln.example/%22Pwd%22:` + Mask},
		{"identity mask", "Server=db;Pwd=S3CRET", func(s string) string { return s }, "Server=db;Pwd=" + Mask},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := KeyedWith(tc.in, tc.mask)
			if got != tc.want || strings.Contains(got, "S3CRET") {
				t.Errorf("KeyedWith(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// EnvKey is a key's name at the end, as environments and properties files
// spell keys; a key's word inside a container's name is not one.
func TestEnvKey(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"DB_PASSWORD": true, "MYSQL_PWD": true, "API_KEY": true, "db_password_old": true, "DB_PASSWORD2": true,
		"db-password-old": true, "db.password": true, "spring.datasource.password": true, "SECRET": true,
		"token_service": false, "auth_token_db": false, "password_reset_db": false, "api_key_store": false,
		"secrets_db_1": false, "db.secret": false, "tokens.example.com": false, "compass": false, "_old": false,
	} {
		if got := EnvKey(name); got != want {
			t.Errorf("EnvKey(%q) = %v, want %v", name, got, want)
		}
	}
}

// A masked error says its text and is still the error it masks.
func TestMaskedErr(t *testing.T) {
	t.Parallel()
	err := MaskedErr(fmt.Errorf("open /run/s3cret: %w", os.ErrNotExist), "open /run/"+Mask+": file does not exist")
	if err.Error() != "open /run/"+Mask+": file does not exist" || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("MaskedErr = %q (Is ErrNotExist: %v)", err, errors.Is(err, os.ErrNotExist))
	}
}
