package imagetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A RUNTIME_IMAGE whose /etc/passwd and /etc/group lack a final newline
// (hand-made or distroless-style bases) still gets the sidecar account on
// a line of its own, and its own last entries stay intact.
func TestAccountsOnBaseWithoutFinalNewline(t *testing.T) {
	d := requireDocker(t)
	s := ensureStandins(t, d)
	busybox := staticBusybox(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	var files []rootFile
	for _, f := range rootfsFiles() {
		if f.name == "etc/passwd" || f.name == "etc/group" {
			f.body = strings.TrimRight(f.body, "\n")
		}
		files = append(files, f)
	}
	base := "sidecar-imagetest-nonewline:" + suffix
	if err := importRootfs(d, base, []string{"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, busybox, files, nil); err != nil {
		t.Fatalf("make stand-in %s: %v", base, err)
	}
	t.Cleanup(func() { _, _ = d.output(context.Background(), "rmi", base) })
	tag := "sidecar-imagetest-accounts:" + suffix
	dockerBuild(t, d, standins{Go: s.Go, Runtime: base}, tag)

	name := containerName(t)
	d.must(t, "create", "--network", "host", "--name", name, tag)
	d.removeOnCleanup(t, name)
	dir := t.TempDir()
	for file, want := range map[string][]string{
		"passwd": {"root:x:0:0:root:/root:/bin/sh", "nobody:x:65534:65534:nobody:/:/sbin/nologin", "sidecar:x:1000:1000:Linux User,,,:/nonexistent:/sbin/nologin"},
		"group":  {"root:x:0:root", "nogroup:x:65533:", "nobody:x:65534:", "sidecar:x:1000:"},
	} {
		dst := filepath.Join(dir, file)
		d.must(t, "cp", name+":/etc/"+file, dst)
		got, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n"); strings.Join(lines, "\n") != strings.Join(want, "\n") {
			t.Errorf("/etc/%s of an image on a base without a final newline:\n%s\nwant the base's lines, then the sidecar account's:\n%s", file, got, strings.Join(want, "\n"))
		}
	}
	if got := d.must(t, "run", "--rm", "--network", "host", "--name", containerName(t), "--entrypoint", "id", tag); got != "uid=1000(sidecar) gid=1000(sidecar) groups=1000(sidecar)" {
		t.Errorf("id in the image = %q, want the sidecar account by name", got)
	}
}

// A RUNTIME_IMAGE with an account whose primary group is 1000 has gid
// 1000 taken even when /etc/group lacks it: the build stops, saying so,
// rather than make that account a member of the sidecar group.
func TestAccountsRefuseBaseWithPrimaryGID1000(t *testing.T) {
	d := requireDocker(t)
	s := ensureStandins(t, d)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	var files []rootFile
	for _, f := range rootfsFiles() {
		if f.name == "etc/passwd" {
			f.body += "app:x:1001:1000:app:/:/sbin/nologin\n"
		}
		files = append(files, f)
	}
	base := "sidecar-imagetest-gid1000:" + suffix
	if err := importRootfs(d, base, []string{"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, staticBusybox(t), files, nil); err != nil {
		t.Fatalf("make stand-in %s: %v", base, err)
	}
	t.Cleanup(func() { _, _ = d.output(context.Background(), "rmi", base) })
	tag := "sidecar-imagetest-gid1000-build:" + suffix
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	out, err := d.combined(ctx, dockerBuildArgs(t, standins{Go: s.Go, Runtime: base}, tag)...)
	if err == nil {
		_, _ = d.output(context.Background(), "rmi", tag)
		t.Fatalf("the image built on a base whose account app has primary gid 1000; want the build refused")
	}
	for _, want := range []string{"RUNTIME_IMAGE already has a sidecar account or uid/gid 1000", "app:x:1001:1000:"} {
		if !strings.Contains(out, want) {
			t.Errorf("build on a base with primary gid 1000 failed without saying %q:\n%s", want, tail(out, 30))
		}
	}
}
