package admin

import (
	"os"
	"runtime"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/self/stat's times: 100 on every
// Linux architecture the image is built for.
const clockTicks = 100

// processStats are the standard process_* metrics every Prometheus
// dashboard assumes, read from /proc like client_golang's process
// collector does.
type processStats struct {
	cpuSeconds, startTime, residentBytes, virtualBytes float64
}

func readProcessStats() (processStats, bool) {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return processStats{}, false
	}
	// The command name may hold spaces and parentheses: fields start after the last ')'.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return processStats{}, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 22 {
		return processStats{}, false
	}
	num := func(k int) float64 { v, _ := strconv.ParseFloat(f[k], 64); return v }
	// Indexes are the proc(5) field numbers minus 3 (pid and comm come first).
	s := processStats{
		cpuSeconds:    (num(11) + num(12)) / clockTicks,
		virtualBytes:  num(20),
		residentBytes: num(21) * float64(os.Getpagesize()),
	}
	if boot, ok := bootTime(); ok {
		s.startTime = boot + num(19)/clockTicks
	}
	return s, true
}

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

// writeRuntimeMetrics writes the process_* and go_* families.
func writeRuntimeMetrics(p *promWriter) {
	if s, ok := readProcessStats(); ok {
		p.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.")
		p.sample("process_cpu_seconds_total", "", s.cpuSeconds)
		p.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
		p.sample("process_resident_memory_bytes", "", s.residentBytes)
		p.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.")
		p.sample("process_virtual_memory_bytes", "", s.virtualBytes)
		if s.startTime > 0 {
			p.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.")
			p.sample("process_start_time_seconds", "", s.startTime)
		}
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	p.family("go_info", "gauge", "Information about the Go environment.")
	p.sample("go_info", labels("version", runtime.Version()), 1)
	p.family("go_goroutines", "gauge", "Number of goroutines that currently exist.")
	p.sample("go_goroutines", "", float64(runtime.NumGoroutine()))
	p.family("go_threads", "gauge", "Number of OS threads created.")
	n, _ := runtime.ThreadCreateProfile(nil)
	p.sample("go_threads", "", float64(n))
	for _, g := range []struct {
		name, help string
		v          uint64
	}{
		{"go_memstats_alloc_bytes", "Number of bytes allocated and still in use.", m.Alloc},
		{"go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and still in use.", m.HeapAlloc},
		{"go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use.", m.HeapInuse},
		{"go_memstats_heap_idle_bytes", "Number of heap bytes waiting to be used.", m.HeapIdle},
		{"go_memstats_heap_released_bytes", "Number of heap bytes released to OS.", m.HeapReleased},
		{"go_memstats_heap_objects", "Number of allocated objects.", m.HeapObjects},
		{"go_memstats_stack_inuse_bytes", "Number of bytes in use by the stack allocator.", m.StackInuse},
		{"go_memstats_sys_bytes", "Number of bytes obtained from system.", m.Sys},
		{"go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place.", m.NextGC},
	} {
		p.family(g.name, "gauge", g.help)
		p.sample(g.name, "", float64(g.v))
	}
	p.family("go_memstats_alloc_bytes_total", "counter", "Total number of bytes allocated, even if freed.")
	p.sample("go_memstats_alloc_bytes_total", "", float64(m.TotalAlloc))
	p.family("go_memstats_last_gc_time_seconds", "gauge", "Number of seconds since 1970 of last garbage collection.")
	p.sample("go_memstats_last_gc_time_seconds", "", float64(m.LastGC)/1e9)
}
