package imagetest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/example/sidecar/internal/testenv"
)

// arm64BusyboxDefault is where .ci/run unpacks Debian's busybox-static:arm64
// (not installed: it would replace the host's busybox-static).
const arm64BusyboxDefault = "/var/cache/sidecar-ci/busybox-arm64/bin/busybox"

// arm64Busybox returns a static aarch64 busybox (SIDECAR_ARM64_BUSYBOX, or
// where .ci/run puts it), or skips the test (fails it in CI).
func arm64Busybox(t *testing.T) string {
	t.Helper()
	p := os.Getenv("SIDECAR_ARM64_BUSYBOX")
	if p == "" {
		p = arm64BusyboxDefault
	}
	f, err := elf.Open(p)
	if err != nil {
		testenv.Unavailable(t, "arm64 busybox-static: %v (dpkg --add-architecture arm64 && apt-get update && apt-get download busybox-static:arm64 && dpkg-deb -x busybox-static_*_arm64.deb /var/cache/sidecar-ci/busybox-arm64, or set SIDECAR_ARM64_BUSYBOX)", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		t.Fatalf("%s is a %v binary, want aarch64", p, f.Machine)
	}
	return p
}

// arm64Runtime makes an arm64 RUNTIME_IMAGE stand-in: the runtime
// stand-in's rootfs around an aarch64 busybox, loaded with `docker load`
// from an archive whose config says arm64 (`docker import --platform`
// does not set the architecture). The applet list comes from the host's
// busybox of the same Debian package: the arm64 one cannot run here.
func arm64Runtime(t *testing.T, d docker) string {
	t.Helper()
	bb := arm64Busybox(t)
	host := staticBusybox(t)
	sum, err := fileSHA256(bb)
	if err != nil {
		t.Fatal(err)
	}
	ref := runtimeStandinRepo + ":busybox-arm64"
	recipe := recipeHash(recipeVersion, "arm64", sum, rootfsFiles())
	if got, err := d.output(context.Background(), "image", "inspect", "--format",
		fmt.Sprintf("{{.Architecture}} {{index .Config.Labels %q}}", recipeLabel), ref); err == nil && strings.TrimSpace(got) == "arm64 "+recipe {
		t.Logf("stand-in %s: reused", ref)
		return ref
	}
	applets, err := exec.Command(host, "--list-full").Output()
	if err != nil {
		t.Fatalf("%s --list-full: %v", host, err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	if err := writeRootfsApplets(tw, bb, strings.Fields(string(applets)), rootfsFiles()); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	diffID := sha256.Sum256(layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": "arm64", "os": "linux",
		"config": map[string]any{
			"Env":    []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"Cmd":    []string{"/bin/sh"},
			"Labels": map[string]string{recipeLabel: recipe},
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diffID[:])}},
	})
	manifest, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{ref}, "Layers": []string{"layer.tar"}}})
	var archive bytes.Buffer
	aw := tar.NewWriter(&archive)
	for _, f := range []struct {
		name string
		body []byte
	}{{"config.json", config}, {"layer.tar", layer.Bytes()}, {"manifest.json", manifest}} {
		if err := aw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := aw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	c := d.command(context.Background(), "load")
	c.Stdin = &archive
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("docker load %s: %v\n%s", ref, err, out)
	}
	if arch := d.inspect(t, "{{.Architecture}}", ref); arch != "arm64" {
		t.Fatalf("loaded %s is %q, want arm64", ref, arch)
	}
	t.Logf("stand-in %s: loaded", ref)
	return ref
}

// An arm64 image builds on an amd64 host with no QEMU: the Go build and the
// account files happen on the build platform, the arm64 stage only copies.
func TestBuildArm64WithoutEmulation(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("cross-builds arm64 from an amd64 host")
	}
	d := requireDocker(t)
	s := ensureStandins(t, d)
	if entries, err := filepath.Glob("/proc/sys/fs/binfmt_misc/*aarch64*"); err == nil && len(entries) > 0 {
		t.Logf("note: %v registered: this host could run arm64 code, so the build passing does not prove nothing arm64 ran", entries)
	}
	arm := standins{Go: s.Go, Runtime: arm64Runtime(t, d)}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tag := "sidecar-imagetest-arm64:" + hex.EncodeToString(b)
	dockerBuild(t, d, arm, tag, "--platform", "linux/arm64")

	if arch := d.inspect(t, "{{.Os}}/{{.Architecture}}", tag); arch != "linux/arm64" {
		t.Errorf("image platform %s, want linux/arm64", arch)
	}
	if user := d.inspect(t, "{{.Config.User}}", tag); user != "1000:1000" {
		t.Errorf("USER %q, want 1000:1000", user)
	}
	if f := copyBinary(t, d, tag, "/usr/local/bin/sidecar"); f.Machine != elf.EM_AARCH64 {
		t.Errorf("binary is %v, want aarch64", f.Machine)
	}
	name := containerName(t)
	d.must(t, "create", "--network", "host", "--name", name, tag)
	d.removeOnCleanup(t, name)
	dir := t.TempDir()
	for file, want := range map[string][]string{
		"passwd": {"root:x:0:0:root:/root:/bin/sh", "sidecar:x:1000:1000:Linux User,,,:/nonexistent:/sbin/nologin"},
		"group":  {"root:x:0:root", "sidecar:x:1000:"},
	} {
		dst := filepath.Join(dir, file)
		d.must(t, "cp", name+":/etc/"+file, dst)
		got, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(got)), "\n")
		for _, w := range want {
			found := false
			for _, l := range lines {
				found = found || l == w
			}
			if !found {
				t.Errorf("/etc/%s lacks %q (the runtime base's entries plus the sidecar account):\n%s", file, w, got)
			}
		}
	}
}
