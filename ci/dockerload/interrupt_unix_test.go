//go:build unix

package dockerload

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A load cut short by the run's context (Ctrl-C, a deadline) says it was
// interrupted and which image it was loading, and stays that context's
// error for errors.Is, whether docker had started or not. A docker whose
// children keep its output open does not hold the run.
func TestLoadInterrupted(t *testing.T) {
	bin := t.TempDir()
	// Reads part of the archive, then hangs with a child holding stdout.
	pids := filepath.Join(bin, "pids")
	stub := "#!/bin/sh\nhead -c 1 >/dev/null\nsleep 600 &\necho $! >>" + pids + "\nwait\n"
	if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b, _ := os.ReadFile(pids)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	idx, _ := twoPlatforms(t)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for name, ctx := range map[string]func() (context.Context, func()){
		"before the start": func() (context.Context, func()) { return cancelled, func() {} },
		"during the load": func() (context.Context, func()) {
			return context.WithTimeout(context.Background(), 200*time.Millisecond)
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := ctx()
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- Load(ctx, idx, "linux/amd64", "team/sidecar:dev") }()
			var err error
			select {
			case err = <-done:
			case <-time.After(time.Minute): // a hang guard, far above the stub's kill
				t.Fatal("Load still waiting a minute after its context ended")
			}
			if err == nil || !errors.Is(err, ctx.Err()) {
				t.Fatalf("err = %v, want one that is %v", err, ctx.Err())
			}
			for _, w := range []string{"`docker load` of team/sidecar:dev", "interrupted"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

// lateCancel is a context that reads as canceled once flag exists: ended
// after docker load has exited, with nothing for exec to kill.
type lateCancel struct {
	context.Context
	flag string
}

func (c lateCancel) Err() error {
	if _, err := os.Stat(c.flag); err == nil {
		return context.Canceled
	}
	return nil
}

// A load that docker reported done is done, though the run's context
// ended right after: it is not called interrupted.
func TestLoadDoneThenCanceled(t *testing.T) {
	bin := t.TempDir()
	flag := filepath.Join(bin, "exited")
	stub := "#!/bin/sh\ncat >/dev/null\necho 'Loaded image: team/sidecar:dev'\ntouch " + flag + "\n"
	if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	idx, _ := twoPlatforms(t)
	if err := Load(lateCancel{context.Background(), flag}, idx, "linux/amd64", "team/sidecar:dev"); err != nil {
		t.Fatalf("Load of an image docker reported loaded: %v", err)
	}
}
