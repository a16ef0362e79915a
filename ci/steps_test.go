package ci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/example/sidecar/internal/testkit"
)

// TestStepsHelpAgrees ties each pipeline target's `mage -h` text to the
// step list the target runs: the help states StepsHelp word for word, so
// the order it describes is the order the code follows.
func TestStepsHelpAgrees(t *testing.T) {
	t.Parallel()
	docs, err := pipelineTargetDocs("../magefiles/magefile.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"build", "test", "push"} {
		help := strings.Join(strings.Fields(docs[target]), " ")
		want := strings.Join(strings.Fields(StepsHelp(target)), " ")
		if !strings.Contains(help, want) {
			t.Errorf("mage -h %s does not state its steps as Steps(%q) runs them; put this in its doc comment:\n%s", target, target, StepsHelp(target))
		}
	}
}

// TestDocsStateThePushSteps ties docs/pipeline.md's push section to the
// step list: it names the steps in the order push runs them.
func TestDocsStateThePushSteps(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../docs/pipeline.md")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range Steps("push") {
		names = append(names, "`"+s.Name+"`")
	}
	if want := strings.Join(names, " → "); !strings.Contains(string(b), want) {
		t.Errorf("docs/pipeline.md does not state the push steps in order:\n%s", want)
	}
}

func TestStepLists(t *testing.T) {
	t.Parallel()
	names := func(target string) []string {
		var ns []string
		for _, s := range Steps(target) {
			ns = append(ns, s.Name)
		}
		return ns
	}
	for target, want := range map[string][]string{
		"build": {"preflight", "build", "size", "export"},
		"test":  {"preflight", "unit tests", "build", "size", "export", "smoke"},
		"push": {"preflight", "unit tests", "build", "size", "export", "smoke",
			"release plan", "vulncheck", "candidate", "sbom+provenance", "scan gate", "release tags"},
		"lint": nil,
	} {
		if got := names(target); !slices.Equal(got, want) {
			t.Errorf("Steps(%q) = %q, want %q", target, got, want)
		}
	}
	for _, s := range Steps("push") {
		if s.Doc == "" || s.do == nil {
			t.Errorf("step %q has no doc or no run", s.Name)
		}
	}
}

// TestRunStepList checks what a run says of each step: its start, its
// duration, or why it is skipped, and that the first failure ends it.
func TestRunStepList(t *testing.T) {
	t.Parallel()
	var ran []string
	step := func(name, skip string, err error) Step {
		return Step{Name: name, skip: func(*run) string { return skip },
			do: func(context.Context, *run) error { ran = append(ran, name); return err }}
	}
	log := &testkit.LockedBuffer{}
	r := &Runner{Log: log}
	boom := errors.New("boom")
	err := r.runStepList(context.Background(), "push", []Step{
		step("one", "", nil), step("two", "VULN_CHECK=false", nil), step("three", "", boom), step("four", "", nil),
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	// mage prints the error last, where a CI log is read first: it names
	// the step as the "failed after" line above it does.
	if want := `push: step "three" failed: boom`; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	if !slices.Equal(ran, []string{"one", "three"}) {
		t.Errorf("ran %v, want one, three", ran)
	}
	for _, re := range []string{
		`==> push: \[1/4\] one \(\d+\.\ds\)`,
		`==> push: one done in \d+\.\ds`,
		`==> push: \[2/4\] two skipped \(VULN_CHECK=false\)`,
		`==> push: \[3/4\] three \(`,
		`==> push: three failed after \d+\.\ds`,
	} {
		if !regexp.MustCompile(re).MatchString(log.String()) {
			t.Errorf("log lacks %s:\n%s", re, log)
		}
	}
	if strings.Contains(log.String(), "four") {
		t.Errorf("a step after the failure ran or was logged:\n%s", log)
	}
}

// The last step says why it does nothing when the run has no release tag
// (no v* tag on HEAD, PUSH_LATEST=false), as every other skipped step
// does, and runs when it has one.
func TestPushReleaseTagsStepSaysWhyItIsSkipped(t *testing.T) {
	t.Parallel()
	last := len(Steps("push"))
	for _, tc := range []struct {
		name, gitTag string
		want, absent string
	}{
		{"no version tag, no latest", "",
			fmt.Sprintf("==> push: [%d/%d] release tags skipped (no version tag or latest to put on the candidate: no v* git tag on HEAD, PUSH_LATEST=false)", last, last),
			"release tags done in"},
		{"a version tag", "v1.2.3",
			fmt.Sprintf("==> push: [%d/%d] release tags (", last, last),
			"release tags skipped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			immutable := true
			ecrSrv := pushEnv(t, &immutable)
			fe := newLightPushEngine(t, ecrSrv, nil)
			if tc.gitTag != "" {
				gitTag(t, fe.dir, tc.gitTag)
			}
			if err := fe.runner.Push(testCtx(t)); err != nil {
				t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
			}
			if log := fe.log.String(); !strings.Contains(log, tc.want) || strings.Contains(log, tc.absent) {
				t.Errorf("log lacks %q or has %q:\n%s", tc.want, tc.absent, log)
			}
		})
	}
}
