package imagetest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testenv"
)

// Stand-in base images. They are made with `docker import` (no registry is
// reachable), tagged, and reused while their recipe is unchanged; a new
// machine, busybox or Go toolchain rebuilds them.
const (
	runtimeStandinRepo = "sidecar-standin/runtime"
	goStandinRepo      = "sidecar-standin/go"
	recipeLabel        = "org.example.sidecar.standin-recipe"
	// recipeVersion changes whenever the way a stand-in is assembled changes.
	recipeVersion = "4"
)

type standins struct {
	Runtime string // RUNTIME_IMAGE: busybox rootfs with Alpine's account files
	Go      string // GO_IMAGE: the same plus the machine's Go toolchain
}

// staticBusybox returns the path of a statically linked busybox, or skips
// the test (fails it in CI). Debian's dynamic busybox package would need
// the host's libc inside the image.
func staticBusybox(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		dynamic := false
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				dynamic = true
			}
		}
		f.Close()
		if !dynamic {
			return p
		}
	}
	testenv.Unavailable(t, "busybox-static: no statically linked busybox in /bin or /usr/bin (install Debian's busybox-static package)")
	return ""
}

// hostGo describes the Go toolchain that runs this test.
type hostGo struct{ root, version string }

func findHostGo(t testing.TB) hostGo {
	t.Helper()
	out, err := exec.Command("go", "env", "GOROOT", "GOVERSION").Output()
	if err != nil {
		t.Fatalf("go env GOROOT GOVERSION: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		t.Fatalf("go env GOROOT GOVERSION: unexpected output %q", out)
	}
	return hostGo{root: f[0], version: f[1]}
}

// ensureStandins returns the stand-in images, building any that are missing
// or were made by another recipe.
func ensureStandins(t testing.TB, d docker) standins {
	t.Helper()
	busybox := staticBusybox(t)
	goTC := findHostGo(t)
	bbSum, err := fileSHA256(busybox)
	if err != nil {
		t.Fatal(err)
	}
	base := rootfsFiles()
	runtimeRecipe := recipeHash(recipeVersion, bbSum, base)
	s := standins{
		Runtime: runtimeStandinRepo + ":busybox",
		Go:      goStandinRepo + ":" + goTC.version,
	}
	goRecipe := recipeHash(runtimeRecipe, goTC.root, goTC.version)
	pathEnv := "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, img := range []struct {
		ref, recipe string
		changes     []string
		extra       func(*tar.Writer) error
	}{
		{s.Runtime, runtimeRecipe, []string{"ENV " + pathEnv, `CMD ["/bin/sh"]`}, nil},
		// Like the official golang image: toolchain on PATH, GOPATH=/go,
		// GOTOOLCHAIN=local. Nothing more (no GOPROXY, no GOFLAGS): the
		// Dockerfile itself must say what the build may fetch.
		{s.Go, goRecipe, []string{
			"ENV PATH=/usr/local/go/bin:/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"ENV GOPATH=/go", "ENV GOTOOLCHAIN=local", "ENV GOLANG_VERSION=" + strings.TrimPrefix(goTC.version, "go"),
			"WORKDIR /go", `CMD ["/bin/sh"]`,
		}, func(tw *tar.Writer) error {
			if err := addDir(tw, "go", 0o755); err != nil {
				return err
			}
			return addTree(tw, goTC.root, "usr/local/go")
		}},
	} {
		got, err := d.output(context.Background(), "image", "inspect", "--format",
			fmt.Sprintf("{{.Id}} {{index .Config.Labels %q}}", recipeLabel), img.ref)
		old := strings.Fields(got)
		if err == nil && len(old) == 2 && old[1] == img.recipe {
			t.Logf("stand-in %s: reused", img.ref)
			continue
		}
		start := time.Now()
		changes := append([]string{"LABEL " + recipeLabel + "=" + img.recipe}, img.changes...)
		if err := importRootfs(d, img.ref, changes, busybox, base, img.extra); err != nil {
			t.Fatalf("make stand-in %s: %v", img.ref, err)
		}
		t.Logf("stand-in %s: imported in %v", img.ref, time.Since(start).Round(10*time.Millisecond))
		if err == nil && len(old) > 0 {
			// The outdated stand-in lost its tag; don't leave it dangling.
			_, _ = d.output(context.Background(), "rmi", old[0])
		}
	}
	return s
}

// importRootfs streams a rootfs tarball into `docker import`.
func importRootfs(d docker, ref string, changes []string, busybox string, files []rootFile, extra func(*tar.Writer) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"import"}
	for _, c := range changes {
		args = append(args, "--change", c)
	}
	args = append(args, "-", ref)
	pr, pw := io.Pipe()
	c := d.command(ctx, args...)
	c.Stdin = pr
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		return err
	}
	written := make(chan error, 1)
	go writeRootfsTo(pw, busybox, files, extra, written)
	err := c.Wait()
	pr.CloseWithError(errors.New("docker import ended"))
	if err != nil {
		return fmt.Errorf("docker import: %w: %s", err, strings.TrimSpace(out.String()))
	}
	if err := <-written; err != nil {
		// docker import may have taken a truncated tarball: drop the image
		// so a broken stand-in is never reused.
		_, _ = d.output(context.Background(), "rmi", ref)
		return fmt.Errorf("write the rootfs for %s: %w", ref, err)
	}
	return nil
}

// writeRootfsTo writes the tarball, closes w with the outcome and reports it.
func writeRootfsTo(w *io.PipeWriter, busybox string, files []rootFile, extra func(*tar.Writer) error, written chan<- error) {
	tw := tar.NewWriter(w)
	err := writeRootfs(tw, busybox, files)
	if err == nil && extra != nil {
		err = extra(tw)
	}
	if err == nil {
		err = tw.Close()
	}
	w.CloseWithError(err)
	written <- err
}

// writeRootfs lays out a busybox system: the binary, a symlink per applet
// (what `busybox --install -s` does), and the files of rootfsFiles.
func writeRootfs(tw *tar.Writer, busybox string, files []rootFile) error {
	applets, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("%s --list-full: %w", busybox, err)
	}
	return writeRootfsApplets(tw, busybox, strings.Fields(string(applets)), files)
}

// writeRootfsApplets is writeRootfs with the applet list given (a foreign
// busybox cannot list its own).
func writeRootfsApplets(tw *tar.Writer, busybox string, applets []string, files []rootFile) error {
	for _, dir := range []struct {
		name string
		mode int64
	}{
		{"bin", 0o755}, {"sbin", 0o755}, {"etc", 0o755}, {"home", 0o755}, {"root", 0o700},
		{"tmp", 0o1777}, {"usr", 0o755}, {"usr/bin", 0o755}, {"usr/sbin", 0o755},
		{"usr/local", 0o755}, {"usr/local/bin", 0o755}, {"usr/local/sbin", 0o755},
		{"var", 0o755}, {"var/tmp", 0o1777},
	} {
		if err := addDir(tw, dir.name, dir.mode); err != nil {
			return err
		}
	}
	if err := addHostFile(tw, busybox, "bin/busybox"); err != nil {
		return err
	}
	own := map[string]bool{}
	for _, f := range files {
		own[f.name] = true
	}
	for _, a := range applets {
		if a == "bin/busybox" || own[a] {
			continue
		}
		hdr := &tar.Header{Typeflag: tar.TypeSymlink, Name: a, Linkname: "/bin/busybox", Mode: 0o777}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	for _, f := range files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.body))}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.WriteString(tw, f.body); err != nil {
			return err
		}
	}
	return nil
}

func addDir(tw *tar.Writer, name string, mode int64) error {
	return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode})
}

func addHostFile(tw *tar.Writer, src, name string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(fi.Mode().Perm()), Size: fi.Size()}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// addTree copies a host directory tree (files, dirs, symlinks) under prefix,
// owned by root.
func addTree(tw *tar.Writer, root, prefix string) error {
	return filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := path.Join(prefix, filepath.ToSlash(rel))
		fi, err := de.Info()
		if err != nil {
			return err
		}
		switch {
		case de.IsDir():
			return addDir(tw, name, int64(fi.Mode().Perm()))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777})
		case fi.Mode().IsRegular():
			return addHostFile(tw, p, name)
		}
		return nil // sockets, devices: not part of a toolchain
	})
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func recipeHash(parts ...any) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%v\x00", p)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// standinOSVersion is the stand-in's VERSION_ID, which the SBOM's OS
// package URLs carry.
const standinOSVersion = "1"

// rootFile is a file the stand-in rootfs gets beyond busybox itself.
type rootFile struct {
	name string
	mode int64
	body string
}

// rootfsFiles are Alpine's account files, trimmed. No adduser/addgroup:
// the Dockerfile adds its account by editing these files in a stage on the
// build platform, and a stand-in without the tools keeps it that way.
func rootfsFiles() []rootFile {
	return []rootFile{
		{"etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n"},
		{"etc/group", 0o644, "root:x:0:root\nnogroup:x:65533:\nnobody:x:65534:\n"},
		{"etc/shadow", 0o640, "root:*::0:::::\nnobody:!::0:::::\n"},
		{"etc/os-release", 0o644, "NAME=\"sidecar test stand-in (busybox-static)\"\nID=sidecar-standin\nVERSION_ID=" + standinOSVersion + "\n"},
	}
}
