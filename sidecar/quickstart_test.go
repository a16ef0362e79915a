package main

import (
	"bufio"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/internal/testmysql"
	"github.com/example/sidecar/sidecar/internal/config"
)

// quickStartMarker precedes, in README.md, the quick-start sh block that
// needs no Docker.
const quickStartMarker = "<!-- quickstart-no-docker"

// quickStartBlock returns the lines of the first sh block after the marker.
func quickStartBlock(readme string) ([]string, error) {
	_, after, ok := strings.Cut(readme, quickStartMarker)
	if !ok {
		return nil, fmt.Errorf("README.md has no %q marker", quickStartMarker)
	}
	_, after, ok = strings.Cut(after, "```sh\n")
	if !ok {
		return nil, fmt.Errorf("no ```sh block after the %q marker", quickStartMarker)
	}
	block, _, ok := strings.Cut(after, "```")
	if !ok {
		return nil, fmt.Errorf("the sh block after %q is not closed", quickStartMarker)
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(block))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// The README's quick start without Docker works as pasted, in a fresh
// clone of this repository, against a MariaDB: it builds a static binary
// where the next line runs it, the sidecar forwards, reports healthy,
// serves metrics and exits 0 on SIGTERM. Only what a reader must adapt to
// their own database is replaced: the MySQL port and the user (whose
// password, given as MYSQL_PWD in the block so that no prompt swallows the
// lines pasted after it), and the ports, which may be busy here. It is
// pasted through a pseudo-terminal into an interactive bash, as a reader's
// paste arrives.
func TestQuickStartAsPasted(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the sidecar in a fresh clone (5-10 s); TestReadmeBlocksDoNotPrompt still reads the README blocks; the TestBinary tests and TestEndToEndMariaDB run the built binary")
	}
	t.Parallel() // its own clone, server and free ports
	for _, tool := range []string{"git", "go", "bash", "curl", "mysql"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, "%s not on PATH (the quick start uses it; Debian packages git, golang, bash, curl, mariadb-client)", tool)
		}
	}
	if _, err := exec.LookPath("script"); err != nil {
		testenv.Unavailable(t, "script not on PATH (util-linux's, from Debian's bsdutils: it gives the paste a pseudo-terminal)")
	}
	srv := testmysql.Start(t)

	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v", err)
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v", err)
	}
	clone := filepath.Join(t.TempDir(), "sidecar")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"clone", "--quiet", "--no-local", strings.TrimSpace(string(root)), clone},
		{"-C", clone, "checkout", "--quiet", "--detach", strings.TrimSpace(string(head))},
	} {
		if out, err := exec.CommandContext(ctx, "git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	readme, err := os.ReadFile(filepath.Join(clone, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines, err := quickStartBlock(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	script := strings.Join(lines, "\n")
	// The block's ports may be held by other tests or programs here: use
	// free ones, the admin port through ADMIN_PORT as a reader would.
	listen, adminPort := strconv.Itoa(testkit.FreePort(t)), strconv.Itoa(testkit.FreePort(t))
	for _, r := range []struct{ old, new string }{
		{"TARGET_PORT=3306", "TARGET_PORT=" + strconv.Itoa(srv.Port)},
		{"LISTEN_PORT=13306", "LISTEN_PORT=" + listen},
		{"-P 13306", "-P " + listen},
		{"127.0.0.1:" + config.Default("ADMIN_PORT"), "127.0.0.1:" + adminPort},
		{"MYSQL_PWD='app-password' ", "MYSQL_PWD='" + srv.Password + "' "},
		{"-u app ", "-u " + srv.User + " "},
	} {
		if !strings.Contains(script, r.old) {
			t.Fatalf("quick start has no %q to adapt to the test's MariaDB:\n%s", r.old, script)
		}
		script = strings.ReplaceAll(script, r.old, r.new)
	}

	// Pasted as one piece into an interactive shell on a terminal: a
	// prompt (mysql -p) would read the lines pasted after it.
	bin := filepath.Join(clone, "bin", "sidecar")
	t.Cleanup(func() { killByExecutable(bin) }) // a failed paste can leave its background sidecar running
	pasteCtx, cancelPaste := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelPaste()
	cmd := exec.CommandContext(pasteCtx, "script", "--quiet", "--return", "--command", "bash --noprofile --norc -i", "/dev/null")
	cmd.Dir = clone
	cmd.Env = append(os.Environ(), "ADMIN_PORT="+adminPort, "PS1=$ ", "TERM=dumb")
	cmd.Stdin = strings.NewReader(script + "\nexit\n")
	out, err := cmd.CombinedOutput()
	text := strings.ReplaceAll(string(out), "\r\n", "\n")
	if pasteCtx.Err() != nil {
		t.Fatalf("the pasted quick start did not finish within 2 minutes: a prompt may have read the lines pasted after it\n--- script\n%s\n--- output\n%s", script, text)
	}
	if err != nil {
		t.Fatalf("quick start failed: %v\n--- script\n%s\n--- output\n%s", err, script, text)
	}
	for _, want := range []string{
		"\nhealthy\n",                // sidecar healthcheck
		"sidecar_connections_total{", // curl …/metrics | grep
		`"msg":"forwarding"`,         // the sidecar's own log
		"sidecar exited with 0",      // kill $SIDECAR; wait $SIDECAR
		`"msg":"stopped","connections_cut":0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("quick start output lacks %q\n--- output\n%s", want, text)
		}
	}
	if n := strings.Count(text, "\nhealthy\n"); n != 1 {
		t.Errorf("healthy printed %d times, want once (sidecar healthcheck prints it itself)\n--- output\n%s", n, text)
	}
	if strings.Count(text, "| 1 |") < 2 { // mysql -e 'SELECT 1' through the sidecar: on a terminal, a table
		t.Errorf("mysql through the sidecar printed no row 1\n--- output\n%s", text)
	}
	if strings.Contains(text, `"level":"ERROR"`) {
		t.Errorf("the sidecar logged an error\n--- output\n%s", text)
	}

	// The README promises a static binary.
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("the quick start built no ELF binary at bin/sidecar: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("bin/sidecar is dynamically linked (has PT_INTERP)")
		}
	}
}

// killByExecutable kills every process running the program at path.
func killByExecutable(path string) {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if exe, err := os.Readlink(filepath.Join(p, "exe")); err == nil && exe == path {
			if pid, err := strconv.Atoi(filepath.Base(p)); err == nil {
				if proc, err := os.FindProcess(pid); err == nil {
					_ = proc.Kill()
				}
			}
		}
	}
}

func TestQuickStartBlock(t *testing.T) {
	readme := "# x\n```sh\nno\n```\n" + quickStartMarker + " … -->\n```sh\na  \n\nb\n```\n```sh\nc\n```\n"
	got, err := quickStartBlock(readme)
	if err != nil || strings.Join(got, "|") != "a|b" {
		t.Errorf("quickStartBlock = %q, %v; want [a b]", got, err)
	}
	if _, err := quickStartBlock("no marker"); err == nil {
		t.Error("no error without the marker")
	}
}

// No README shell block prompts in the middle (a `mysql -p` password prompt
// swallows every line pasted after it), so each block works pasted whole.
func TestReadmeBlocksDoNotPrompt(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	prompt := regexp.MustCompile(`\bmysql(dump|admin)?\b[^\n#]*\s(-p|--password)(\s|$)|\bread\s+-|\bsudo\b|\baws configure\b`)
	blocks := codeBlocks(string(b), "sh")
	for _, block := range blocks {
		for _, l := range strings.Split(block, "\n") {
			if prompt.MatchString(l) {
				t.Errorf("README line prompts for input, which swallows the lines pasted after it: %s", l)
			}
		}
	}
	if len(blocks) == 0 {
		t.Fatal("no sh blocks in README")
	}
}
