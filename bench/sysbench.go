//go:build linux

package main

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// sysbenchResult is what the benchmark takes from one `sysbench ... run`.
type sysbenchResult struct {
	Threads   int
	Queries   int64   // "queries:" total
	QPS       float64 // "queries: N (X per sec.)"
	P99       time.Duration
	TotalTime time.Duration // "total time:"
	Errors    int64         // "ignored errors:"
	Reconnect int64         // "reconnects:"
	// ClientCPU is the client's own CPU time over the whole run (sysbench's
	// rusage); zero for the Go client, which shares the bench's process.
	ClientCPU time.Duration
	// ServerCPU is mariadbd's CPU time over the whole run, read from /proc.
	ServerCPU time.Duration
	// Elapsed is the wall time between the two readings of ServerCPU.
	Elapsed time.Duration
}

// parseSysbench parses the text report of sysbench 1.0 `run` with
// --percentile=99. It fails on FATAL lines and on missing figures rather
// than returning zeros.
func parseSysbench(out string) (sysbenchResult, error) {
	var r sysbenchResult
	var fatal []string
	have := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "FATAL:") {
			fatal = append(fatal, line)
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var err error
		switch key {
		case "Number of threads":
			r.Threads, err = strconv.Atoi(val)
		case "queries":
			// "7579   (3785.54 per sec.)"; the "queries performed:" header has no value.
			if val == "" {
				continue
			}
			r.Queries, r.QPS, err = countAndRate(val)
		case "ignored errors":
			r.Errors, _, err = countAndRate(val)
		case "reconnects":
			r.Reconnect, _, err = countAndRate(val)
		case "total time":
			r.TotalTime, err = time.ParseDuration(val)
		case "99th percentile":
			var ms float64
			ms, err = strconv.ParseFloat(val, 64)
			r.P99 = time.Duration(ms * float64(time.Millisecond))
		default:
			continue
		}
		if err != nil {
			return r, fmt.Errorf("sysbench output: %q: %w", line, err)
		}
		have[key] = true
	}
	if len(fatal) > 0 {
		return r, fmt.Errorf("sysbench failed: %s", strings.Join(fatal, "; "))
	}
	var missing []string
	for _, k := range []string{"queries", "total time", "99th percentile"} {
		if !have[k] {
			missing = append(missing, fmt.Sprintf("%q", k))
		}
	}
	if len(missing) > 0 {
		return r, fmt.Errorf("sysbench output lacks %s (was it run with --percentile=99?)", strings.Join(missing, ", "))
	}
	if r.Queries == 0 {
		return r, errors.New("sysbench ran no queries")
	}
	return r, nil
}

// countAndRate parses "7579   (3785.54 per sec.)".
func countAndRate(val string) (int64, float64, error) {
	f := strings.Fields(val)
	if len(f) != 4 || !strings.HasPrefix(f[1], "(") || f[2] != "per" || f[3] != "sec.)" {
		return 0, 0, fmt.Errorf("want \"N (X per sec.)\", got %q", val)
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, 0, err
	}
	rate, err := strconv.ParseFloat(strings.TrimPrefix(f[1], "("), 64)
	if err != nil {
		return 0, 0, err
	}
	return n, rate, nil
}
