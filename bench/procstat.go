//go:build linux

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of the time fields in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports (the kernel exports a
// fixed USER_HZ to user space regardless of CONFIG_HZ).
const clockTicks = 100

// procStat is the part of /proc/<pid>/stat the benchmark needs.
type procStat struct {
	PID    int
	Comm   string // may contain spaces and parentheses
	State  byte
	PPID   int
	UTime  uint64 // ticks spent in user mode
	STime  uint64 // ticks spent in kernel mode
	CUTime uint64 // ticks of waited-for (reaped) children, user mode
	CSTime uint64 // ticks of waited-for (reaped) children, kernel mode
	RSS    int64  // resident pages
}

// OwnAndReaped is the process's own CPU time plus that of the children it
// has reaped, in ticks.
func (s procStat) OwnAndReaped() uint64 { return s.UTime + s.STime + s.CUTime + s.CSTime }

// parseProcStat parses one /proc/<pid>/stat line. The command name sits in
// parentheses and may itself contain spaces and parentheses, so the fields
// are counted from the LAST ')' in the line (the kernel's own advice).
func parseProcStat(line string) (procStat, error) {
	var s procStat
	line = strings.TrimRight(line, "\n")
	open := strings.IndexByte(line, '(')
	closeP := strings.LastIndexByte(line, ')')
	if open < 0 || closeP < open {
		return s, fmt.Errorf("parse /proc stat %q: no (comm)", trunc(line))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line[:open]))
	if err != nil {
		return s, fmt.Errorf("parse /proc stat %q: pid: %w", trunc(line), err)
	}
	s.PID, s.Comm = pid, line[open+1:closeP]
	// fields[0] is field 3 (state) in proc(5) numbering.
	fields := strings.Fields(line[closeP+1:])
	const need = 24 - 2 // up to field 24 (rss)
	if len(fields) < need {
		return s, fmt.Errorf("parse /proc stat %q: %d fields after comm, want at least %d", trunc(line), len(fields), need)
	}
	if len(fields[0]) != 1 {
		return s, fmt.Errorf("parse /proc stat %q: state %q", trunc(line), fields[0])
	}
	s.State = fields[0][0]
	field := func(n int) string { return fields[n-3] }
	if s.PPID, err = strconv.Atoi(field(4)); err != nil {
		return s, fmt.Errorf("parse /proc stat %q: ppid: %w", trunc(line), err)
	}
	for _, f := range []struct {
		n   int
		dst *uint64
	}{{14, &s.UTime}, {15, &s.STime}, {16, &s.CUTime}, {17, &s.CSTime}} {
		// cutime and cstime are signed in the kernel ABI but never negative.
		v, err := strconv.ParseUint(field(f.n), 10, 64)
		if err != nil {
			return s, fmt.Errorf("parse /proc stat %q: field %d: %w", trunc(line), f.n, err)
		}
		*f.dst = v
	}
	if s.RSS, err = strconv.ParseInt(field(24), 10, 64); err != nil {
		return s, fmt.Errorf("parse /proc stat %q: rss: %w", trunc(line), err)
	}
	return s, nil
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func readProcStat(procRoot string, pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(string(b))
}

// treeUsage is the summed resource use of a process and its live descendants.
type treeUsage struct {
	Procs    int           // processes in the tree, root included
	CPUTicks uint64        // utime+stime+cutime+cstime summed over the tree
	RSSBytes int64         // resident set summed over the tree (shared pages counted once per process)
	PSSBytes int64         // proportional set size summed over the tree (shared pages split), 0 if unreadable
	Children []int         // live descendant pids
	Zombies  int           // descendants that exited but are not reaped yet
	CPU      time.Duration // CPUTicks as a duration
}

// procTree reads /proc for a process and all its live descendants.
//
// CPU accounting: a process's utime+stime covers all its threads. A child's
// time moves into the parent's cutime+cstime only once the parent reaps it
// (wait), so the sum of (own + reaped) for the root plus (own + reaped) for
// each live descendant counts every child exactly once, whether it is still
// running, a zombie, or reaped. A child reaped between the scan and the read
// of the root would be counted twice, so callers measure when the tree is
// quiet (see waitQuiet).
func procTree(procRoot string, root int, withPSS bool) (treeUsage, error) {
	var u treeUsage
	all, err := allProcs(procRoot)
	if err != nil {
		return u, err
	}
	// The root is read after the scan: a child reaped during the scan is
	// then already in the root's cutime+cstime. (Reading the root first
	// would miss it; this order can at worst count it twice, and never when
	// the scan found no children.)
	rootStat, err := readProcStat(procRoot, root)
	if err != nil {
		return u, fmt.Errorf("read forwarder process %d: %w", root, err)
	}
	kids := map[int][]procStat{}
	for _, s := range all {
		kids[s.PPID] = append(kids[s.PPID], s)
	}
	page := int64(os.Getpagesize())
	add := func(s procStat) {
		u.Procs++
		u.CPUTicks += s.OwnAndReaped()
		u.RSSBytes += s.RSS * page
		if withPSS {
			if pss, err := readPSS(procRoot, s.PID); err == nil {
				u.PSSBytes += pss
			}
		}
	}
	add(rootStat)
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range kids[p] {
			add(c)
			u.Children = append(u.Children, c.PID)
			if c.State == 'Z' {
				u.Zombies++
			}
			queue = append(queue, c.PID)
		}
	}
	u.CPU = time.Duration(u.CPUTicks) * time.Second / clockTicks
	return u, nil
}

// allProcs reads the stat of every process in /proc. Processes that exit
// while it runs are skipped.
func allProcs(procRoot string) ([]procStat, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", procRoot, err)
	}
	out := make([]procStat, 0, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		s, err := readProcStat(procRoot, pid)
		if err != nil {
			continue // exited while we listed; it is no one's live child any more
		}
		out = append(out, s)
	}
	return out, nil
}

// readPSS reads the proportional set size from /proc/<pid>/smaps_rollup.
func readPSS(procRoot string, pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return 0, err
	}
	return parseSmapsRollupPSS(b)
}

// parseSmapsRollupPSS returns the "Pss:" line of smaps_rollup in bytes.
func parseSmapsRollupPSS(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "Pss:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("smaps_rollup Pss %q: %w", f[1], err)
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("smaps_rollup: no Pss line")
}

// countFDs counts the open descriptors of the processes, skipping any that
// have exited.
func countFDs(procRoot string, pids []int) int {
	n := 0
	for _, pid := range pids {
		ents, err := os.ReadDir(filepath.Join(procRoot, strconv.Itoa(pid), "fd"))
		if err == nil {
			n += len(ents)
		}
	}
	return n
}
