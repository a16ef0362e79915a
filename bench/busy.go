//go:build linux

package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// busySnapshot pairs the machine's busy CPU time with the benchmark's own
// (its process tree, including reaped tools), so the report can say how
// much CPU other work on the machine took while the figures were measured.
type busySnapshot struct {
	at          time.Time
	machineBusy uint64 // ticks, all CPUs, from /proc/stat
	ours        uint64 // ticks of the bench process tree
}

func takeBusySnapshot() (busySnapshot, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return busySnapshot{}, err
	}
	busy, err := parseProcStatBusy(string(b))
	if err != nil {
		return busySnapshot{}, err
	}
	u, err := procTree("/proc", os.Getpid(), false)
	if err != nil {
		return busySnapshot{}, err
	}
	return busySnapshot{at: time.Now(), machineBusy: busy, ours: u.CPUTicks}, nil
}

// parseProcStatBusy sums the non-idle fields of the "cpu" line of
// /proc/stat: user nice system idle iowait irq softirq steal (guest time is
// already inside user and nice).
func parseProcStatBusy(s string) (uint64, error) {
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: first line %q is not the cpu total", trunc(line))
	}
	var busy uint64
	for i, v := range f[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat cpu field %d %q: %w", i+1, v, err)
		}
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		busy += n
	}
	return busy, nil
}

// othersShare is the fraction of the machine's CPU capacity that processes
// outside the benchmark used between two snapshots.
func othersShare(a, b busySnapshot) float64 {
	capacity := b.at.Sub(a.at).Seconds() * clockTicks * float64(runtime.NumCPU())
	if capacity <= 0 || b.machineBusy < a.machineBusy {
		return 0
	}
	others := float64(b.machineBusy-a.machineBusy) - (float64(b.ours) - float64(a.ours))
	return max(0, others/capacity)
}
