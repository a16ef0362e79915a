//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func cpuSet(cpus ...int) unix.CPUSet {
	var s unix.CPUSet
	for _, c := range cpus {
		s.Set(c)
	}
	return s
}

func TestParsePlacement(t *testing.T) {
	four := cpuSet(0, 1, 2, 3)
	tests := []struct {
		v, db, task string
		allowed     unix.CPUSet
		wantErr     string
	}{
		{v: "1", allowed: cpuSet(0, 1), db: "1", task: "0"},
		{v: "0", allowed: cpuSet(0, 1), db: "0", task: "1"},
		{v: "2-3", allowed: four, db: "2-3", task: "0-1"},
		{v: " 1 , 3", allowed: four, db: "1,3", task: "0,2"},
		{v: "4", allowed: cpuSet(2, 4, 6), db: "4", task: "2,6"},
		{v: "5", allowed: cpuSet(0, 1), wantErr: `-db-cpus "5": CPU 5 is not one of them`},
		{v: "3", allowed: cpuSet(2, 4, 6), wantErr: "CPU 3 is not one of them; want a list of CPUs such as 1 or 2-3,5 from those this process may run on (2,4,6)"},
		{v: "0-1", allowed: cpuSet(0, 1), wantErr: "no CPU is left"},
		{v: "x", allowed: four, wantErr: `"x" is not a CPU number or a range lo-hi`},
		{v: "3-1", allowed: four, wantErr: `"3-1" is not a CPU number`},
		{v: "-1", allowed: four, wantErr: `"-1" is not a CPU number`},
		{v: "1,", allowed: four, wantErr: `"" is not a CPU number`},
		{v: "99999", allowed: four, wantErr: "CPU 99999 is not one of them"},
	}
	for _, tt := range tests {
		t.Run(tt.v, func(t *testing.T) {
			p, err := parsePlacement(tt.v, tt.allowed)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cpuList(&p.db); got != tt.db {
				t.Errorf("database CPUs %q, want %q", got, tt.db)
			}
			if got := cpuList(&p.task); got != tt.task {
				t.Errorf("task CPUs %q, want %q", got, tt.task)
			}
		})
	}
}

// splittableCPUs returns the CPUs this process may run on, skipping the
// test when there is only one.
func splittableCPUs(t *testing.T) unix.CPUSet {
	t.Helper()
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		t.Fatal(err)
	}
	if allowed.Count() < 2 {
		t.Skipf("this process may run on one CPU only (%s): there is nothing to split or pin", cpuList(&allowed))
	}
	return allowed
}

func TestBusyPercent(t *testing.T) {
	for _, tt := range []struct {
		used, wall time.Duration
		n          int
		want       float64
	}{
		{used: 3 * time.Second, wall: 3 * time.Second, n: 1, want: 100},
		{used: 3 * time.Second, wall: 2 * time.Second, n: 2, want: 75},
		{used: 0, wall: time.Second, n: 1, want: 0},
		{used: time.Second, wall: 0, n: 1, want: 0}, // no measurement
		{used: time.Second, wall: time.Second, n: 0, want: 0},
	} {
		if got := busyPercent(tt.used, tt.wall, tt.n); got != tt.want {
			t.Errorf("busyPercent(%v, %v, %d) = %v, want %v", tt.used, tt.wall, tt.n, got, tt.want)
		}
	}
}

func TestParseFlagsDBCPUs(t *testing.T) {
	allowed := splittableCPUs(t)
	last := lastCPU(allowed)
	c, err := parseFlags([]string{"-db-cpus", fmt.Sprint(last)}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.place == nil || !c.place.db.IsSet(last) || c.place.task.IsSet(last) || c.place.task.Count() != allowed.Count()-1 {
		t.Errorf("placement %v for -db-cpus %d", c.place, last)
	}
	if c, _ := parseFlags(nil, io.Discard); c.place != nil {
		t.Errorf("placement %v without -db-cpus", c.place)
	}
	if _, err := parseFlags([]string{"-db-cpus", fmt.Sprint(last), "-workloads", "bulk,conns"}, io.Discard); err == nil || !strings.Contains(err.Error(), "have no database to place") {
		t.Errorf("-db-cpus without a MySQL workload: %v", err)
	}
}

func lastCPU(s unix.CPUSet) int {
	last := -1
	for c := 0; c < maxCPUs; c++ {
		if s.IsSet(c) {
			last = c
		}
	}
	return last
}

// pinHelperEnv makes the test binary a process with several threads that,
// for each line it reads, makes one more thread and prints that thread's
// Cpus_allowed_list.
const pinHelperEnv = "BENCH_PIN_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(pinHelperEnv) == "1" {
		pinHelper()
		return
	}
	os.Exit(m.Run())
}

func pinHelper() {
	for range 4 {
		go func() {
			runtime.LockOSThread() // a thread of its own, kept
			select {}
		}()
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		got := make(chan string)
		go func() {
			runtime.LockOSThread()
			got <- allowedList(os.Getpid(), unix.Gettid())
			select {}
		}()
		fmt.Println(<-got)
	}
}

func allowedList(pid, tid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
	if err != nil {
		return "error: " + err.Error()
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "no Cpus_allowed_list"
}

func TestPinProcess(t *testing.T) {
	allowed := splittableCPUs(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), pinHelperEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	out := bufio.NewScanner(stdout)
	if !out.Scan() || out.Text() != "ready" {
		t.Fatalf("helper: %q %v", out.Text(), out.Err())
	}
	pid := cmd.Process.Pid
	threads, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	if len(threads) < 5 {
		t.Fatalf("helper has %d threads, want at least 5", len(threads))
	}
	if got, want := allowedList(pid, pid), cpuList(&allowed); got != want {
		t.Fatalf("before pinning the helper may run on %s, want %s", got, want)
	}

	one := cpuSet(lastCPU(allowed))
	want := cpuList(&one)
	if err := pinProcess(pid, &one); err != nil {
		t.Fatal(err)
	}
	threads, _ = os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, th := range threads {
		var tid int
		fmt.Sscan(th.Name(), &tid)
		if got := allowedList(pid, tid); got != want {
			t.Errorf("thread %d may run on %s, want %s", tid, got, want)
		}
	}
	// A thread made after pinning starts with its creator's CPUs.
	fmt.Fprintln(stdin, "new thread")
	if !out.Scan() || out.Text() != want {
		t.Errorf("a thread made after pinning may run on %q, want %q", out.Text(), want)
	}

	if err := pinProcess(1<<30, &one); err == nil || !strings.Contains(err.Error(), "pin process 1073741824") {
		t.Errorf("pinning a process that does not exist: %v", err)
	}
}
