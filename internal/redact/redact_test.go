package redact

import "testing"

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
		"https://ci:2024/s3cret@proxy.example/mods":  "https://xxxxx@proxy.example/mods",
		"https://proxy.example/mods@v/list":          "https://proxy.example/mods@v/list",
		"http://127.0.0.1:1/creds?who=a@b":           "http://127.0.0.1:1/creds?who=a@b",
		"public.ecr.aws/docker/library/mysql:8.4":    "public.ecr.aws/docker/library/mysql:8.4",
		// Without a scheme the credentials run to the last @ (a
		// digest's aside), even past a / in a token or password.
		"user:tok@registry.example/x@sha256:abcd":       "xxxxx@registry.example/x@sha256:abcd",
		"registry/x:tok@en/img":                         "xxxxx@en/img",
		"AbC/dEf+gh@registry.example/team/img:1":        "xxxxx@registry.example/team/img:1",
		"AbC/dEf@registry.example/team/img@sha256:abcd": "xxxxx@registry.example/team/img@sha256:abcd",
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
		"https://github.com/example/a@b":                                   "https://github.com/example/a@b",
		"https://user:p@ss@github.com/example/sidecar.git":                 "https://github.com/example/sidecar.git",
		"https://github.com/example/sidecar.git?access_token=ghs_secret":   "https://github.com/example/sidecar.git",
		"https://github.com/example/sidecar.git#ghs_secret":                "https://github.com/example/sidecar.git",
		"https://ci:ghs/secret@github.com/example/sidecar.git":             "https://github.com/example/sidecar.git",
		"https://ci:s3c?ret@github.com/example/sidecar.git":                "https://github.com/example/sidecar.git",
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}
