package admin

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// The standard process_* and go_* metrics, under the names and types
// prometheus/client_golang's process and Go collectors use, so stock
// dashboards work. Written by hand: client_golang would add 2.9 MB to the
// binary (docs/operations.md#metrics says why).

// userHZ is the kernel's USER_HZ, the unit of /proc/<pid>/stat times; 100
// on every Linux architecture Go supports (procfs assumes it too).
const userHZ = 100

func writeProcessMetrics(p *promWriter) {
	if st, ok := readProcStat(); ok {
		p.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.")
		p.sample("process_cpu_seconds_total", "", st.cpuSeconds)
		p.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
		p.sample("process_resident_memory_bytes", "", st.rssBytes)
		p.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.")
		p.sample("process_virtual_memory_bytes", "", st.vsizeBytes)
		if st.startTime > 0 {
			p.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.")
			p.sample("process_start_time_seconds", "", st.startTime)
		}
	}
}

type procStat struct {
	cpuSeconds, rssBytes, vsizeBytes, startTime float64
}

// readProcStat reads /proc/self/stat (proc(5)); false where there is no
// procfs.
func readProcStat() (procStat, bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return procStat{}, false
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields that follow start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 22 {
		return procStat{}, false
	}
	num := func(field int) float64 {
		v, _ := strconv.ParseFloat(f[field-3], 64)
		return v
	}
	st := procStat{
		cpuSeconds: (num(14) + num(15)) / userHZ,
		vsizeBytes: num(23),
		rssBytes:   num(24) * float64(os.Getpagesize()),
	}
	if boot, ok := bootTime(); ok {
		st.startTime = boot + num(22)/userHZ
	}
	return st, true
}

// bootTime is btime from /proc/stat: the boot time in Unix seconds.
func bootTime() (float64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "btime "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return n, err == nil
		}
	}
	return 0, false
}

func writeGoMetrics(p *promWriter) {
	p.family("go_goroutines", "gauge", "Number of goroutines that currently exist.")
	p.sample("go_goroutines", "", float64(runtime.NumGoroutine()))
	p.family("go_info", "gauge", "Information about the Go environment.")
	p.sample("go_info", labels("version", runtime.Version()), 1)

	// ReadMemStats stops the world briefly; once per scrape is what
	// client_golang's Go collector costs too.
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	for _, s := range []struct {
		name, typ, help string
		v               float64
	}{
		{"go_memstats_alloc_bytes", "gauge", "Number of bytes allocated in heap and currently in use.", float64(m.Alloc)},
		{"go_memstats_alloc_bytes_total", "counter", "Total number of bytes allocated in heap until now, even if released already.", float64(m.TotalAlloc)},
		{"go_memstats_sys_bytes", "gauge", "Number of bytes obtained from system.", float64(m.Sys)},
		{"go_memstats_mallocs_total", "counter", "Total number of heap objects allocated.", float64(m.Mallocs)},
		{"go_memstats_frees_total", "counter", "Total number of heap objects frees.", float64(m.Frees)},
		{"go_memstats_heap_alloc_bytes", "gauge", "Number of heap bytes allocated and currently in use.", float64(m.HeapAlloc)},
		{"go_memstats_heap_sys_bytes", "gauge", "Number of heap bytes obtained from system.", float64(m.HeapSys)},
		{"go_memstats_heap_idle_bytes", "gauge", "Number of heap bytes waiting to be used.", float64(m.HeapIdle)},
		{"go_memstats_heap_inuse_bytes", "gauge", "Number of heap bytes that are in use.", float64(m.HeapInuse)},
		{"go_memstats_heap_released_bytes", "gauge", "Number of heap bytes released to OS.", float64(m.HeapReleased)},
		{"go_memstats_heap_objects", "gauge", "Number of currently allocated objects.", float64(m.HeapObjects)},
		{"go_memstats_stack_inuse_bytes", "gauge", "Number of bytes obtained from system for stack allocator in non-CGO environments.", float64(m.StackInuse)},
		{"go_memstats_stack_sys_bytes", "gauge", "Number of bytes obtained from system for stack allocator.", float64(m.StackSys)},
		{"go_memstats_next_gc_bytes", "gauge", "Number of heap bytes when next garbage collection will take place.", float64(m.NextGC)},
		{"go_memstats_last_gc_time_seconds", "gauge", "Number of seconds since 1970 of last garbage collection.", float64(m.LastGC) / float64(time.Second)},
	} {
		p.family(s.name, s.typ, s.help)
		p.sample(s.name, "", s.v)
	}
}
