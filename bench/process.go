//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/example/sidecar/internal/testkit"
)

// procGroup tracks every child process the benchmark starts so that all of
// them, and their own children (socat forks one per connection), die with
// the benchmark: each runs in its own process group, killed as a group.
type procGroup struct {
	mu    sync.Mutex
	procs map[int]*child
}

type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	out  *testkit.LockedBuffer
}

func newProcGroup() *procGroup { return &procGroup{procs: map[int]*child{}} }

// start starts a long-running process (server or forwarder) in its own
// process group. Its output is kept for error messages.
func (g *procGroup) start(name string, env []string, bin string, args ...string) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	// The limit bounds what a chatty child can make us hold.
	out := &testkit.LockedBuffer{Limit: 1 << 20}
	cmd.Stdout, cmd.Stderr = out, out
	// Pdeathsig is a safety net for a benchmark killed with SIGKILL; the
	// normal path is stop/killAll.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), out: out}
	go c.wait()
	g.mu.Lock()
	g.procs[cmd.Process.Pid] = c
	g.mu.Unlock()
	return c, nil
}

func (c *child) wait() {
	c.err = c.cmd.Wait()
	close(c.done)
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the process has ended, with its output.
func (c *child) exited() (bool, string) {
	select {
	case <-c.done:
		return true, fmt.Sprintf("%s exited (%v): %s", c.name, c.err, tail(c.out.String(), 800))
	default:
		return false, ""
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace.
func (g *procGroup) stop(c *child, grace time.Duration) {
	pid := c.pid()
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
	}
	// The leader may be gone while forked children linger: kill the group anyway.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
	g.mu.Lock()
	delete(g.procs, pid)
	g.mu.Unlock()
}

// killAll kills every process group still running.
func (g *procGroup) killAll() {
	g.mu.Lock()
	procs := make([]*child, 0, len(g.procs))
	for _, c := range g.procs {
		procs = append(procs, c)
	}
	g.mu.Unlock()
	for _, c := range procs {
		g.stop(c, 500*time.Millisecond)
	}
}

// runTool runs a client tool (sysbench, iperf3) to completion in its own
// process group, killed as a group when ctx ends.
func runTool(ctx context.Context, bin string, args ...string) (string, error) {
	out, _, err := runToolIn(ctx, "", bin, args...)
	return out, err
}

// runToolIn is runTool in working directory dir ("" = the bench's); it
// also returns the CPU time the tool used (user and system).
func runToolIn(ctx context.Context, dir, bin string, args ...string) (string, time.Duration, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	var cpu time.Duration
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if ctx.Err() != nil {
		return out.String(), cpu, ctx.Err()
	}
	return out.String(), cpu, err
}

// waitListening waits until something listens on 127.0.0.1:port, by reading
// /proc/net/tcp rather than connecting: a probe connection would make socat
// fork and would confuse servers such as iperf3.
func waitListening(ctx context.Context, c *child, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := listening("/proc/net/tcp", port)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if gone, why := c.exited(); gone {
			return errors.New(why)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: nothing listening on 127.0.0.1:%d after %v; output: %s", c.name, port, timeout, tail(c.out.String(), 800))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// listening reports whether /proc/net/tcp has a LISTEN socket on
// 127.0.0.1:port or 0.0.0.0:port.
func listening(path string, port int) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	return parseNetTCPListening(b, port)
}

func parseNetTCPListening(b []byte, port int) (bool, error) {
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		// local_address is hex IP:port in host byte order; st 0A is LISTEN.
		if f[3] != "0A" || !strings.HasSuffix(f[1], want) {
			continue
		}
		ip := strings.TrimSuffix(f[1], want)
		if ip == "0100007F" || ip == "00000000" {
			return true, nil
		}
	}
	return false, sc.Err()
}

// waitQuiet waits until the process has no live or unreaped children, so a
// CPU reading counts each child exactly once (see procTree).
func waitQuiet(ctx context.Context, pid int, timeout time.Duration) (treeUsage, error) {
	deadline := time.Now().Add(timeout)
	for {
		u, err := procTree("/proc", pid, false)
		if err != nil {
			return u, err
		}
		if len(u.Children) == 0 || time.Now().After(deadline) {
			return u, nil
		}
		select {
		case <-ctx.Done():
			return u, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
