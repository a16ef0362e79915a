package imagetest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	t.Cleanup(func() { _, _ = d.output(t.Context(), "rmi", base) })
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
