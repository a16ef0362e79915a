package config

import (
	"fmt"
	"regexp"
	"strings"
)

// Default base images: ECR Public's mirror of the Docker Official Images
// (same names and tags as on Docker Hub, under public.ecr.aws/docker/library),
// so a CI run's pulls do not count against Docker Hub's anonymous limit on
// runner IPs shared with other jobs. Setting GO_IMAGE, RUNTIME_IMAGE or
// MYSQL_IMAGE to golang:1.26-alpine, alpine:3.22 or mysql:8.4 goes back to
// Docker Hub.
//
// These constants own the defaults: the Dockerfile's ARG defaults and the
// docs repeat them, and TestDefaultImagesAgree ties every copy to them.
const (
	DefaultGoImage      = "public.ecr.aws/docker/library/golang:1.26-alpine"
	DefaultRuntimeImage = "public.ecr.aws/docker/library/alpine:3.22"
	DefaultMySQLImage   = "public.ecr.aws/docker/library/mysql:8.4"
)

// dockerNameRE is Docker's grammar for an image name with an optional tag
// (distribution/reference, regexp.go). go-containerregistry's parsers check
// only the characters, so a name such as sidecar-:dev passed them and was
// refused ("invalid reference format") by docker load or the engine's pull,
// after the build. The host is optional as in the grammar: Docker takes
// a first component for one when it has ".", ":", is localhost, or has an
// upper-case letter (normalize.go, splitDockerDomain), so an upper-case
// first component is a host here too, and path components are lower case.
var dockerNameRE = func() *regexp.Regexp {
	const (
		label = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
		host  = `(?:` + label + `(?:\.` + label + `)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?`
		path  = `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
		tag   = `[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}`
	)
	return regexp.MustCompile(`^(?:` + host + `/)?` + path + `(?:/` + path + `)*(?::` + tag + `)?$`)
}()

// checkDockerName refuses a reference (its part before any @digest) that
// Docker's grammar does not take.
func checkDockerName(ref string) error {
	name, _, _ := strings.Cut(ref, "@")
	if dockerNameRE.MatchString(name) {
		return nil
	}
	return fmt.Errorf("%w (not a name Docker takes: path components of lower-case letters and digits joined by \".\", \"_\", \"__\" or dashes, "+
		"and a tag of up to 128 letters, digits, \"_\", \".\" or \"-\", not starting with \".\" or \"-\")", errAccepted)
}
