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
)

// Set at build time: -ldflags "-X main.version=1.2.3 -X main.commit=abc123".
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	go restoreSignalsOnce(ctx, stop)
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// restoreSignalsOnce gives SIGTERM and SIGINT their default action back
// after the first one: that one starts the drain, a second one ends the
// process at once (an operator pressing Ctrl-C twice).
func restoreSignalsOnce(ctx context.Context, stop context.CancelFunc) {
	<-ctx.Done()
	stop()
}
