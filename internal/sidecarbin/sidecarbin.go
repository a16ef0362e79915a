// Package sidecarbin builds the real sidecar binary for tests, with the
// flags of the Dockerfile's `go build` line (read from the Dockerfile, so
// the two cannot drift), so checks that read a binary (govulncheck, build
// info for the SBOM) read what the image ships.
//
//	bin := sidecarbin.Build(t, "arm64") // linux/arm64, version and commit "test"
package sidecarbin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Stamp is what Build passes for the Dockerfile's VERSION and REVISION
// build args.
const Stamp = "test"

// Build compiles ./sidecar of this module for linux/goarch into a test
// temporary directory and returns the binary's path.
func Build(t testing.TB, goarch string) string {
	t.Helper()
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	dir := strings.TrimSpace(string(root))
	df, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	flags, err := BuildFlags(string(df), map[string]string{"VERSION": Stamp, "REVISION": Stamp})
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	out := filepath.Join(t.TempDir(), "sidecar-"+goarch)
	args := append(append([]string{"build"}, flags...), "-o", out, "./sidecar")
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	// As the Dockerfile's build stage ENV (CGO_ENABLED, GOFLAGS) and TARGETOS/TARGETARCH.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOFLAGS=-mod=readonly")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s for %s: %v\n%s", strings.Join(args, " "), goarch, err, b)
	}
	return out
}

// BuildFlags returns the flags of the `go build` command in dockerfile's
// RUN instructions (what comes between "go build" and "-o"), with ${NAME}
// and $NAME replaced from vars and double quotes removed as the shell
// does. A variable not in vars is an error, as is anything but exactly
// one `go build` command.
func BuildFlags(dockerfile string, vars map[string]string) ([]string, error) {
	var found []string
	for _, run := range runCommands(dockerfile) {
		words, err := shellWords(run)
		if err != nil {
			return nil, fmt.Errorf("RUN %s: %w", run, err)
		}
		for i := 0; i+1 < len(words); i++ {
			if words[i] != "go" || words[i+1] != "build" {
				continue
			}
			if found != nil {
				return nil, errors.New("more than one `go build` command")
			}
			found = []string{}
			for _, w := range words[i+2:] {
				if w == "-o" {
					break
				}
				var missing []string
				w = os.Expand(w, func(name string) string {
					v, ok := vars[name]
					if !ok {
						missing = append(missing, name)
					}
					return v
				})
				if missing != nil {
					return nil, fmt.Errorf("`go build` flag uses $%s, which has no value here (have %v)", missing[0], keys(vars))
				}
				found = append(found, w)
			}
		}
	}
	if found == nil {
		return nil, errors.New("no `go build` command in a RUN instruction")
	}
	return found, nil
}

// runCommands returns the command of each RUN instruction, continuation
// lines joined and comment lines dropped.
func runCommands(dockerfile string) []string {
	var runs []string
	var cur strings.Builder
	in := false
	for _, line := range strings.Split(dockerfile, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if !in {
			instr, rest, _ := strings.Cut(trimmed, " ")
			if !strings.EqualFold(instr, "RUN") {
				continue
			}
			in, trimmed = true, strings.TrimSpace(rest)
		}
		body, more := strings.CutSuffix(trimmed, `\`)
		cur.WriteString(body + " ")
		if !more {
			runs = append(runs, strings.TrimSpace(cur.String()))
			cur.Reset()
			in = false
		}
	}
	return runs
}

// shellWords splits s at blanks, keeping double-quoted text (which the
// Dockerfile's go build line uses for -ldflags) as one word. Separators
// (; && |) end up as words of their own or glued to one; neither matters
// for finding "go build ... -o".
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case !quoted && (r == ' ' || r == '\t'):
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		return nil, errors.New("unterminated double quote")
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
