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
		"tcp://u:p@w@host:1/path@x":                  "tcp://xxxxx@host:1/path@x",
		"public.ecr.aws/docker/library/mysql:8.4":    "public.ecr.aws/docker/library/mysql:8.4",
	} {
		if got := Userinfo(in); got != want {
			t.Errorf("Userinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
