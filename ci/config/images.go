package config

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
