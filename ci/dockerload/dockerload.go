// Package dockerload loads an image into the local Docker from the client
// side: one platform's image of an OCI layout (what the pipeline exports)
// is streamed as a `docker save` archive into `docker load`, the Docker
// client's image load (Engine API POST /images/load). It works whatever
// runs the Dagger engine: Container.ExportImage needs a driver with an
// image loader, which unix:// and tcp:// runner hosts lack (engine
// engine/client/drivers/dial.go). The docker CLI finds the daemon as it
// always does (DOCKER_HOST, DOCKER_CONTEXT, the current context).
package dockerload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/example/sidecar/ci/imagefiles"
)

// PingTimeout bounds Ping: a VM-backed daemon (Colima, Docker Desktop)
// may take a few seconds to answer; nothing there fails within it.
const PingTimeout = 15 * time.Second

// Ping checks that the docker CLI reaches a daemon (`docker version`),
// within PingTimeout or ctx's deadline, whichever is sooner. Its error
// says what failed, in one line.
func Ping(ctx context.Context) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("no docker on PATH: %w", err)
	}
	within := PingTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < within {
		// To 10 ms, so that a caller's 1s still reads 1s after the
		// moments spent before this call.
		within = time.Until(d).Round(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}")
	cmd.WaitDelay = time.Second // a stuck CLI's children must not hold us
	out, err := cmd.CombinedOutput()
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("`docker version`: no answer within %s", within)
	}
	detail := LastLine(string(out))
	if detail == "" {
		detail = err.Error()
	}
	return fmt.Errorf("`docker version`: %s", detail)
}

// Load loads platform's image of idx into the local Docker as ref.
func Load(ctx context.Context, idx v1.ImageIndex, platform, ref string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image name %q: %w", ref, err)
	}
	img, err := imagefiles.Image(idx, platform)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		err := tarball.Write(tag, img, pw)
		pw.CloseWithError(err)
		written <- err
	}()
	cmd := exec.CommandContext(ctx, "docker", "load")
	cmd.WaitDelay = time.Second // a stuck CLI's children must not hold us
	cmd.Stdin = pr
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	loadEnded := errors.New("docker load ended")
	pr.CloseWithError(loadEnded) // unblock the writer
	werr := <-written
	if err != nil && ctx.Err() != nil {
		// The kill's own words (signal: killed, a cut archive) would hide
		// that the run was stopped. A docker that exited 0 was not
		// stopped: its output says whether the image loaded.
		return fmt.Errorf("`docker load` of %s interrupted before it reported the image loaded: %w", tag, ctx.Err())
	}
	// An image that could not be read is the cause: docker load only saw
	// its archive cut off, and says so in its own terms.
	if werr != nil && !errors.Is(werr, loadEnded) {
		return fmt.Errorf("read the image to load: %w (`docker load`: %s)", werr, LastLine(out.String()))
	}
	if err != nil {
		return fmt.Errorf("`docker load`: %s (%w)", LastLine(out.String()), err)
	}
	if !reported(out.String(), tag) {
		return fmt.Errorf("`docker load` did not report %s: %s", tag, strings.TrimSpace(out.String()))
	}
	return nil
}

// reported reports whether `docker load`'s output names tag as loaded.
// Docker prints each tag in its familiar form (moby
// image/tarexport/load.go, tarexporter.Load: reference.FamiliarString),
// docker.io/team/sidecar:dev as team/sidecar:dev, so the names are
// compared normalized, whole.
func reported(out string, tag name.Tag) bool {
	for _, line := range strings.Split(out, "\n") {
		got, ok := strings.CutPrefix(strings.TrimSpace(line), "Loaded image: ")
		if !ok {
			continue
		}
		if t, err := name.NewTag(got); err == nil && t.Name() == tag.Name() {
			return true
		}
	}
	return false
}

// LastLine is the last non-empty line of s, trimmed.
func LastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
