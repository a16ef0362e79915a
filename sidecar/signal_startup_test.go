package main

import (
	"context"
	"io"
	"testing"

	"github.com/example/sidecar/internal/testkit"
)

// A SIGTERM during start-up (ECS stopping a task that is still starting)
// is a stop, not a failure: exit 0 with "stopped", and no "not started"
// line blaming a listen address.
func TestSignalDuringStartUp(t *testing.T) {
	for _, mode := range []string{"proxy", "sleep"} {
		t.Run(mode, func(t *testing.T) {
			env, _ := echoForward(t)
			env["MODE"] = mode
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // the signal came before the listeners opened
			stderr := &testkit.LockedBuffer{}
			code := run(ctx, nil, environ(env), io.Discard, stderr)
			var msgs []any
			for _, l := range jsonLines(t, stderr.String()) {
				msgs = append(msgs, l["msg"])
				if l["level"] == "ERROR" {
					t.Errorf("an ERROR line for a signal during start-up: %v", l)
				}
			}
			if code != 0 || len(msgs) == 0 || msgs[len(msgs)-1] != "stopped" {
				t.Errorf("exit %d, lines %q; want exit 0 ending with \"stopped\"", code, msgs)
			}
		})
	}
}
