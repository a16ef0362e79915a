// Package imagetest proves the sidecar image: its tests build the real
// top-level Dockerfile with a real Docker daemon and run the image the way
// ECS does (host networking, read-only root, SIGTERM on stop).
//
// No registry is reachable on the CI machines, so the tests make stand-in
// base images locally with `docker import` from Debian packages (a static
// busybox rootfs, plus the machine's Go toolchain for the build stage; an
// arm64 busybox rootfs with `docker load` for the cross-build) and point the
// Dockerfile's GO_IMAGE and RUNTIME_IMAGE build args at them.
// Without a Docker daemon or busybox-static the tests skip (fail in CI).
package imagetest
