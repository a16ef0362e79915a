package ci

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"dagger.io/dagger"
)

// EngineError means no Dagger engine could be reached. Its message is one
// line naming Dagger and what is missing.
type EngineError struct {
	Missing string // what is missing, and how to fix it
	Err     error  // underlying cause, for errors.Is/As; not printed
}

func (e *EngineError) Error() string { return "Dagger engine unavailable: " + e.Missing }
func (e *EngineError) Unwrap() error { return e.Err }

// probeTimeout bounds each reachability check: long enough for a loaded
// local daemon, short enough that "nothing there" fails within seconds.
const probeTimeout = 3 * time.Second

// Connect opens the run's one Dagger session, with engine progress on log.
// Before handing over to the SDK (which would otherwise download the CLI
// and try to start an engine container) it checks that what the engine
// needs is there, so a missing engine fails within seconds with one clear
// message instead of a stack of SDK errors.
func Connect(ctx context.Context, log io.Writer) (*dagger.Client, error) {
	if err := probeEngine(ctx); err != nil {
		return nil, err
	}
	c, err := dagger.Connect(ctx, dagger.WithLogOutput(log))
	if err != nil {
		fmt.Fprintln(log) // end the SDK's unterminated "Downloading CLI... " line
		return nil, &EngineError{Missing: explainConnect(err), Err: err}
	}
	return c, nil
}

func probeEngine(ctx context.Context) error {
	if port, ok := os.LookupEnv("DAGGER_SESSION_PORT"); ok {
		// An existing session (`dagger run`): it must be listening.
		if err := dial(ctx, "tcp", "127.0.0.1:"+port); err != nil {
			return &EngineError{Missing: fmt.Sprintf("no session listening at DAGGER_SESSION_PORT=%s (unset it, or run inside `dagger run`): %v", port, err), Err: err}
		}
		return nil
	}
	runner := os.Getenv("_EXPERIMENTAL_DAGGER_RUNNER_HOST")
	scheme, rest, _ := strings.Cut(runner, "://")
	switch scheme {
	case "tcp":
		if err := dial(ctx, "tcp", strings.TrimSuffix(rest, "/")); err != nil {
			return &EngineError{Missing: fmt.Sprintf("remote engine _EXPERIMENTAL_DAGGER_RUNNER_HOST=%s is not reachable: %v", runner, err), Err: err}
		}
		return nil
	case "unix":
		if err := dial(ctx, "unix", rest); err != nil {
			return &EngineError{Missing: fmt.Sprintf("engine socket _EXPERIMENTAL_DAGGER_RUNNER_HOST=%s is not reachable: %v", runner, err), Err: err}
		}
		return nil
	case "", "image", "docker-image":
		return probeDocker(ctx) // the CLI starts the engine as a Docker container
	default:
		return nil // container://, kube-pod://, ...: left to the CLI
	}
}

// probeDocker checks that a container runtime can start the engine: the
// docker CLI is installed and its daemon answers /_ping.
func probeDocker(ctx context.Context) error {
	if _, err := exec.LookPath("docker"); err != nil {
		for _, alt := range []string{"podman", "nerdctl", "finch"} {
			if _, err := exec.LookPath(alt); err == nil {
				return nil // Dagger can use these; it will report its own errors
			}
		}
		return &EngineError{Missing: "Docker is not installed (no docker on PATH) to start the engine: install Docker, or set _EXPERIMENTAL_DAGGER_RUNNER_HOST to a remote engine", Err: err}
	}
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = "unix:///var/run/docker.sock"
	}
	scheme, addr, _ := strings.Cut(host, "://")
	var err error
	switch scheme {
	case "unix":
		err = ping(ctx, "unix", addr)
	case "tcp":
		err = dial(ctx, "tcp", addr) // may be TLS (DOCKER_TLS_VERIFY): reachability only
	default:
		return nil // ssh://, npipe://: left to the CLI
	}
	if err != nil {
		return &EngineError{Missing: fmt.Sprintf("the Docker daemon is not reachable at %s to start the engine (start Docker, or set _EXPERIMENTAL_DAGGER_RUNNER_HOST to a remote engine): %v", host, err), Err: err}
	}
	return nil
}

func dial(ctx context.Context, network, addr string) error {
	d := net.Dialer{Timeout: probeTimeout}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// ping sends GET /_ping to a Docker API endpoint.
func ping(ctx context.Context, network, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, "GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return fmt.Errorf("no Docker API answer: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /_ping: %s", resp.Status)
	}
	return nil
}

// explainConnect turns the SDK's connect error into what is missing.
func explainConnect(err error) string {
	msg := err.Error()
	first, _, _ := strings.Cut(msg, "\n")
	switch {
	case strings.Contains(msg, "download checksums") || strings.Contains(msg, "dl.dagger.io"):
		return "the Dagger CLI is not cached and could not be downloaded from dl.dagger.io (offline or blocked?): " +
			"allow access, or set _EXPERIMENTAL_DAGGER_CLI_BIN to an installed dagger binary — " + first
	case errors.Is(err, exec.ErrNotFound) || strings.Contains(msg, "executable file not found") || strings.Contains(msg, "no such file"):
		return "the Dagger CLI named by _EXPERIMENTAL_DAGGER_CLI_BIN was not found — " + first
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return "the engine session did not start in time — " + first
	}
	return "could not start an engine session — " + first
}
