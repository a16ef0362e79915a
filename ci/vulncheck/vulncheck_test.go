package vulncheck

import (
	"context"
	"debug/elf"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/ci/vulncheck/vulndbtest"
	"github.com/example/sidecar/internal/sidecarbin"
)

// The sidecar as the Dockerfile builds it keeps its symbol table, so a
// finding affects it only when the vulnerable function is linked in. The
// entries name functions the forwarder calls (net.ListenConfig.Listen,
// net.Dialer.DialContext) and ones it does not (net.Listen, anything in
// net/smtp); the latter must not fail the check, which they would if the
// Dockerfile stripped the binary again (-ldflags -s).
func TestScanFindsStdlibVulnerabilityInTheSidecar(t *testing.T) {
	bin := sidecarbin.Build(t, runtime.GOARCH)
	ctx := context.Background()
	stripped, err := Stripped(bin)
	if err != nil {
		t.Fatal(err)
	}
	if stripped {
		t.Error("the sidecar built with the Dockerfile's flags has no symbol table (-ldflags -s?): govulncheck then counts every vulnerability of its Go version")
	}
	syms := symbolTable(t, bin)
	version := "v" + strings.TrimPrefix(runtime.Version(), "go")
	for _, tc := range []struct {
		name     string
		entries  []vulndbtest.Entry
		linked   []string // in the symbol table: the premise of the case
		unlinked []string // package prefixes or symbols absent from it
		affected bool
		want     []string
	}{
		{name: "empty database"},
		{name: "linked stdlib symbols", affected: true,
			entries: []vulndbtest.Entry{vulndbtest.StdlibNow("GO-2026-0001", "net", "ListenConfig.Listen", "Dialer.DialContext")},
			linked:  []string{"net.(*ListenConfig).Listen", "net.(*Dialer).DialContext"},
			want:    []string{"GO-2026-0001", "stdlib net", version, "net.Dialer.DialContext, net.ListenConfig.Listen"}},
		{name: "whole linked package (no symbols listed)", affected: true,
			entries: []vulndbtest.Entry{vulndbtest.StdlibNow("GO-2026-0002", "net")},
			want:    []string{"GO-2026-0002", "stdlib net", " more"}},
		{name: "symbol not linked, package linked",
			entries:  []vulndbtest.Entry{vulndbtest.StdlibNow("GO-2026-0003", "net", "Listen")},
			unlinked: []string{"net.Listen"},
			want:     []string{"GO-2026-0003", "stdlib net", "(not in the binary's code)"}},
		{name: "package not linked",
			entries: []vulndbtest.Entry{
				vulndbtest.StdlibNow("GO-2026-0004", "net/smtp", "SendMail"),
				vulndbtest.StdlibNow("GO-2026-0005", "net/smtp"),
			},
			unlinked: []string{"net/smtp."},
			want:     []string{"GO-2026-0004", "GO-2026-0005", "(not in the binary's code)"}},
		{name: "fixed before this toolchain",
			entries: []vulndbtest.Entry{{ID: "GO-2026-0006", Module: "stdlib", Package: "net", Symbols: []string{"Dialer.DialContext"}, Fixed: "1.20.0"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !stripped {
				for _, s := range tc.linked {
					if !syms[s] {
						t.Fatalf("premise: %s is not in the sidecar's symbol table any more; pick a function it links", s)
					}
				}
				for _, p := range tc.unlinked {
					for s := range syms {
						if s == p || strings.HasSuffix(p, ".") && strings.HasPrefix(s, p) {
							t.Fatalf("premise: the sidecar now links %s; pick a function it does not", s)
						}
					}
				}
			}
			db := vulndbtest.Write(t, tc.entries...)
			if modified, err := Probe(ctx, db); err != nil || !modified.Equal(vulndbtest.Modified()) {
				t.Fatalf("Probe: %v, modified %v; want %v", err, modified, vulndbtest.Modified())
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

// symbolTable is the set of function names in the ELF binary's symbol
// table, as `go tool nm` prints them (net.(*Dialer).DialContext).
func symbolTable(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return nil // stripped: reported by the caller
	}
	m := make(map[string]bool, len(syms))
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			m[s.Name] = true
		}
	}
	return m
}

func TestTableNamesAFewSymbols(t *testing.T) {
	for _, tc := range []struct {
		syms []string
		want string
	}{
		{nil, "(not in the binary's code)"},
		{[]string{"net.Dial"}, "net.Dial\n"},
		{[]string{"a.A", "a.B", "a.C"}, "a.A, a.B, a.C\n"},
		{[]string{"a.A", "a.B", "a.C", "a.D", "a.E"}, "a.A, a.B, a.C and 2 more\n"},
	} {
		var b strings.Builder
		Table(&b, "linux/amd64", []Finding{{OSV: "GO-2026-0001", Module: "stdlib", Package: "a", Found: "v1.26.0", Symbols: tc.syms}})
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("symbols %q: table lacks %q:\n%s", tc.syms, tc.want, b.String())
		}
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
	if _, err := Probe(ctx, "http://"+l.Addr().String()); err == nil {
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
	if _, err := Probe(context.Background(), "file:///nonexistent"); err == nil || !strings.Contains(err.Error(), "index/modules.json") {
		t.Errorf("Probe of a missing directory: %v", err)
	}
}
