package ci

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/daggertest"
)

// Dagger v0.21.8 derives BUILDPLATFORM from the target platform, so every
// dockerBuild must carry the engine's own platform, whatever the target
// and whatever the engine runs on.
func TestBuildPassesTheEnginesPlatformAsBuildPlatform(t *testing.T) {
	t.Parallel()
	for _, engine := range []string{"linux/amd64", "linux/arm64"} {
		t.Run(engine, func(t *testing.T) {
			fe := newEngine(t, nil, nil)
			fe.srv.Platform(engine)
			if err := fe.runner.Build(testCtx(t)); err != nil {
				t.Fatalf("Build: %v\nlog:\n%s", err, fe.log)
			}
			var targets []string
			for _, q := range fe.srv.Select(func(q daggertest.Query) bool { return q.Leaf().Field == "id" && q.Has("dockerBuild") }) {
				b, _ := q.Find("dockerBuild")
				targets = append(targets, b.Arg("platform"))
				var got []string
				args, _ := b.Args["buildArgs"].([]any)
				for _, a := range args {
					m, _ := a.(map[string]any)
					switch m["name"] {
					case "BUILDPLATFORM":
						got = append(got, fmt.Sprint(m["value"]))
					case "SOURCE_DATE_EPOCH":
						t.Errorf("SOURCE_DATE_EPOCH passed, which v0.21.8 ignores: %v", args)
					}
				}
				if !slices.Equal(got, []string{engine}) {
					t.Errorf("build for %s: BUILDPLATFORM %v, want exactly [%s]", b.Arg("platform"), got, engine)
				}
			}
			slices.Sort(targets)
			if !slices.Equal(targets, []string{"linux/amd64", "linux/arm64"}) {
				t.Errorf("built for %v", targets)
			}
		})
	}
}

// The sidecar service is ready when its healthcheck passes, checked at a
// 1s interval, not the image's 10s; MySQL (no HEALTHCHECK) when its port
// accepts; the running-sidecar check binds no database.
func TestSmokeReadiness(t *testing.T) {
	t.Parallel()
	fe := newEngine(t, map[string]string{"UNIT_TESTS": "false"}, nil)
	// Not ready at the first check, made the moment the container starts.
	fe.srv.Startup(func(daggertest.Service) (time.Duration, bool) { return 300 * time.Millisecond, true })
	if err := fe.runner.Test(testCtx(t)); err != nil {
		t.Fatalf("Test: %v\nlog:\n%s", err, fe.log)
	}
	image := daggertest.DockerfileHealthcheck("../Dockerfile")
	if image == nil || image.Interval != 10*time.Second {
		t.Fatalf("the Dockerfile's HEALTHCHECK is %+v, want one every 10s (what the docs promise)", image)
	}
	byAlias := map[string]daggertest.Service{}
	for _, s := range fe.srv.Services() {
		byAlias[s.Alias] = s
	}
	side, ok := byAlias[sidecarAlias]
	if !ok {
		t.Fatalf("no %q service started; started: %v", sidecarAlias, fe.srv.Services())
	}
	if side.Healthcheck == nil || !slices.Equal(side.Healthcheck.Test, image.Test) {
		t.Errorf("sidecar service readiness check %+v, want the image's %v", side.Healthcheck, image.Test)
	}
	if side.Ready > 1500*time.Millisecond {
		t.Errorf("sidecar service ready after %v (%d checks), want about a second", side.Ready, side.Checks)
	}
	db, ok := byAlias[mysqlAlias]
	if !ok || db.Healthcheck != nil || !slices.Equal(db.Ports, []int{3306}) {
		t.Errorf("MySQL service %+v, want ready when port 3306 accepts", db)
	}
	_, running, _ := fe.smokeQueries(t)
	if running.Has("withServiceBinding") {
		t.Errorf("running-sidecar check binds a service it never uses: %s", fe.srv.Expand(running))
	}
}

func TestSmokeFailsWhenTheSidecarNeverGetsHealthy(t *testing.T) {
	t.Parallel()
	fe := newEngine(t, map[string]string{"UNIT_TESTS": "false"}, nil)
	fe.srv.Startup(func(s daggertest.Service) (time.Duration, bool) { return 0, s.Alias != sidecarAlias })
	err := fe.runner.Test(testCtx(t))
	if err == nil {
		t.Fatal("Test passed with a sidecar that never gets healthy")
	}
	for _, w := range []string{"smoke test failed", "SQL round trip", "start sidecar", "health check", "healthcheck"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %q: %v", w, err)
		}
	}
}

// The default base images have one owner (images.go); the Dockerfile's ARG
// defaults, Vars and the docs repeat them.
func TestDefaultImagesAgree(t *testing.T) {
	t.Parallel()
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"GO_IMAGE": config.DefaultGoImage, "RUNTIME_IMAGE": config.DefaultRuntimeImage, "GOPROXY": config.DefaultGoProxy} {
		m := regexp.MustCompile(`(?m)^ARG ` + name + `=(\S+)$`).FindSubmatch(df)
		if m == nil || string(m[1]) != want {
			t.Errorf("Dockerfile ARG %s default %q, want %s", name, m, want)
		}
	}
	for _, img := range []string{config.DefaultGoImage, config.DefaultRuntimeImage, config.DefaultMySQLImage} {
		if !strings.HasPrefix(img, "public.ecr.aws/docker/library/") {
			t.Errorf("default %s is not on ECR Public's Docker Official Images mirror", img)
		}
	}
	vars := map[string]string{}
	for _, v := range config.Vars() {
		vars[v.Name] = v.Default
	}
	for name, want := range map[string]string{"GO_IMAGE": config.DefaultGoImage, "RUNTIME_IMAGE": config.DefaultRuntimeImage, "MYSQL_IMAGE": config.DefaultMySQLImage, "GOPROXY": config.DefaultGoProxy} {
		if !strings.HasPrefix(vars[name], want) {
			t.Errorf("Vars %s default %q, want %s", name, vars[name], want)
		}
	}
	docs := readDocs(t)
	for _, img := range []string{config.DefaultGoImage, config.DefaultRuntimeImage, config.DefaultMySQLImage} {
		if !strings.Contains(docs, img) {
			t.Errorf("the docs never name the default %s", img)
		}
	}
	for _, old := range []string{"`golang:1.26-alpine` |", "`alpine:3.22` |", "`mysql:8.4` |", "default `mysql:8.4`"} {
		if strings.Contains(docs, old) {
			t.Errorf("the docs still give Docker Hub's %s as a default", old)
		}
	}
}

// readDocs is README.md plus docs/*.md.
func readDocs(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	files := []string{"../README.md"}
	if more, err := filepath.Glob("../docs/*.md"); err == nil {
		files = append(files, more...)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}

// A MySQL that never opens its port (the engine would wait 15 minutes
// for it) ends the smoke test at the round trip's bound, saying what it
// waited for, with a progress line while it waits.
func TestSmokeRoundTripIsBounded(t *testing.T) {
	t.Parallel()
	fe := newEngine(t, map[string]string{"UNIT_TESTS": "false", "LOCAL_IMAGE": "none"}, nil)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the session's server closes
	fe.srv.Handle("stdout", func(q daggertest.Query) (any, error) {
		if strings.Contains(execScript(q), "SMOKE_SQL") {
			select { // the engine still starting MySQL; then it would pass
			case <-release:
			case <-time.After(30 * time.Second):
			}
		}
		return healthyStdout(q), nil
	})
	fe.runner.smokeBound, fe.runner.smokeProgress = 2*time.Second, 300*time.Millisecond
	err := fe.runner.Test(testCtx(t))
	if err == nil {
		t.Fatalf("Test passed; log:\n%s", fe.log)
	}
	for _, w := range []string{"smoke test failed (nothing pushed): SQL round trip through the sidecar: not done within 2s",
		"MYSQL_IMAGE=" + config.DefaultMySQLImage, "port 3306", "context deadline exceeded"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	progress := regexp.MustCompile(`(?m)^==> test: still waiting for the SQL round trip through the sidecar ` +
		`\(MySQL and the sidecar starting, then the client\): \d+s so far; giving up after 2s \(\d+\.\ds\)$`)
	if n := len(progress.FindAllString(fe.log.String(), -1)); n < 2 {
		t.Errorf("%d progress lines while waiting, want one every 300ms:\n%s", n, fe.log)
	}
}

// The docs state the round trip's bound and pace that the code applies.
func TestDocsStateTheSmokeRoundTripWait(t *testing.T) {
	t.Parallel()
	bound, every := int(SmokeSQLBound.Minutes()), int(SmokeProgress.Seconds())
	for doc, want := range map[string]string{
		"../docs/pipeline.md":        fmt.Sprintf("the client's query) gets at most %d min, with a line every %d s while it waits", bound, every),
		"../docs/troubleshooting.md": fmt.Sprintf("then for the client's query: a line every %d s, for at most %d min", every, bound),
	} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(strings.Fields(string(b)), " "), want) {
			t.Errorf("%s does not say %q", doc, want)
		}
	}
}
