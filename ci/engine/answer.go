package engine

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"dagger.io/dagger"

	"github.com/example/sidecar/ci/progress"
	"github.com/example/sidecar/internal/redact"
)

// AnswerBound bounds the wait for the session's first answer (the
// engine's platform). Engine start-up is over by then: the Dagger CLI
// hands the SDK its session only once the engine has taken it
// (cmd/dagger/session.go, EngineSession: the connect params are written
// inside withEngine), and `dagger run` starts its command after its own.
// What is left before the first answer is the engine's: it waits up to
// 10 s for the client's session attachables (engine/server/session.go,
// initializeDaggerClient, getClientCaller), then loads the workspace and
// builds the schema (serveQuery), seconds on a fresh engine. A minute
// leaves a loaded machine room; a port that accepts but never answers
// HTTP (a stale DAGGER_SESSION_PORT held by something else) then fails
// in a minute instead of never.
const AnswerBound = time.Minute

// AnswerProgress is how often the wait for that answer says it waits.
const AnswerProgress = 5 * time.Second

// Wait paces the wait for the session's first answer: Report gets a line
// every Every until the answer, which is given up after Bound
// (AnswerProgress and AnswerBound when zero).
type Wait struct {
	Report       func(line string)
	Bound, Every time.Duration
}

// Platform asks the session for the engine's platform: the run's first
// query, so also where a session that does not answer is found. A
// session that answers nothing within the bound, or refuses the token,
// is an *Error; any other failure is the SDK's error.
func Platform(ctx context.Context, c *dagger.Client, env func(string) (string, bool), w Wait) (dagger.Platform, error) {
	bound, every := cmp.Or(w.Bound, AnswerBound), cmp.Or(w.Every, AnswerProgress)
	what := sessionName(env)
	var p dagger.Platform
	timedOut, err := progress.Bounded(ctx, bound, every, func(waited time.Duration) {
		w.Report(fmt.Sprintf("still waiting for %s to answer its first query (the engine's platform): %s so far; giving up after %s",
			what, waited.Round(time.Second), bound))
	}, func(ctx context.Context) (err error) {
		p, err = c.DefaultPlatform(ctx)
		return err
	})
	switch {
	case err == nil:
		return p, nil
	case timedOut:
		return "", &Error{Missing: fmt.Sprintf("%s accepted the connection but did not answer its first query (the engine's platform) within %s: %s",
			what, bound, silentHint(env)), Err: err}
	case strings.Contains(err.Error(), "401"):
		// A `dagger run` session answers a wrong token with 401
		// (engine/client/client.go, Client.ServeHTTP, at v0.21.8).
		if port, ok := env("DAGGER_SESSION_PORT"); ok {
			return "", &Error{Missing: fmt.Sprintf("the session at DAGGER_SESSION_PORT=%s refused DAGGER_SESSION_TOKEN (401 Unauthorized): "+
				"run inside the dagger run that set them, or unset both so the pipeline opens its own session", port), Err: err}
		}
	}
	return "", err
}

// sessionName names the session env leads the SDK to.
func sessionName(env func(string) (string, bool)) string {
	if port, ok := env("DAGGER_SESSION_PORT"); ok {
		return "the session at DAGGER_SESSION_PORT=" + port
	}
	if runner, _ := env("_EXPERIMENTAL_DAGGER_RUNNER_HOST"); runner != "" {
		return "the engine at _EXPERIMENTAL_DAGGER_RUNNER_HOST=" + redact.Query(runner)
	}
	return "the engine session the Dagger CLI opened"
}

// silentHint says what to do about a session that does not answer.
func silentHint(env func(string) (string, bool)) string {
	if _, ok := env("DAGGER_SESSION_PORT"); ok {
		return "something other than a Dagger session may hold that port now (the dagger run that set it has ended?); " +
			"run inside a live dagger run, or unset DAGGER_SESSION_PORT and DAGGER_SESSION_TOKEN so the pipeline opens its own session"
	}
	return "the engine is stuck or overloaded; look at its log (docker logs of the dagger-engine-… container, or the remote engine's) or restart it"
}
