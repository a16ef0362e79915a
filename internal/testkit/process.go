package testkit

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Process is a child started for a test or benchmark, reaped in the
// background so Done can be selected on while the test waits for it to be
// ready.
type Process struct {
	Cmd *exec.Cmd
	// Output holds what the child wrote to the stdout and stderr that
	// StartProcess captured (those the caller left nil).
	Output *LockedBuffer

	done chan struct{}
	err  error
}

// StartProcess starts cmd, sending its stdout and stderr, where the caller
// left them nil, to p.Output, and reaps it in the background. The caller
// ends it, e.g. with Kill.
func StartProcess(cmd *exec.Cmd) (*Process, error) {
	p := &Process{Cmd: cmd, Output: &LockedBuffer{}, done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = p.Output
	}
	if cmd.Stderr == nil {
		cmd.Stderr = p.Output
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go p.reap()
	return p, nil
}

// Start is StartProcess for a test: the test fails if cmd cannot start, and
// when it ends the process is killed and, if the test failed, its output
// logged.
func Start(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	p, err := StartProcess(cmd)
	if err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	t.Cleanup(func() {
		p.Kill(time.Minute)
		if t.Failed() {
			t.Logf("%s output:\n%s", cmd.Path, p.Output)
		}
	})
	return p
}

func (p *Process) reap() {
	p.err = p.Cmd.Wait()
	close(p.done)
}

// OutputHas reports whether the process's output holds want within the
// wait: what it writes reaches Output through a copying goroutine, so a
// line written before an event the test saw may not be there yet.
func (p *Process) OutputHas(want string, within time.Duration) bool {
	for deadline := time.Now().Add(within); !strings.Contains(p.Output.String(), want); {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// Done is closed once the process has ended and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is what Wait returned (nil for exit status 0), or nil while the
// process runs.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Kill kills the process (not its children) and waits up to grace for it to
// be reaped.
func (p *Process) Kill(grace time.Duration) {
	_ = p.Cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(grace):
	}
}

// ExitCode waits for the process to end and returns its exit code (-1 if a
// signal ended it), failing the test if it still runs after within.
func (p *Process) ExitCode(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("%s did not exit within %v", p.Cmd.Path, within)
	}
	return p.Cmd.ProcessState.ExitCode()
}
