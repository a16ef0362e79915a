package admin

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// Prometheus's own checker accepts /metrics as a whole, in both modes.
func TestMetricsPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Unavailable(t, "promtool not found (apt-get install prometheus)")
	}
	snap := proxy.Snapshot{Forwards: []proxy.ForwardSnapshot{{
		Listen: "8080", Target: "writer.example:3306", Active: 1, Total: 2,
		DialFailures: []proxy.Count{{Label: "refused", Value: 4}}, ConnectionsClosed: []proxy.Count{{Label: "eof", Value: 1}},
	}}}
	for name, cfg := range map[string]Config{
		"proxy": {Mode: "proxy", Version: "1.2.3", Commit: "abc", Snapshot: func() proxy.Snapshot { return snap }},
		"sleep": {Mode: "sleep", Version: "1.2.3", Commit: "abc"},
	} {
		_, body := get(t, Handler(cfg), "/metrics")
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("%s mode: promtool check metrics: %v\n%s\nmetrics:\n%s", name, err, out, body)
		}
	}
}

// The standard process and Go metrics are there, with believable values.
func TestStandardProcessAndGoMetrics(t *testing.T) {
	_, body := get(t, Handler(Config{Mode: "sleep"}), "/metrics")
	value := func(name string) float64 {
		m := regexp.MustCompile(`(?m)^` + name + `(?:\{[^}]*\})? (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Errorf("no %s in:\n%s", name, body)
			return 0
		}
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Errorf("%s = %q: %v", name, m[1], err)
		}
		return v
	}
	now := float64(time.Now().Unix())
	for _, c := range []struct {
		name     string
		min, max float64
	}{
		{"process_resident_memory_bytes", 1 << 20, 1 << 34},
		{"process_virtual_memory_bytes", 1 << 20, 1 << 50},
		{"process_cpu_seconds_total", 0, 1e6},
		{"process_start_time_seconds", now - 24*3600, now + 1},
		{"go_goroutines", 1, 1e6},
		{"go_info", 1, 1},
		{"go_memstats_alloc_bytes", 1, 1 << 34},
		{"go_memstats_sys_bytes", 1 << 20, 1 << 36},
		{"go_memstats_heap_objects", 1, 1e9},
		{"go_memstats_mallocs_total", 1, 1e12},
	} {
		if v := value(c.name); v < c.min || v > c.max {
			t.Errorf("%s = %v, want between %v and %v", c.name, v, c.min, c.max)
		}
	}
}
