//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxCPUs is how many CPUs a unix.CPUSet holds.
const maxCPUs = int(unsafe.Sizeof(unix.CPUSet{})) * 8

// placement puts the database on CPUs of its own and the clients and
// forwarders on the others: in production the database is another machine,
// and the app and the sidecar share only their task's CPUs.
type placement struct {
	db, task unix.CPUSet
}

func (p placement) String() string {
	return fmt.Sprintf("MariaDB on CPU %s; the clients and forwarders on CPU %s", cpuList(&p.db), cpuList(&p.task))
}

// busyPercent is how busy n CPUs were, in percent, when they used `used`
// CPU time in `wall`: the side whose CPUs are near 100% limited qps.
func busyPercent(used, wall time.Duration, n int) float64 {
	if wall <= 0 || n <= 0 {
		return 0
	}
	return 100 * float64(used) / float64(wall) / float64(n)
}

// parsePlacement reads -db-cpus: a list such as "1" or "2-3,5" of CPUs the
// process may run on (allowed), leaving at least one for the rest.
func parsePlacement(v string, allowed unix.CPUSet) (placement, error) {
	bad := func(why string) (placement, error) {
		return placement{}, fmt.Errorf("-db-cpus %q: %s; want a list of CPUs such as 1 or 2-3,5 from those this process may run on (%s), leaving at least one for the clients and forwarders", v, why, cpuList(&allowed))
	}
	var p placement
	for _, item := range strings.Split(v, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(item), "-")
		first, err1 := strconv.Atoi(lo)
		last, err2 := first, error(nil)
		if isRange {
			last, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || first < 0 || last < first {
			return bad(fmt.Sprintf("%q is not a CPU number or a range lo-hi", item))
		}
		for c := first; c <= last; c++ {
			if c >= maxCPUs || !allowed.IsSet(c) {
				return bad(fmt.Sprintf("CPU %d is not one of them", c))
			}
			p.db.Set(c)
		}
	}
	for c := 0; c < maxCPUs; c++ {
		if allowed.IsSet(c) && !p.db.IsSet(c) {
			p.task.Set(c)
		}
	}
	if p.task.Count() == 0 {
		return bad("no CPU is left")
	}
	return p, nil
}

// cpuList formats s as the kernel does in Cpus_allowed_list: "0-2,5".
func cpuList(s *unix.CPUSet) string {
	var parts []string
	for c := 0; c < maxCPUs; c++ {
		if !s.IsSet(c) {
			continue
		}
		end := c
		for end+1 < maxCPUs && s.IsSet(end+1) {
			end++
		}
		if end == c {
			parts = append(parts, strconv.Itoa(c))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", c, end))
		}
		c = end
	}
	return strings.Join(parts, ",")
}

// pinProcess confines every thread of process pid to set. A thread starts
// with its creator's CPUs, so once a pass finds no thread it had not
// pinned, threads made later stay on set too.
func pinProcess(pid int, set *unix.CPUSet) error {
	pinned := map[int]bool{}
	for pass := 0; pass < 100; pass++ {
		entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return fmt.Errorf("pin process %d to CPU %s: %w", pid, cpuList(set), err)
		}
		fresh := 0
		for _, e := range entries {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || pinned[tid] {
				continue
			}
			fresh++
			if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("pin thread %d of process %d to CPU %s: %w", tid, pid, cpuList(set), err)
			}
			pinned[tid] = true
		}
		if fresh == 0 {
			return nil
		}
	}
	return fmt.Errorf("pin process %d to CPU %s: it keeps making threads", pid, cpuList(set))
}
