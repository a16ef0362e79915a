package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parseJSONBlock accepts a JSON document, JSON lines (log examples), or the
// members of an object (a fragment to add to a container definition).
func parseJSONBlock(block string) error {
	var v any
	err := json.Unmarshal([]byte(block), &v)
	if err == nil || json.Unmarshal([]byte("{"+block+"}"), &v) == nil {
		return nil
	}
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		if json.Unmarshal([]byte(l), &v) != nil {
			return err
		}
	}
	return nil
}

// Every JSON block in the README and docs/ is valid JSON, so a task
// definition snippet pastes into the console or a CLI call as it is.
func TestDocsJSONBlocksParse(t *testing.T) {
	files, _ := filepath.Glob("../docs/*.md")
	files = append(files, "../README.md")
	blocks := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rest := string(b)
		for {
			var block string
			var ok bool
			if _, rest, ok = strings.Cut(rest, "```json\n"); !ok {
				break
			}
			block, rest, _ = strings.Cut(rest, "```")
			blocks++
			if err := parseJSONBlock(block); err != nil {
				t.Errorf("%s: a JSON block does not parse (%v):\n%s", f, err, block)
			}
		}
	}
	if blocks == 0 {
		t.Fatal("no JSON blocks found: is the test running from sidecar/?")
	}
}
