//go:build unix

package config

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/sidecar/internal/rdsca"
)

// A TARGET_TLS_CA that is no regular file of a CA bundle's size is
// refused at once, naming what it is: a FIFO used to block the start for
// good, and a huge file (or a device such as /dev/zero) to be read into
// memory whole.
func TestCAFileNotABundle(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "ca.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// A usable CA, then comment text (ignored between PEM blocks) past the limit.
	firstCA := rdsca.PEM[:bytes.Index(rdsca.PEM, []byte("-----END CERTIFICATE-----"))+26]
	huge := filepath.Join(dir, "huge.pem")
	if err := os.WriteFile(huge, append(bytes.Clone(firstCA), bytes.Repeat([]byte("# padding\n"), MaxCAFileSize/10+1)...), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ca.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	atLimit := filepath.Join(dir, "at-limit.pem")
	if err := os.WriteFile(atLimit, append(bytes.Clone(firstCA), bytes.Repeat([]byte("#"), MaxCAFileSize-len(firstCA))...), 0o600); err != nil {
		t.Fatal(err)
	}
	type testCase struct {
		name, path string
		want       string // "" = accepted
	}
	cases := []testCase{
		{"a named pipe", fifo, `TARGET_TLS_CA="` + fifo + `": is a named pipe (FIFO), not a regular file`},
		{"a socket", sock, `TARGET_TLS_CA="` + sock + `": is a socket, not a regular file`},
		{"a directory", dir, `TARGET_TLS_CA="` + dir + `": cannot be read (is a directory)`},
		{"larger than a bundle", huge, `TARGET_TLS_CA="` + huge + `": is `},
		{"at the limit", atLimit, ""},
	}
	if _, err := os.Stat("/dev/tty"); err == nil {
		// A device, whether it opens (a terminal) or not (no controlling
		// terminal: ENXIO, as a socket's open fails).
		cases = append(cases, testCase{"a terminal device", "/dev/tty", `TARGET_TLS_CA="/dev/tty": is a device, not a regular file`})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", "TARGET_TLS": "verify-ca", "TARGET_TLS_CA": tc.path}
			done := make(chan error, 1)
			go func() { _, err := Parse(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); done <- err }()
			var err error
			select {
			case err = <-done:
			case <-time.After(20 * time.Second): // a hang, not a speed: Parse reads no network
				t.Fatalf("Parse with TARGET_TLS_CA=%s has not returned", tc.path)
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == "":
			case err == nil:
				t.Fatalf("accepted TARGET_TLS_CA=%s", tc.path)
			case !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "accepted: "):
				t.Errorf("error %q, want it to contain %q and what is accepted", err, tc.want)
			}
		})
	}
}

// A TARGET_TLS_CA swapped for a FIFO while it is read (a volume whose
// file is replaced by a symlink swap, as Kubernetes and secret agents
// rotate files) is refused, never waited on: the file is opened without
// blocking and what was opened is checked, not what the path was a moment
// before. The swap must land between a check and an open, so many reads
// run; a small file keeps each one short.
func TestCAFileSwappedForAFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo, regular, path := filepath.Join(dir, "ca.fifo"), filepath.Join(dir, "ca.pem"), filepath.Join(dir, "current")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(regular, []byte("# read, not parsed, here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	swap := func(target string) {
		tmp := path + ".tmp"
		if err := os.Symlink(target, tmp); err != nil {
			t.Error(err)
			return
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Error(err)
		}
	}
	swap(regular)
	stop, swapped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(swapped)
		for {
			select {
			case <-stop:
				return
			default:
			}
			swap(fifo)
			swap(regular)
		}
	}()
	var reads atomic.Int64
	read := make(chan error, 1)
	go func() {
		var err error
		for range 20000 {
			if _, e := readCAFile(path); e != nil && !strings.Contains(e.Error(), "named pipe") {
				err = e
				break
			}
			reads.Add(1)
		}
		read <- err
	}()
	defer func() {
		close(stop)
		<-swapped
		// Let a read blocked on the FIFO go: a writer opening ends its wait.
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	}()
	// A hang, not a speed: one read of a small local file has stalled,
	// however slowly the machine runs the rest.
	for last := int64(-1); ; {
		select {
		case err := <-read:
			if err != nil {
				t.Fatalf("readCAFile: %v", err)
			}
			return
		case <-time.After(10 * time.Second):
			if n := reads.Load(); n == last {
				t.Fatalf("readCAFile has waited on the FIFO swapped in between its checks (after %d reads)", n)
			} else {
				last = n
			}
		}
	}
}
