package loglimit

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
)

func TestLimiter(t *testing.T) {
	t.Parallel()
	const every = 100 * time.Millisecond
	for _, tc := range []struct {
		name   string
		events int
		close  bool          // Close right after the events, before the summary is due
		wait   time.Duration // then wait this long
		want   []string      // msg and, for the summary, not_logged and latest n
	}{
		{"one event, one line", 1, false, 3 * every, []string{"full n=0"}},
		{"a burst, the first in full and a summary of the rest", 5, false, 3 * every, []string{"full n=0", "summary not_logged=4 n=4"}},
		{"close writes the pending summary at once", 5, true, 0, []string{"full n=0", "summary not_logged=4 n=4"}},
		{"close with nothing pending writes nothing", 1, true, 0, []string{"full n=0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out testkit.LockedBuffer
			l := New(slog.New(slog.NewJSONHandler(&out, nil)), slog.LevelWarn, "full", "summary")
			l.every = every
			for i := range tc.events {
				l.Event("n", i)
			}
			if tc.close {
				l.Close()
			}
			time.Sleep(tc.wait)
			var got []string
			for _, m := range testkit.JSONLogLines(out.String(), "") {
				s := m["msg"].(string)
				if n, ok := m["not_logged"]; ok {
					s += " not_logged=" + jsonNum(n)
				}
				s += " n=" + jsonNum(m["n"])
				if m["level"] != "WARN" {
					t.Errorf("level %v, want WARN", m["level"])
				}
				got = append(got, s)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("lines %q, want %q", got, tc.want)
			}
		})
	}
}

// After a quiet period the next event is logged in full again.
func TestLimiterFullAgainAfterQuiet(t *testing.T) {
	t.Parallel()
	var out testkit.LockedBuffer
	l := New(slog.New(slog.NewJSONHandler(&out, nil)), slog.LevelError, "full", "summary")
	l.every = 50 * time.Millisecond
	l.Event("n", 0)
	time.Sleep(3 * l.every)
	l.Event("n", 1)
	got := testkit.JSONLogLines(out.String(), "")
	if len(got) != 2 || got[0]["msg"] != "full" || got[1]["msg"] != "full" {
		t.Errorf("lines %v, want two full lines", got)
	}
	if l.Msg() != "full" {
		t.Errorf("Msg() = %q", l.Msg())
	}
}

func jsonNum(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
