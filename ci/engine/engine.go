// Package engine reaches the pipeline's Dagger engine: it checks, in
// seconds, that what the engine needs is there (Probe), opens the run's
// one session (Connect), and watches an engine container the Dagger CLI
// starts in the local Docker, so one that dies fails the connect with its
// last log lines.
package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"dagger.io/dagger"

	"github.com/example/sidecar/ci/dockerload"
	"github.com/example/sidecar/internal/redact"
)

// Error means no Dagger engine could be reached. Its message is one
// line naming Dagger and what is missing.
type Error struct {
	Missing string // what is missing, and how to fix it
	Err     error  // underlying cause, for errors.Is/As; not printed
}

func (e *Error) Error() string { return "Dagger engine unavailable: " + e.Missing }
func (e *Error) Unwrap() error { return e.Err }

// probeTimeout bounds each reachability check: long enough for a loaded
// local daemon, short enough that "nothing there" fails within seconds.
const probeTimeout = 3 * time.Second

// Connect opens the run's one Dagger session, with engine progress on log.
// Before handing over to the SDK (which would otherwise download the CLI
// and try to start an engine container) it checks that what the engine
// needs is there, so a missing engine fails within seconds with one clear
// message instead of a stack of SDK errors.
//
// When the CLI starts the engine in the local Docker, Connect also watches
// that container: one that exits or cannot start fails the connect within
// seconds, with its last log lines, instead of after the CLI's 300 s wait.
func Connect(ctx context.Context, log io.Writer) (*dagger.Client, error) {
	return ConnectEnv(ctx, log, os.LookupEnv)
}

// ConnectEnv is Connect with the engine's variables read from env
// (DAGGER_SESSION_PORT, _EXPERIMENTAL_DAGGER_RUNNER_HOST, DOCKER_HOST, …)
// and extra SDK options; a dagger.WithConn among them is the session to
// use (tests: a recording session that env names).
func ConnectEnv(ctx context.Context, log io.Writer, env func(string) (string, bool), opts ...dagger.ClientOpt) (*dagger.Client, error) {
	if err := Probe(ctx, env); err != nil {
		return nil, err
	}
	// The session lives as long as connectCtx: it is cancelled only when
	// the connect is given up.
	connectCtx, giveUp := context.WithCancelCause(ctx)
	type result struct {
		c   *dagger.Client
		err error
	}
	done := make(chan result, 1)
	abandon := func(err error) {
		giveUp(err)
		go func() { // a session that still comes up is closed
			if res := <-done; res.c != nil {
				res.c.Close()
			}
		}()
	}
	sdkLog := &lineEnd{w: log, ended: true}
	cliOut := &cliOutput{said: make(chan struct{})}
	go func() {
		c, err := dagger.Connect(connectCtx, append(opts, dagger.WithLogOutput(io.MultiWriter(sdkLog, cliOut)))...)
		done <- result{c, err}
	}()
	var failed <-chan error
	if engineInDocker(env) {
		watchCtx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		failed = watchEngineStart(watchCtx, time.Now(), engineWatchPoll)
	}
	select {
	case res := <-done:
		if res.err != nil {
			err := cliOut.join(res.err, cliOutputWait)
			sdkLog.end() // the SDK's "Downloading CLI... " line has no newline
			return nil, &Error{Missing: explainConnect(err, env), Err: err}
		}
		return res.c, nil
	case err := <-failed:
		abandon(err)
		sdkLog.end()
		return nil, &Error{Missing: err.Error(), Err: err}
	}
}

// Probe checks that the engine env names is reachable.
func Probe(ctx context.Context, env func(string) (string, bool)) error {
	if port, ok := env("DAGGER_SESSION_PORT"); ok {
		// An existing session (`dagger run`): it must be listening.
		if err := dial(ctx, "tcp", "127.0.0.1:"+port); err != nil {
			return &Error{Missing: fmt.Sprintf("no session listening at DAGGER_SESSION_PORT=%s (unset it, or run inside `dagger run`): %v", port, err), Err: err}
		}
		return nil
	}
	runner, _ := env("_EXPERIMENTAL_DAGGER_RUNNER_HOST")
	shown := redact.Query(runner) // credentials and tokens in the address are never printed
	scheme, rest, _ := strings.Cut(runner, "://")
	switch scheme {
	case "tcp":
		// Not reachable either way: the CLI would dial a form TCPAddr
		// refuses as it is. config.Load refuses it first; this is for a
		// caller that did not load the configuration.
		addr, err := TCPAddr(runner)
		if err == nil {
			err = dial(ctx, "tcp", addr)
		}
		if err != nil {
			return &Error{Missing: fmt.Sprintf("remote engine _EXPERIMENTAL_DAGGER_RUNNER_HOST=%s is not reachable: %v", shown, err), Err: err}
		}
		return nil
	case "unix":
		if err := dial(ctx, "unix", rest); err != nil {
			return &Error{Missing: fmt.Sprintf("engine socket _EXPERIMENTAL_DAGGER_RUNNER_HOST=%s is not reachable: %s", shown, withoutQuery(err, rest)), Err: err}
		}
		return nil
	case "", "image", "docker-image":
		return probeDocker(ctx, env) // the CLI starts the engine as a Docker container
	default:
		return nil // container://, kube-pod://, ...: left to the CLI
	}
}

// TCPAddr is the address the Dagger CLI dials for the tcp:// runner host
// val. The CLI parses val as a URL, then dials what follows tcp:// as it
// is (engine/client/drivers/dial.go at v0.21.8, defaultDialer): so only
// host:port reaches an engine. It is the one parser of that form, for
// config.Load's check and for Probe's dial. Its errors never quote val,
// which may hold credentials or a token.
func TCPAddr(val string) (string, error) {
	rest, ok := strings.CutPrefix(val, "tcp://")
	if !ok {
		return "", errors.New("not a tcp:// address")
	}
	if strings.ContainsAny(rest, "@/?#") {
		return "", errors.New("tcp:// takes host:port only, without credentials, a path, a query or a fragment: the Dagger CLI would dial them as part of the address")
	}
	_, port, err := net.SplitHostPort(rest)
	switch _, perr := url.Parse(val); {
	case err == nil && !ValidPort(port):
		return "", errors.New("tcp:// wants host:port with a port number from 1 to 65535")
	case err != nil || perr != nil:
		return "", errors.New("tcp:// wants host:port")
	}
	return rest, nil
}

// ValidPort is a port number as a dial takes it: decimal digits, 1 to 65535.
func ValidPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && strings.Trim(s, "0123456789") == "" && n >= 1 && n <= 65535
}

// withoutQuery is err's text with the query or fragment of the dialed
// addr masked: Dagger dials the address whole (engine/client/drivers/dial.go,
// defaultDialer), so the probe does too, and the dial error quotes it.
func withoutQuery(err error, addr string) string {
	msg := err.Error()
	if i := strings.IndexAny(addr, "?#"); i >= 0 && i+1 < len(addr) {
		msg = strings.ReplaceAll(msg, addr[i+1:], "xxxxx")
	}
	return msg
}

// probeDocker checks what Dagger itself checks before starting the engine
// in Docker (engine/client/drivers/docker.go, docker.Available at v0.21.8):
// a docker CLI on PATH, and `docker version` succeeding (dockerload.Ping).
// Asking the CLI means DOCKER_HOST, DOCKER_CONTEXT and the current context
// in the Docker config are honoured exactly as Dagger will (Colima,
// OrbStack, Docker Desktop without /var/run/docker.sock).
func probeDocker(ctx context.Context, env func(string) (string, bool)) error {
	if _, err := exec.LookPath("docker"); err != nil {
		for _, alt := range []string{"podman", "nerdctl", "finch"} {
			if _, err := exec.LookPath(alt); err == nil {
				return nil // Dagger can use these; it will report its own errors
			}
		}
		return &Error{Missing: "Docker is not installed (no docker on PATH) to start the engine: install Docker, or set _EXPERIMENTAL_DAGGER_RUNNER_HOST to a remote engine", Err: err}
	}
	if err := dockerload.Ping(ctx); err != nil {
		return &Error{Missing: fmt.Sprintf("the Docker daemon is not reachable through %s to start the engine (%v): start Docker, pick a working context with `docker context use`, or set _EXPERIMENTAL_DAGGER_RUNNER_HOST to a remote engine",
			DockerTarget(env), err), Err: err}
	}
	return nil
}

// DockerTarget names where the docker CLI looks for its daemon, in the
// CLI's order: DOCKER_HOST, then DOCKER_CONTEXT, then the config's
// currentContext, else the default context. A DOCKER_HOST that is set,
// even blank, picks the default context (docker/cli cli/command/cli.go,
// resolveContextName), and is trimmed, blank meaning the default socket
// (opts/hosts.go, ParseHost).
func DockerTarget(lookup func(string) (string, bool)) string {
	if h, ok := lookup("DOCKER_HOST"); ok && h != "" {
		if h = strings.TrimSpace(h); h == "" {
			return defaultDockerContext
		}
		return "DOCKER_HOST=" + redact.Query(h) // a token in its query too
	}
	cfgDir, ok := lookup("DOCKER_CONFIG")
	if !ok || cfgDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "~"
		}
		cfgDir = filepath.Join(home, ".docker")
	}
	name, from := "", ""
	if c, ok := lookup("DOCKER_CONTEXT"); ok && c != "" {
		name, from = c, "DOCKER_CONTEXT"
	} else if b, err := os.ReadFile(filepath.Join(cfgDir, "config.json")); err == nil {
		var cfg struct {
			CurrentContext string `json:"currentContext"`
		}
		if json.Unmarshal(b, &cfg) == nil && cfg.CurrentContext != "" {
			name, from = cfg.CurrentContext, "current context in "+filepath.Join(cfgDir, "config.json")
		}
	}
	if name == "" || name == "default" {
		return defaultDockerContext
	}
	desc := fmt.Sprintf("Docker context %q (%s", name, from)
	if ep := contextEndpoint(cfgDir, name); ep != "" {
		desc += ", endpoint " + ep
	}
	return desc + ")"
}

const defaultDockerContext = "the default Docker context (unix:///var/run/docker.sock)"

// contextEndpoint reads a context's Docker endpoint from the CLI's context
// store (contexts/meta/<sha256 of the name>/meta.json); "" if unknown.
func contextEndpoint(cfgDir, name string) string {
	sum := sha256.Sum256([]byte(name))
	b, err := os.ReadFile(filepath.Join(cfgDir, "contexts", "meta", hex.EncodeToString(sum[:]), "meta.json"))
	if err != nil {
		return ""
	}
	var meta struct {
		Endpoints map[string]struct {
			Host string `json:"Host"`
		} `json:"Endpoints"`
	}
	if json.Unmarshal(b, &meta) != nil {
		return ""
	}
	return meta.Endpoints["docker"].Host
}

func dial(ctx context.Context, network, addr string) error {
	d := net.Dialer{Timeout: probeTimeout}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// explainConnect turns the SDK's connect error into what is missing.
func explainConnect(err error, env func(string) (string, bool)) string {
	msg := err.Error()
	first, _, _ := strings.Cut(msg, "\n")
	bin, binSet := env("_EXPERIMENTAL_DAGGER_CLI_BIN")
	var notRun *exec.Error
	switch {
	case strings.Contains(msg, "download checksums") || strings.Contains(msg, "dl.dagger.io"):
		return "the Dagger CLI is not cached and could not be downloaded from dl.dagger.io (offline or blocked?): " +
			"allow access, or set _EXPERIMENTAL_DAGGER_CLI_BIN to an installed dagger binary — " + first
	case binSet && errors.As(err, &notRun):
		// Only the SDK's exec.LookPath of that variable's CLI
		// (dagger.io/dagger engineconn/cli.go, FromLocalCLI) fails so; a
		// CLI that ran reports its own errors, in the session's.
		return fmt.Sprintf("the Dagger CLI named by _EXPERIMENTAL_DAGGER_CLI_BIN=%s cannot be run (%v): "+
			"point it at an installed dagger v0.21.8 binary, or unset it so the SDK downloads one", bin, notRun.Err)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return "the engine session did not start in time — " + first
	}
	return "could not start an engine session — " + first
}

// cliOutputWait bounds the wait for the output of a CLI that ended
// before it started a session. It arrives within milliseconds; the bound
// only matters for a CLI that said nothing.
const cliOutputWait = time.Second

// sdkProgress tells the SDK's own writes to its log output
// (dagger.io/dagger v0.21.8 engineconn/session.go startCLISession and
// cli.go FromDownloadedCLI), each one Write, from the CLI's stderr.
func sdkProgress(p []byte) bool {
	switch string(p) {
	case "Creating new Engine session... ", "OK!\nEstablishing connection to Engine... ", "OK!\n", "Downloading CLI... ":
		return true
	}
	return false
}

// cliOutput keeps the start of what the Dagger CLI wrote to stderr. The
// SDK appends that output to its "failed to read session params: EOF"
// only if its stderr copy wins a race with its stdout read
// (engineconn/session.go startCLISession), so under load the reason a
// CLI gave up (no engine socket, a bad flag) could go missing.
type cliOutput struct {
	mu   sync.Mutex
	text []byte
	said chan struct{} // closed at the CLI's first output
}

// cliOutputKept bounds what is kept: explainConnect shows the first line.
const cliOutputKept = 4 << 10

func (c *cliOutput) Write(p []byte) (int, error) {
	if sdkProgress(p) {
		return len(p), nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.text) == 0 && len(p) > 0 {
		close(c.said)
	}
	c.text = append(c.text, p[:min(len(p), cliOutputKept-len(c.text))]...)
	return len(p), nil
}

// join is err with the CLI's output added when the SDK lost it: a
// session's stdout that ended (io.EOF) with no output in the error. It
// waits up to wait for output still in the SDK's copy.
func (c *cliOutput) join(err error, wait time.Duration) error {
	if !errors.Is(err, io.EOF) || !strings.HasSuffix(err.Error(), io.EOF.Error()) {
		return err
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-c.said:
	case <-t.C:
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(c.text)))
}

// lineEnd passes writes through and remembers whether the last one ended
// a line, so a message after the SDK's output starts on a line of its own
// without a blank line when the SDK wrote nothing.
type lineEnd struct {
	mu    sync.Mutex
	w     io.Writer
	ended bool
}

func (l *lineEnd) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(p) > 0 {
		l.ended = p[len(p)-1] == '\n'
	}
	return l.w.Write(p)
}

// end writes a newline unless the last write ended its line.
func (l *lineEnd) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ended {
		fmt.Fprintln(l.w)
		l.ended = true
	}
}
