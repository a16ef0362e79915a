package doclinks

import (
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var (
	backgroundRE = regexp.MustCompile(`(^|\s)&(\s|$)`)
	envAssignRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
)

// startsForegroundSidecar reports whether a shell line runs the sidecar
// (its binary with no command, or docker run without -d) in the
// foreground: the lines pasted after it wait until it stops.
func startsForegroundSidecar(line string) bool {
	line, _, _ = strings.Cut(line, " #")
	if backgroundRE.MatchString(line) {
		return false
	}
	f := strings.Fields(line)
	for len(f) > 0 && envAssignRE.MatchString(f[0]) {
		f = f[1:]
	}
	switch {
	case len(f) >= 2 && f[0] == "docker" && f[1] == "run":
		return !slices.Contains(f, "-d") && !slices.Contains(f, "--detach")
	case len(f) == 1:
		return path.Base(f[0]) == "sidecar"
	}
	return false
}

// shBlocks returns the lines of md's sh code blocks, one slice per block,
// without blank lines.
func shBlocks(md string) [][]string {
	var blocks [][]string
	var cur []string
	in := false
	for line := range strings.Lines(md) {
		t := strings.TrimSpace(line)
		switch {
		case !in && t == "```sh":
			in, cur = true, nil
		case in && strings.HasPrefix(t, "```"):
			in = false
			blocks = append(blocks, cur)
		case in && t != "":
			cur = append(cur, t)
		}
	}
	return blocks
}

func TestStartsForegroundSidecar(t *testing.T) {
	for line, want := range map[string]bool{
		"docker run --rm --network host -e TARGET_HOST=127.0.0.1 sidecar:latest":             true,
		"docker run -d --rm --name try --network host -e LISTEN_PORT=13306 sidecar:latest":   false,
		"TARGET_HOST=127.0.0.1 LISTEN_PORT=13306 ./bin/sidecar":                              true,
		"TARGET_HOST=127.0.0.1 LISTEN_PORT=13306 ./bin/sidecar & SIDECAR=$!":                 false,
		"./bin/sidecar healthcheck        # asks 127.0.0.1:9911/readyz":                      false,
		"MYSQL_PWD='x' mysql -h 127.0.0.1 -P 13306 -u app -e 'SELECT 1'   # through sidecar": false,
	} {
		if got := startsForegroundSidecar(line); got != want {
			t.Errorf("startsForegroundSidecar(%q) = %v, want %v", line, got, want)
		}
	}
}

// A docs block that starts the sidecar in the foreground ends there: pasted
// whole, the lines after it would run only once the sidecar had stopped
// (the README's mysql line then got "Can't connect to server").
func TestDocsBlocksDoNotWaitOnTheSidecar(t *testing.T) {
	for _, d := range userDocs(t) {
		for _, block := range shBlocks(d.text) {
			for _, line := range block[:max(len(block)-1, 0)] {
				if startsForegroundSidecar(line) {
					t.Errorf("%s: %q runs the sidecar in the foreground, so the block's next lines wait until it stops: run it with -d (docker) or & (the binary)", d.path, line)
				}
			}
		}
	}
}

// No README block pushes to ECR along with other commands: pasted whole
// to try the build, it would also push, with whatever AWS credentials the
// shell holds, and create the repository.
func TestReadmeBlocksPushOnlyAlone(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range shBlocks(string(b)) {
		for _, line := range block {
			if strings.Contains(line, "mage push") && len(block) > 1 {
				t.Errorf("README: %q shares its block with %d other line(s): pasted whole to try them, the block pushes too", line, len(block)-1)
			}
		}
	}
}
