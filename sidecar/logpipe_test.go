package main

import (
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// A log reader that goes away (a log router restarting, `sidecar 2>&1 |
// head`) must not take the database traffic with it: Go kills a process
// that writes to a closed pipe on stderr unless SIGPIPE is handled. The
// sidecar goes on forwarding, and still stops cleanly on SIGTERM.
func TestForwardingOutlivesItsLogReader(t *testing.T) {
	env, listen := echoForward(t)
	env["LOG_LEVEL"] = "debug" // a line per connection: each one writes to the dead pipe
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sidecarBinary(t))
	cmd.Env, cmd.Stdout, cmd.Stderr = environ(env), io.Discard, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	for deadline := time.Now().Add(safety); healthcheckBinary(t, env) != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the sidecar never answered healthy")
		}
	}
	_ = r.Close() // the log reader is gone

	for i := range 3 {
		c := dialForward(t, listen)
		msg := []byte("ping")
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			t.Fatalf("connection %d after the log reader left: %v", i, err)
		}
		_ = c.Close()
		time.Sleep(50 * time.Millisecond) // its closing line is written
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("the sidecar is gone: %v", err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("after SIGTERM: %v; want exit 0", waitErr)
		}
	case <-time.After(safety):
		t.Fatal("no exit after SIGTERM")
	}
}
