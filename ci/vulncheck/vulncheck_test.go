package vulncheck

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/ci/vulncheck/vulndbtest"
	"github.com/example/sidecar/internal/sidecarbin"
)

func TestScanFindsStdlibVulnerabilityInTheSidecar(t *testing.T) {
	bin := sidecarbin.Build(t, runtime.GOARCH)
	ctx := context.Background()
	if stripped, err := Stripped(bin); err != nil || !stripped {
		t.Fatalf("Stripped(sidecar built as the Dockerfile does) = %v, %v; want true", stripped, err)
	}
	for _, tc := range []struct {
		name     string
		entries  []vulndbtest.Entry
		affected bool
		want     []string
	}{
		{name: "empty database"},
		{name: "called stdlib symbol", affected: true,
			entries: []vulndbtest.Entry{vulndbtest.StdlibNow("GO-2026-0001", "net", "Listen")},
			want:    []string{"GO-2026-0001", "stdlib net", "v" + strings.TrimPrefix(runtime.Version(), "go"), "net.Listen"}},
		// The image's binary is stripped (-s): govulncheck cannot see which
		// packages are linked in, so a vulnerability anywhere in the Go
		// version in use counts.
		{name: "stripped binary: module precision", affected: true,
			entries: []vulndbtest.Entry{vulndbtest.StdlibNow("GO-2026-0002", "net/smtp", "SendMail")},
			want:    []string{"GO-2026-0002", "stdlib net/smtp", "smtp.SendMail"}},
		{name: "fixed before this toolchain",
			entries: []vulndbtest.Entry{{ID: "GO-2026-0003", Module: "stdlib", Package: "net", Symbols: []string{"Listen"}, Fixed: "1.20.0"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := vulndbtest.Write(t, tc.entries...)
			if err := Probe(ctx, db); err != nil {
				t.Fatalf("Probe: %v", err)
			}
			fs, err := Scan(ctx, db, bin)
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			if Affected(fs) != tc.affected {
				t.Fatalf("Affected = %v, want %v; findings %+v", !tc.affected, tc.affected, fs)
			}
			var b strings.Builder
			Table(&b, "linux/"+runtime.GOARCH, fs)
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("table lacks %q:\n%s", w, b.String())
				}
			}
			if tc.affected {
				f := fs[0]
				if f.Found == "" || f.Fixed == "" {
					t.Errorf("finding lacks versions: %+v", f)
				}
			}
		})
	}
}

func TestProbeFailsFast(t *testing.T) {
	// A listener that accepts and never answers: the probe must give up.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if err := Probe(ctx, "http://"+l.Addr().String()); err == nil {
		t.Fatal("Probe of a silent server passed")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Probe took %s", d)
	}
	for _, bad := range []string{"ftp://x", "file://", "http://", "vuln.go.dev"} {
		if err := ValidDB(bad); err == nil {
			t.Errorf("ValidDB(%q) passed", bad)
		}
	}
	if err := Probe(context.Background(), "file:///nonexistent"); err == nil || !strings.Contains(err.Error(), "index/modules.json") {
		t.Errorf("Probe of a missing directory: %v", err)
	}
}
