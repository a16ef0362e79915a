package imagetest

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// moduleProxy serves this machine's Go module cache as a GOPROXY on
// loopback, for the image build's one download (aws-sdk-go-v2): the
// cache's download directory has the proxy protocol's layout. The build
// runs with --network=host, and this is the only address it may reach.
// The modules are there: `go test` loaded every package's dependencies
// before this test ran.
func moduleProxy(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOMODCACHE: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "cache", "download")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("module cache: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}
