//go:build linux

package main

import (
	"context"
	"fmt"
	"time"
)

// eachLive runs one measurement through every live contestant, bracketed
// by readings of its forwarder's CPU (live.usage; zero for direct), then
// hands result that CPU. measure keeps its figures in the caller's
// variables. A failed measurement is noted and the next contestant runs;
// only the end of ctx stops the loop.
func (r *runner) eachLive(ctx context.Context, round int, lives []*live, what string,
	measure func(l *live) error, result func(l *live, cpu time.Duration) error) error {
	for _, l := range lives {
		before, err := l.usage(ctx)
		if err == nil {
			err = measure(l)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var after treeUsage
		if err == nil {
			after, err = l.usage(ctx)
		}
		if err == nil {
			err = result(l, after.CPU-before.CPU)
		}
		if err != nil {
			r.fail(round, l.c, what, err)
		}
	}
	return nil
}

// recordRate records a repeatFor result as KEY.rate and, for a forwarder,
// its CPU per completed call as KEY.cpu (µs).
func (r *runner) recordRate(round int, l *live, res connRateResult, used time.Duration, workload, key, unit string) error {
	if res.Errors > 0 {
		r.note(fmt.Sprintf("round %d, %s, %s: %d of %d failed, first: %v", round, l.c.name, workload, res.Errors, res.Errors+res.Conns, res.First))
	}
	if res.Conns == 0 {
		return fmt.Errorf("no %s completed: %v", unit, res.First)
	}
	m := map[string]float64{key + ".rate": res.Rate}
	cpu := ""
	if l.c.isForwarder() {
		m[key+".cpu"] = float64(used) / float64(time.Microsecond) / float64(res.Conns)
		cpu = fmt.Sprintf(" cpu=%.0fµs/%s", m[key+".cpu"], unit)
	}
	r.record(round, l.c, m)
	r.progress("%s round %d %-16s %.0f %s/s errors=%d%s", workload, round, l.c.name, res.Rate, unit, res.Errors, cpu)
	return nil
}

// recordBulk records a bulk result as KEY.gbps and, for a forwarder, its
// CPU seconds per GB moved as KEY.cpu.
func (r *runner) recordBulk(round int, l *live, res bulkResult, used time.Duration, workload, key string) error {
	m := map[string]float64{key + ".gbps": res.Gbps}
	cpu := ""
	if l.c.isForwarder() {
		m[key+".cpu"] = used.Seconds() / (float64(res.Bytes) / 1e9)
		cpu = fmt.Sprintf(" cpu=%.3fs/GB", m[key+".cpu"])
	}
	r.record(round, l.c, m)
	r.progress("%s round %d %-16s %.2f Gbit/s%s", workload, round, l.c.name, res.Gbps, cpu)
	return nil
}
