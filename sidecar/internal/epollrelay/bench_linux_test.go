//go:build linux && (amd64 || arm64)

package epollrelay_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/epollrelay"
	"github.com/example/sidecar/sidecar/internal/relay"
)

// The benchmarks run each forwarder in its own process (this test binary
// re-executed, or socat) so its CPU time can be read from /proc exactly as
// for socat, apart from the client and echo server in this process.
//
//	go test -run '^$' -bench PingPong -benchtime 3s ./sidecar/internal/epollrelay
//
// EPOLLRELAY_BENCH_WRAP is a command prefix for each forwarder, "{}"
// replaced by the benchmark's name, to count syscalls or profile, e.g.
//
//	EPOLLRELAY_BENCH_WRAP='strace -c -f -o /tmp/st/{}.txt'
//	EPOLLRELAY_BENCH_WRAP='perf record -g -o /tmp/perf/{}.data'
//
// (Counts only: a traced forwarder is much slower.)

const (
	envForwarder = "EPOLLRELAY_BENCH_FORWARDER" // data path to run as a child forwarder
	envTarget    = "EPOLLRELAY_BENCH_TARGET"
	envOpts      = "EPOLLRELAY_BENCH_OPTS" // engine variant: "-"-separated loop count, "nolock", "nosplice"
	envWrap      = "EPOLLRELAY_BENCH_WRAP"

	// Message sizes like a MySQL point select and its one-row result.
	requestSize  = 64
	responseSize = 256
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envForwarder); mode != "" {
		os.Exit(runForwarder(mode, os.Getenv(envTarget)))
	}
	os.Exit(m.Run())
}

// runForwarder is the child process: it listens on loopback, prints its
// address, relays every connection to target, and exits when stdin closes.
func runForwarder(mode, target string) int {
	var f relay.Func
	switch mode {
	case "portable":
		f = relay.Copy
	case "epoll":
		var opts epollrelay.Options
		for _, o := range strings.Split(os.Getenv(envOpts), "-") {
			if n, err := strconv.Atoi(o); err == nil {
				opts.Loops = n
			} else if o == "nolock" {
				opts.NoLockThread = true
			} else if o == "nosplice" {
				opts.NoSplice = true
			}
		}
		e, err := epollrelay.New(opts)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer e.Close()
		f = e.Relay
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: want portable or epoll\n", envForwarder, mode)
		return 2
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(ln.Addr())
	go exitOnStdinClose(ln)
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			return 0
		}
		go forward(f, c, target)
	}
}

func exitOnStdinClose(ln net.Listener) {
	io.Copy(io.Discard, os.Stdin)
	ln.Close()
	os.Exit(0)
}

func forward(f relay.Func, c *net.TCPConn, target string) {
	u, err := net.Dial("tcp", target)
	if err != nil {
		c.Close()
		return
	}
	f(context.Background(), c, u.(*net.TCPConn), 0)
}

// echoServer answers every requestSize-byte request with responseSize bytes.
func echoServer(b *testing.B) string {
	ln := testkit.Listen(b)
	go acceptEcho(ln)
	return ln.Addr().String()
}

func acceptEcho(ln *net.TCPListener) {
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			return
		}
		go serveEcho(c)
	}
}

func serveEcho(c *net.TCPConn) {
	defer c.Close()
	req, resp := make([]byte, requestSize), make([]byte, responseSize)
	for {
		if _, err := io.ReadFull(c, req); err != nil {
			return
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

// forwarder is a contestant running in a child process (pid 0: direct).
type forwarder struct {
	addr string
	pid  int
	stop func()
}

func startForwarder(b *testing.B, name, target string) forwarder {
	b.Helper()
	var cmd *exec.Cmd
	var args []string
	wrapped := false
	if wrap := os.Getenv(envWrap); wrap != "" {
		wrapped = true
		args = strings.Fields(strings.ReplaceAll(wrap, "{}", strings.ReplaceAll(b.Name(), "/", "_")))
	}
	switch {
	case name == "direct":
		return forwarder{addr: target, stop: func() {}}
	case name == "socat":
		port := testkit.FreePort(b)
		args = append(args, "socat", fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork", port), "TCP:"+target)
		cmd = exec.Command(args[0], args[1:]...)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		testkit.WaitListening(b, addr, 2*time.Second)
		pid := tracee(b, cmd.Process.Pid, wrapped)
		return forwarder{addr: addr, pid: pid, stop: func() {
			syscall.Kill(pid, syscall.SIGTERM) // socat itself, so strace sees it exit
			cmd.Wait()
		}}
	default:
		mode, variant, _ := strings.Cut(name, "-")
		args = append(args, os.Args[0])
		cmd = exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), envForwarder+"="+mode, envTarget+"="+target, envOpts+"="+variant)
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			b.Fatalf("forwarder %s did not start: %v", name, err)
		}
		return forwarder{addr: strings.TrimSpace(line), pid: tracee(b, cmd.Process.Pid, wrapped), stop: func() {
			stdin.Close()
			cmd.Wait()
		}}
	}
}

// tracee is the pid to measure: the wrapper's child when wrapped.
func tracee(b *testing.B, pid int, traced bool) int {
	if !traced {
		return pid
	}
	for range 100 {
		if kids := children(pid); len(kids) > 0 {
			return kids[0]
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatal("the wrapper started no child")
	return 0
}

// procCPU is the CPU time of pid, all its threads and all its
// descendants, live or reaped (socat forks one child per connection).
func procCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	var total time.Duration
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(data))
		if len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			total += time.Duration(ns)
		}
	}
	for _, kid := range children(pid) {
		total += procCPU(kid)
	}
	return total + reapedCPU(pid)
}

// reapedCPU is the CPU time of pid's children that exited and were waited
// for (cutime+cstime in /proc/pid/stat; clock ticks of 10 ms).
func reapedCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	_, after, ok := strings.Cut(string(data), ") ")
	f := strings.Fields(after) // f[0] is field 3 (state)
	if !ok || len(f) < 15 {
		return 0
	}
	cutime, _ := strconv.ParseInt(f[13], 10, 64)
	cstime, _ := strconv.ParseInt(f[14], 10, 64)
	return time.Duration(cutime+cstime) * 10 * time.Millisecond
}

func children(pid int) []int {
	var kids []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		for _, f := range strings.Fields(string(data)) {
			if k, err := strconv.Atoi(f); err == nil {
				kids = append(kids, k)
			}
		}
	}
	return kids
}

var contestants = []string{"direct", "socat", "portable", "epoll"}

// variants are engine shapes measured only when asked for by -bench.
var variants = []string{"epoll-nolock", "epoll-nosplice", "epoll-2"}

// BenchmarkPingPong: small request, small response, over kept-alive
// connections, like pooled MySQL point selects. Reports ns per round trip
// (wall, all connections together), the forwarder's CPU per round trip and
// the p99 round-trip latency.
func BenchmarkPingPong(b *testing.B) {
	for _, conns := range []int{1, 8, 32} {
		for _, name := range slices.Concat(contestants, variants) {
			b.Run(fmt.Sprintf("conns=%d/%s", conns, name), func(b *testing.B) {
				if name == "socat" {
					if _, err := exec.LookPath("socat"); err != nil {
						b.Skip("socat not on PATH")
					}
				}
				pingPong(b, name, conns)
			})
		}
	}
}

func pingPong(b *testing.B, name string, conns int) {
	target := echoServer(b)
	fw := startForwarder(b, name, target)
	defer fw.stop()
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.Dial("tcp", fw.addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		cs[i] = c
		roundTrip(b, c, make([]byte, requestSize), make([]byte, responseSize)) // connected end to end
	}
	var next atomic.Int64
	lat := make([][]time.Duration, conns)
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := procCPU(fw.pid)
	for i, c := range cs {
		wg.Add(1)
		go pingPongClient(b, &wg, c, &next, &lat[i])
	}
	wg.Wait()
	cpu := procCPU(fw.pid) - cpu0
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)*99/100].Nanoseconds())/1e3, "p99-µs")
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "fwd-cpu-ns/op")
}

func pingPongClient(b *testing.B, wg *sync.WaitGroup, c net.Conn, next *atomic.Int64, lat *[]time.Duration) {
	defer wg.Done()
	req, resp := make([]byte, requestSize), make([]byte, responseSize)
	for next.Add(1) <= int64(b.N) {
		t0 := time.Now()
		roundTrip(b, c, req, resp)
		*lat = append(*lat, time.Since(t0))
	}
}

func roundTrip(b *testing.B, c net.Conn, req, resp []byte) {
	if _, err := c.Write(req); err != nil {
		b.Error(err)
		return
	}
	if _, err := io.ReadFull(c, resp); err != nil {
		b.Error(err)
	}
}

// BenchmarkBulk streams one direction through each contestant; SetBytes
// makes go test report MB/s.
func BenchmarkBulk(b *testing.B) {
	for _, name := range slices.Concat(contestants, variants) {
		b.Run(name, func(b *testing.B) {
			if name == "socat" {
				if _, err := exec.LookPath("socat"); err != nil {
					b.Skip("socat not on PATH")
				}
			}
			bulk(b, name)
		})
	}
}

func bulk(b *testing.B, name string) {
	const chunk = 128 << 10
	ln := testkit.Listen(b)
	defer ln.Close() // before the benchmark's cleanup: the sink ends with it
	received := make(chan int64, 8)
	go sink(ln, received)
	fw := startForwarder(b, name, ln.Addr().String())
	defer fw.stop()
	c, err := net.Dial("tcp", fw.addr)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ResetTimer()
	cpu0 := procCPU(fw.pid)
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	got := <-received
	for got == 0 { // socat's readiness probe
		got = <-received
	}
	cpu := procCPU(fw.pid) - cpu0
	b.StopTimer()
	c.Close()
	if got != int64(b.N)*chunk {
		b.Fatalf("sink got %d bytes, want %d", got, int64(b.N)*chunk)
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*chunk)*1e6, "fwd-cpu-ns/MB")
}

// sink reports how many bytes each accepted connection sent.
func sink(ln *net.TCPListener, received chan<- int64) {
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			return
		}
		go drain(c, received)
	}
}

func drain(c *net.TCPConn, received chan<- int64) {
	defer c.Close()
	n, _ := io.Copy(io.Discard, c)
	received <- n
}

// BenchmarkConnect: connect, one small request and response, close — the
// per-connection cost of handing a pair to the data path and ending it.
func BenchmarkConnect(b *testing.B) {
	for _, name := range contestants {
		b.Run(name, func(b *testing.B) {
			if name == "socat" {
				if _, err := exec.LookPath("socat"); err != nil {
					b.Skip("socat not on PATH")
				}
			}
			target := echoServer(b)
			fw := startForwarder(b, name, target)
			defer fw.stop()
			req, resp := make([]byte, requestSize), make([]byte, responseSize)
			b.ResetTimer()
			cpu0 := procCPU(fw.pid)
			for range b.N {
				c, err := net.Dial("tcp", fw.addr)
				if err != nil {
					b.Fatal(err)
				}
				roundTrip(b, c, req, resp)
				c.Close()
			}
			cpu := procCPU(fw.pid) - cpu0
			b.StopTimer()
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "fwd-cpu-ns/op")
		})
	}
}
