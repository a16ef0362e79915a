# The one definition of the sidecar image.
#
#   DOCKER_BUILDKIT=1 docker build -t sidecar:latest .
#
# Build args (all optional; defaults below):
#   GO_IMAGE       Go toolchain image for the build stage
#   RUNTIME_IMAGE  base of the final image (needs /etc/passwd and /etc/group)
#   VERSION        stamped into the binary and labels       (dev)
#   REVISION       git commit, binary and labels            (unknown)
#   CREATED        RFC 3339 build time for the label        (1970-01-01T00:00:00Z)
#   GOPROXY        Go module proxy for aws-sdk-go-v2         (https://proxy.golang.org)
# The base images default to ECR Public's mirror of the Docker Official
# Images, which has no Docker Hub anonymous pull limit; --build-arg
# GO_IMAGE=golang:1.26-alpine --build-arg RUNTIME_IMAGE=alpine:3.22 pulls
# from Docker Hub.
# (These defaults are ci.DefaultGoImage/DefaultRuntimeImage; a test ties them.)

ARG GO_IMAGE=public.ecr.aws/docker/library/golang:1.26-alpine
ARG RUNTIME_IMAGE=public.ecr.aws/docker/library/alpine:3.22

# The legacy builder (Docker 20.10 without DOCKER_BUILDKIT=1, or a newer
# docker without the buildx plugin) runs every
# stage in order and sets no BUILDPLATFORM; BuildKit skips this stage, as
# nothing depends on it. So only the legacy builder stops here, at once,
# saying how to build.
FROM ${RUNTIME_IMAGE} AS needs-buildkit
ARG BUILDPLATFORM
RUN if [ -z "$BUILDPLATFORM" ]; then echo "This Dockerfile needs BuildKit: run DOCKER_BUILDKIT=1 docker build . (Docker 23 and later use BuildKit by default, but without the buildx plugin (docker-buildx-plugin in Docker's packages) they use the legacy builder: install it)" >&2; exit 1; fi

# Only files are taken from the runtime base here (its account files): a
# stage for the target platform that runs nothing.
FROM ${RUNTIME_IMAGE} AS runtime

# Nothing for the target platform executes: the build stage runs on the
# builder's own platform and cross-compiles, and the final stage only copies.
# So an arm64 image builds on an amd64 host without QEMU. (Dagger v0.21.8 sets
# BUILDPLATFORM to the target unless the pipeline passes it as a build arg.)
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
ARG TARGETOS
ARG TARGETARCH
# The forwarder's only third-party code is aws-sdk-go-v2 (IAM), fetched
# from the Go module proxy and checked against go.sum; nothing else is
# downloaded (no toolchain switch). GOPROXY is a build arg for a private
# mirror. go.mod lists the pipeline's dependencies too; building ./sidecar
# fetches only what it imports.
ARG GOPROXY=https://proxy.golang.org
ENV CGO_ENABLED=0 \
    GOTOOLCHAIN=local \
    GOFLAGS=-mod=readonly \
    GOWORK=off \
    GOCACHE=/root/.cache/go-build \
    GOMODCACHE=/root/go/pkg/mod
WORKDIR /src
COPY go.mod go.sum ./
# The typo finder and the redaction of addresses are shared with the
# pipeline, so they live outside sidecar/.
COPY internal/envtypo/ ./internal/envtypo/
COPY internal/redact/ ./internal/redact/
COPY sidecar/ ./sidecar/
# Declared late: a new version or commit reuses the layers above.
ARG VERSION=dev
ARG REVISION=unknown
# -w drops DWARF. No -s: the symbol table (about 0.85 MB) stays, so
# govulncheck sees which functions are linked in; without it every known
# vulnerability of the Go version counts. internal/sidecarbin reads this line.
RUN --mount=type=cache,target=/root/.cache/go-build \
    --mount=type=cache,target=/root/go/pkg/mod \
    GOPROXY="$GOPROXY" GOOS="$TARGETOS" GOARCH="$TARGETARCH" go build -trimpath -buildvcs=false \
        -ldflags "-w -X main.version=${VERSION} -X main.commit=${REVISION}" \
        -o /out/sidecar ./sidecar
# The final layers are the same bytes from the same commit and bases: the
# files they copy are dated 1970-01-01, not when they were built. (The
# image config's dates still differ: docs/pipeline.md.)
RUN mkdir -p /layer/usr/local/bin && cp /out/sidecar /layer/usr/local/bin/ && \
    find /layer -exec touch -t 197001010000.00 {} +

# Non-root user with a fixed UID/GID so task definitions and volume
# permissions can rely on it: the runtime base's own account files plus one
# line each, written on the builder's platform. (adduser in the final stage
# would run the target's busybox, under emulation for a foreign target.)
# A base file without a final newline gets one first, or the appended line
# would join its last entry. An account whose primary group is 1000 takes
# gid 1000 too, even when /etc/group does not list it.
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS accounts
COPY --from=runtime /etc/passwd /etc/group /out/etc/
RUN set -e; cd /out/etc; \
    if awk -F: '$1 == "sidecar" || $3 == 1000 || (FILENAME == "passwd" && $4 == 1000) { found = 1 } END { exit !found }' passwd group; then \
        echo "RUNTIME_IMAGE already has a sidecar account or uid/gid 1000:" >&2; \
        grep -E '^sidecar:|^[^:]*:[^:]*:1000:|^[^:]*:[^:]*:[^:]*:1000:' passwd group >&2; exit 1; \
    fi; \
    for f in passwd group; do if [ -n "$(tail -c 1 "$f")" ]; then echo >> "$f"; fi; done; \
    echo 'sidecar:x:1000:' >> group; \
    echo 'sidecar:x:1000:1000:Linux User,,,:/nonexistent:/sbin/nologin' >> passwd; \
    find /out -exec touch -t 197001010000.00 {} +

FROM runtime
# Busybox sh and nc stay: ECS Exec needs a shell.
COPY --from=accounts /out/ /
COPY --from=build /layer/ /
# Numeric, so orchestrators can verify "runs as non-root" without /etc/passwd.
USER 1000:1000
EXPOSE 8080
STOPSIGNAL SIGTERM
# GET /readyz on the admin port (127.0.0.1:$ADMIN_PORT); never touches the
# database; healthy in sleep mode too. Dagger also uses it, instead of the
# exposed port, to decide when the image run as a service is ready.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/sidecar", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/sidecar"]

ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
# source is empty, not the base's (Chainguard's, say): the pipeline sets it
# from the real repository, or removes it when that is unknown.
LABEL org.opencontainers.image.title="sidecar" \
      org.opencontainers.image.description="ECS sidecar: forwards a local port to an Aurora MySQL endpoint, or idles for ECS Exec" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source=""
