package msgdoc

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// Every kind of site, and the sites that are not messages, in one file.
func TestCollect(t *testing.T) {
	dir := t.TempDir()
	src := `package p

import ("errors"; "fmt"; "log/slog"; "os"; "github.com/magefile/mage/mg")

func f(log *slog.Logger, stderr *os.File, level slog.Level, n int) {
	log.Error("not started", "err", nil)
	log.Warn("drain deadline " + "passed")
	log.Info("starting")
	log.Debug("connection")
	log.LogAttrs(nil, slog.LevelWarn, fmt.Sprintf("unknown variable %s ignored; did you mean %s?", "a", "b"))
	log.LogAttrs(nil, slog.LevelInfo, "info only")
	log.Log(nil, level, "connection closed")
	limiter(log, slog.LevelError, "dial failed", "dial failed for more clients")
	limiter(log, slog.LevelInfo, "quiet", "quieter")
	fmt.Fprintf(stderr, "unhealthy: %v\n", nil)
	fmt.Fprintf(os.Stderr, "sidecar: unknown command %q; accepted: x\n%s", "a", "b")
	fmt.Fprintf(os.Stdout, "healthy\n")
	_ = fmt.Errorf("push needs git: %w", nil)
	_ = errors.New("no engine")
	_ = mg.Fatalf(1, "go vet: %v", nil)
	_ = fmt.Sprintf("not a message %d", n)
	t.Error(nil)
}

func limiter(*slog.Logger, slog.Level, string, string) {}
`
	if err := os.WriteFile(filepath.Join(dir, "p.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "p_test.go"), []byte("package p\nfunc g(log *slog.Logger) { log.Error(\"test only\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kinds int
		want  []string
	}{
		{Logs, []string{"connection closed", "dial failed", "dial failed for more clients", "drain deadline passed", "not started",
			"unknown variable … ignored; did you mean …?"}},
		{Stderr, []string{"sidecar: unknown command …; accepted: x", "unhealthy"}},
		{Errors, []string{"go vet", "no engine", "push needs git"}},
		// A level chosen at run time is a Logs site only: it may be Warn.
		{Notes, []string{"connection", "info only", "quiet", "quieter", "starting"}},
	} {
		msgs, err := Collect([]string{dir}, false, tc.kinds)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range msgs {
			got = append(got, m.Text)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("kinds %b: got %q, want %q", tc.kinds, got, tc.want)
		}
	}
	msgs, _ := Collect([]string{dir}, false, Logs)
	if miss := Missing("`not started` and `connection closed`", msgs); len(miss) != 4 {
		t.Errorf("Missing = %v, want the 4 messages the page lacks", miss)
	}
}

func TestExitCodes(t *testing.T) {
	file := filepath.Join(t.TempDir(), "main.go")
	src := "package main\nconst (\n\texitOK = 0\n\texitUsage = 2 // bad input\n\tother = 7\n)\nconst exitNoEngine = 3\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ExitCodes(file)
	if want := map[string]int{"exitOK": 0, "exitUsage": 2, "exitNoEngine": 3}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ExitCodes = %v, %v; want %v", got, err, want)
	}
}
