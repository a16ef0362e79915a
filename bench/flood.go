//go:build linux

package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/example/sidecar/internal/testkit"
)

// floodConfig is the connection-flood workload (issue 18): sequential
// connect-then-close cycles against MariaDB, every second one closed with
// a reset, as an app's pool reconnecting after a failover or a leftover
// `nc -z` check produces them.
type floodConfig struct {
	cycles  int           // connect/close cycles per flood
	bursts  int           // floods per contestant
	maxConn int           // MAX_CONNECTIONS given to the sidecar
	idle    time.Duration // quiet time after the last flood before RSS is read again
	socat   int           // cycles for socat, in one flood: it forks per connection
}

func floodFlags(fs *flag.FlagSet, c *floodConfig) {
	fs.IntVar(&c.cycles, "flood-cycles", 10000, "flood workload: sequential connect/close cycles per flood (half closed with RST)")
	fs.IntVar(&c.bursts, "flood-bursts", 10, "flood workload: floods per contestant")
	fs.IntVar(&c.maxConn, "flood-max-connections", 3000, "flood workload: the sidecar's MAX_CONNECTIONS")
	fs.IntVar(&c.socat, "flood-socat-cycles", 1000, "flood workload: socat gets one flood of this many cycles (it forks a process per connection, and its listen backlog of 5 overflows: 2,000 cycles take about 5 minutes)")
	fs.DurationVar(&c.idle, "flood-idle", 60*time.Second, "flood workload: quiet time after the last flood before RSS and descriptors are read again")
}

func (c floodConfig) check() []error {
	var errs []error
	if c.cycles < 1 || c.cycles > 1_000_000 {
		errs = append(errs, fmt.Errorf("-flood-cycles %d: want 1 to 1000000", c.cycles))
	}
	if c.bursts < 1 || c.bursts > 100 {
		errs = append(errs, fmt.Errorf("-flood-bursts %d: want 1 to 100", c.bursts))
	}
	if c.maxConn < 1 || c.maxConn > 1<<20 {
		errs = append(errs, fmt.Errorf("-flood-max-connections %d: want 1 to 1048576", c.maxConn))
	}
	if c.socat < 1 || c.socat > 1_000_000 {
		errs = append(errs, fmt.Errorf("-flood-socat-cycles %d: want 1 to 1000000", c.socat))
	}
	if c.idle < 0 || c.idle > 10*time.Minute {
		errs = append(errs, fmt.Errorf("-flood-idle %v: want 0 up to 10m", c.idle))
	}
	return errs
}

func (r *runner) floodMetrics() []metric {
	f := r.cfg.flood
	return []metric{
		{key: "flood.rejected", label: fmt.Sprintf("rejected over %d floods of %d connect/close, MAX_CONNECTIONS=%d", f.bursts, f.cycles, f.maxConn), unit: "conns", forwarder: true},
		{key: "flood.aborted", label: fmt.Sprintf("server Aborted_connects per flood (socat: per %d cycles)", min(f.cycles, f.socat)), unit: "aborts", prec: 0},
		{key: "flood.aborted.per", label: "server Aborted_connects per departed client", unit: "aborts", prec: 3},
		{key: "flood.secs", label: "time per flood", unit: "s", prec: 2},
		{key: "flood.rss.0", label: "forwarder RSS before the floods", unit: "MiB", prec: 1, forwarder: true},
		{key: "flood.rss.max", label: fmt.Sprintf("forwarder RSS, highest after each of %d floods", f.bursts), unit: "MiB", prec: 1, forwarder: true},
		{key: "flood.rss.idle", label: fmt.Sprintf("forwarder RSS %v after the last flood", f.idle), unit: "MiB", prec: 1, forwarder: true},
		{key: "flood.fds.0", label: "forwarder descriptors before the floods", unit: "fds", forwarder: true},
		{key: "flood.fds.max", label: "forwarder descriptors, highest after a flood", unit: "fds", forwarder: true},
		{key: "flood.fds.idle", label: fmt.Sprintf("forwarder descriptors %v after the last flood", f.idle), unit: "fds", forwarder: true},
	}
}

// floodWorkload floods each contestant in front of MariaDB, each in a
// fresh process, once per run.
func (r *runner) floodWorkload(ctx context.Context, order []contestant) error {
	target := r.db.Port
	for _, c := range order {
		if err := r.floodOne(ctx, c, target); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.fail(1, c, "flood", err)
		}
	}
	return nil
}

func (r *runner) floodOne(ctx context.Context, c contestant, target int) error {
	f := r.cfg.flood
	if c.kind == kindSocat {
		f.bursts, f.cycles = 1, min(f.cycles, f.socat)
	}
	admin := 0
	if c.kind == kindSidecar {
		port, err := testkit.LoopbackPort()
		if err != nil {
			return err
		}
		admin = port
		c.env = append(append([]string(nil), c.env...), "MAX_CONNECTIONS="+strconv.Itoa(f.maxConn), "ADMIN_PORT="+strconv.Itoa(port))
	}
	l, err := r.launch(ctx, c, target)
	if err != nil {
		return err
	}
	defer r.shutdown(l)
	m := map[string]float64{}
	usage := func(key string) error {
		if l.proc == nil {
			return nil
		}
		u, err := procTree("/proc", l.proc.pid(), false)
		if err != nil {
			return err
		}
		fds := float64(countFDs("/proc", append([]int{l.proc.pid()}, u.Children...)))
		m["flood.rss."+key] = max(m["flood.rss."+key], mib(u.RSSBytes))
		m["flood.fds."+key] = max(m["flood.fds."+key], fds)
		return nil
	}
	if err := usage("0"); err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", l.port)
	var aborted, secs float64
	for b := 1; b <= f.bursts; b++ {
		before, err := r.settledAborts(ctx)
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := flood(ctx, addr, f.cycles); err != nil {
			return fmt.Errorf("flood %d: %w", b, err)
		}
		took := time.Since(t0)
		after, err := r.settledAborts(ctx)
		if err != nil {
			return err
		}
		aborted += float64(after - before)
		secs += took.Seconds()
		if err := usage("max"); err != nil {
			return err
		}
		r.progress("flood %-16s %d/%d: %d cycles in %v, server Aborted_connects +%d", c.name, b, f.bursts, f.cycles, took.Round(time.Millisecond), after-before)
	}
	m["flood.aborted"] = aborted / float64(f.bursts)
	m["flood.aborted.per"] = aborted / float64(f.bursts*f.cycles)
	m["flood.secs"] = secs / float64(f.bursts)
	if admin != 0 {
		rej, err := scrapeCounter(ctx, admin, "sidecar_connections_rejected_total")
		if err != nil {
			return err
		}
		m["flood.rejected"] = rej
	} else if l.proc != nil {
		m["flood.rejected"] = 0 // socat has no limit: it refuses nobody
	}
	if l.proc != nil && f.idle > 0 {
		r.progress("flood %-16s quiet for %v", c.name, f.idle)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(f.idle):
		}
		if err := usage("idle"); err != nil {
			return err
		}
	}
	r.progress("flood %-16s rejected %v, Aborted_connects %.3f per client, RSS %.1f → max %.1f → %.1f MiB after %v, descriptors %v → %v → %v",
		c.name, m["flood.rejected"], m["flood.aborted.per"], m["flood.rss.0"], m["flood.rss.max"], m["flood.rss.idle"], f.idle,
		m["flood.fds.0"], m["flood.fds.max"], m["flood.fds.idle"])
	r.record(1, c, m)
	return nil
}

// flood connects and closes n times, one client after the other, every
// second one with a reset (SO_LINGER 0).
func flood(ctx context.Context, addr string, n int) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	for i := range n {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("cycle %d: %w", i, err)
		}
		if i%2 == 1 {
			_ = c.(*net.TCPConn).SetLinger(0)
		}
		_ = c.Close()
	}
	return nil
}

// settledAborts reads Aborted_connects once it has stopped moving: the
// server counts a departed connection only when its thread gets to it.
func (r *runner) settledAborts(ctx context.Context) (int64, error) {
	last, err := r.db.GlobalStatus(ctx, "Aborted_connects")
	if err != nil {
		return 0, fmt.Errorf("read Aborted_connects: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for stable := 0; stable < 3 && time.Now().Before(deadline); {
		time.Sleep(300 * time.Millisecond)
		v, err := r.db.GlobalStatus(ctx, "Aborted_connects")
		if err != nil {
			return 0, fmt.Errorf("read Aborted_connects: %w", err)
		}
		if v == last {
			stable++
		} else {
			stable, last = 0, v
		}
	}
	return last, nil
}

// scrapeCounter sums a counter over its labels from the sidecar's /metrics.
func scrapeCounter(ctx context.Context, port int, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", port), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scrape /metrics: %w", err)
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("/metrics line %q: %w", line, err)
		}
		sum, found = sum+v, true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("/metrics has no %s", name)
	}
	return sum, nil
}
