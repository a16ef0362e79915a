// Command sidecar forwards an ECS task's local port to a database endpoint
// (MODE=proxy), or idles with healthy health checks so operators can use ECS
// Exec (MODE=sleep). Configuration comes from the environment; see README.
//
//	sidecar               run per MODE
//	sidecar healthcheck   exit 0 if the running sidecar is ready (never touches the target)
//	sidecar version       print version and commit
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Set at build time: -ldflags "-X main.version=1.2.3 -X main.commit=abc123".
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	// A write to a closed pipe on stderr would kill the process, and every
	// connection with it; with SIGPIPE ignored the log line is lost instead.
	signal.Ignore(syscall.SIGPIPE)
	go watchSignals(signals, cancel, os.Exit, time.Now)
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	cancel()
	os.Exit(code)
}

// repeatWindow: the first signal again this soon is that one delivered
// twice, not an operator's second (GNU timeout signals the command, then
// its process group). Ctrl-C pressed twice by hand is further apart.
const repeatWindow = 100 * time.Millisecond

// watchSignals starts the drain on the first SIGTERM or SIGINT and ends the
// process at once on a second one (an operator pressing Ctrl-C twice), with
// the status a shell gives a process killed by that signal (128 + its
// number). It exits itself rather than restoring the default action: a
// process started with the signal ignored (a background job of a script,
// for SIGINT) inherits SIG_IGN, and restoring that would ignore the second
// one.
func watchSignals(signals <-chan os.Signal, drain context.CancelFunc, exit func(int), now func() time.Time) {
	first, ok := <-signals
	if !ok {
		return
	}
	at := now()
	drain()
	for sig := range signals {
		if sig == first && now().Sub(at) < repeatWindow {
			continue
		}
		if s, ok := sig.(syscall.Signal); ok {
			exit(128 + int(s))
		} else {
			exit(1)
		}
		return
	}
}
