# The one definition of the sidecar image.
#
#   docker build -t sidecar:latest .
#
# Build args (all optional):
#   GO_IMAGE       Go toolchain image for the build stage   (golang:1.26-alpine)
#   RUNTIME_IMAGE  base of the final image                  (alpine:3.22)
#   VERSION        stamped into the binary and labels       (dev)
#   REVISION       git commit, binary and labels            (unknown)
#   CREATED        RFC 3339 build time for the label        (1970-01-01T00:00:00Z)
# Point GO_IMAGE/RUNTIME_IMAGE at a mirror or an ECR pull-through cache when
# Docker Hub is not reachable or rate-limited.

ARG GO_IMAGE=golang:1.26-alpine
ARG RUNTIME_IMAGE=alpine:3.22

# The build stage runs on the builder's own platform and cross-compiles, so a
# multi-platform build needs no emulation.
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
ARG TARGETOS
ARG TARGETARCH
# The forwarder is standard library only: the build must never reach the
# network (no module download, no toolchain switch). go.mod lists the
# pipeline's dependencies too; building ./sidecar does not load them.
ENV CGO_ENABLED=0 \
    GOTOOLCHAIN=local \
    GOPROXY=off \
    GOFLAGS=-mod=readonly \
    GOWORK=off \
    GOCACHE=/root/.cache/go-build
WORKDIR /src
COPY go.mod go.sum ./
COPY sidecar/ ./sidecar/
# Declared late: a new version or commit reuses the layers above.
ARG VERSION=dev
ARG REVISION=unknown
RUN --mount=type=cache,target=/root/.cache/go-build \
    GOOS="$TARGETOS" GOARCH="$TARGETARCH" go build -trimpath -buildvcs=false \
        -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${REVISION}" \
        -o /out/sidecar ./sidecar

FROM ${RUNTIME_IMAGE}
# Non-root user with a fixed UID/GID so task definitions and volume
# permissions can rely on it. Busybox sh and nc stay: ECS Exec needs a shell.
RUN addgroup -S -g 1000 sidecar \
 && adduser -S -D -H -h /nonexistent -s /sbin/nologin -u 1000 -G sidecar sidecar
COPY --from=build /out/sidecar /usr/local/bin/sidecar
# Numeric, so orchestrators can verify "runs as non-root" without /etc/passwd.
USER 1000:1000
EXPOSE 8080
STOPSIGNAL SIGTERM
# GET /readyz on the admin port (127.0.0.1:$ADMIN_PORT); never touches the
# database; healthy in sleep mode too.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/sidecar", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/sidecar"]

ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="sidecar" \
      org.opencontainers.image.description="ECS sidecar: forwards a local port to an Aurora MySQL endpoint, or idles for ECS Exec" \
      org.opencontainers.image.source="https://github.com/example/sidecar" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
