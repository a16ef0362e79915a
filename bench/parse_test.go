//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The testdata files are sysbench 1.0.20 output captured on the bench machine
// against a throwaway MariaDB.
func TestParseSysbench(t *testing.T) {
	tests := []struct {
		file    string
		want    sysbenchResult
		wantErr string
	}{
		{file: "sysbench-threads1.txt", want: sysbenchResult{Threads: 1, Queries: 7579, QPS: 3785.54,
			P99: 860 * time.Microsecond, TotalTime: 2001400 * time.Microsecond}},
		{file: "sysbench-threads8.txt", want: sysbenchResult{Threads: 8, Queries: 71905, QPS: 23942.95,
			P99: 1030 * time.Microsecond, TotalTime: 3002400 * time.Microsecond}},
		{file: "sysbench-threads32.txt", want: sysbenchResult{Threads: 32, Queries: 34926, QPS: 17354.12,
			P99: 6090 * time.Microsecond, TotalTime: 2011800 * time.Microsecond}},
		{file: "sysbench-connect-refused.txt", wantErr: "Can't connect to server"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := parseSysbench(readTestdata(t, tt.file))
			checkParsed(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestParseSysbenchIncomplete(t *testing.T) {
	full := readTestdata(t, "sysbench-threads8.txt")
	tests := []struct {
		name, dropPrefix, wantErr string
	}{
		{"no percentile", "99th percentile:", `"99th percentile"`},
		{"no queries", "queries:", `"queries"`},
		{"no total time", "total time:", `"total time"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var kept []string
			for _, l := range strings.Split(full, "\n") {
				if !strings.HasPrefix(strings.TrimSpace(l), tt.dropPrefix) {
					kept = append(kept, l)
				}
			}
			_, err := parseSysbench(strings.Join(kept, "\n"))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
	if _, err := parseSysbench(strings.Replace(full, "(23942.95 per sec.)", "(lots per sec.)", 2)); err == nil {
		t.Error("garbled rate parsed without error")
	}
}

// Stat lines captured from /proc on the bench machine: a binary named
// "x) (y z" (spaces and parentheses in comm), one named "a b", and socat
// after it reaped the children that served a sysbench run.
func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    procStat
		wantErr string
	}{
		{name: "parens", line: readTestdata(t, "proc-stat-parens.txt"),
			want: procStat{PID: 10259, Comm: "x) (y z", State: 'S', PPID: 1, RSS: 413}},
		{name: "space", line: readTestdata(t, "proc-stat-space.txt"),
			want: procStat{PID: 10288, Comm: "a b", State: 'S', PPID: 1, RSS: 389}},
		{name: "socat reaped", line: readTestdata(t, "proc-stat-socat-reaped.txt"),
			want: procStat{PID: 10972, Comm: "socat", State: 'S', PPID: 10971, CUTime: 10, CSTime: 130, RSS: 1115}},
		{name: "busy", line: "42 (go (worker)) R 7 42 42 0 -1 4194560 100 0 0 0 1234 567 8 9 20 0 12 0 100 1000 2048 18446744073709551615",
			want: procStat{PID: 42, Comm: "go (worker)", State: 'R', PPID: 7, UTime: 1234, STime: 567, CUTime: 8, CSTime: 9, RSS: 2048}},
		{name: "truncated", line: "42 (sh) S 1 42 42 0 -1 4194560 100 0 0 0 1 2", wantErr: "fields after comm"},
		{name: "no comm", line: "42 sh S 1", wantErr: "no (comm)"},
		{name: "bad pid", line: "x (sh) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 3 4 20 0 1 0 100 1000 2048", wantErr: "pid"},
		{name: "bad utime", line: "42 (sh) S 1 42 42 0 -1 4194560 100 0 0 0 -1 2 3 4 20 0 1 0 100 1000 2048", wantErr: "field 14"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat(tt.line)
			checkParsed(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestProcTreeSumsChildren(t *testing.T) {
	root := t.TempDir()
	write := func(pid int, stat, rollup string) {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
		if rollup != "" {
			if err := os.WriteFile(filepath.Join(dir, "smaps_rollup"), []byte(rollup), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// socat (100) with reaped-children time, a live child (101), a zombie
	// child (102) and a grandchild (103); 200 is unrelated.
	write(100, "100 (socat) S 1 100 100 0 -1 0 0 0 0 0 5 6 10 130 20 0 1 0 1 1 1000", "Rss: 4000 kB\nPss: 1000 kB\n")
	write(101, "101 (socat) S 100 100 100 0 -1 0 0 0 0 0 20 30 0 0 20 0 1 0 1 1 500", "Rss: 2000 kB\nPss:   300 kB\n")
	write(102, "102 (socat) Z 100 100 100 0 -1 0 0 0 0 0 7 8 0 0 20 0 1 0 1 1 0", "")
	write(103, "103 (sh) S 101 100 100 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 1 1 100", "Pss: 50 kB\n")
	write(200, "200 (other) S 1 200 200 0 -1 0 0 0 0 0 999 999 0 0 20 0 1 0 1 1 9999", "")
	u, err := procTree(root, 100, true)
	if err != nil {
		t.Fatal(err)
	}
	page := int64(os.Getpagesize())
	if u.Procs != 4 || u.Zombies != 1 || len(u.Children) != 3 {
		t.Errorf("procs=%d zombies=%d children=%v, want 4, 1, 3 children", u.Procs, u.Zombies, u.Children)
	}
	if want := uint64(5 + 6 + 10 + 130 + 20 + 30 + 7 + 8 + 1 + 1); u.CPUTicks != want {
		t.Errorf("CPU ticks = %d, want %d", u.CPUTicks, want)
	}
	if want := (1000 + 500 + 100) * page; u.RSSBytes != want {
		t.Errorf("RSS = %d, want %d", u.RSSBytes, want)
	}
	if want := int64(1350 * 1024); u.PSSBytes != want {
		t.Errorf("PSS = %d, want %d", u.PSSBytes, want)
	}
	if u.CPU != 2180*time.Millisecond {
		t.Errorf("CPU = %v, want 2.18s", u.CPU)
	}
	if _, err := procTree(root, 999, false); err == nil {
		t.Error("missing root: no error")
	}
}

// checkParsed checks a parser's answer to one table row: an error
// containing wantErr when that is set, otherwise no error and got == want.
func checkParsed[T comparable](t *testing.T, got T, err error, want T, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("err = %v, want one containing %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}
