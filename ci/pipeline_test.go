package ci

// These tests run the real pipeline code against a recording Dagger
// session (ci/daggertest) and, for push, the ECR stand-in (ci/ecr/ecrtest),
// and assert what the pipeline asks the engine and ECR to do, in order.

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"dagger.io/dagger"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/example/sidecar/ci/config"
	"github.com/example/sidecar/ci/daggertest"
	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/ecr/ecrtest"
	"github.com/example/sidecar/ci/engine"
	"github.com/example/sidecar/ci/imagefiles"
	"github.com/example/sidecar/ci/imagesize"
	"github.com/example/sidecar/ci/imagesize/imagesizetest"
	"github.com/example/sidecar/ci/smokesql"
	"github.com/example/sidecar/ci/tmpdir"
	"github.com/example/sidecar/ci/vulncheck/vulndbtest"
	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testkit"
)

// fakeEngine is what a test sees of a pipeline run.
type fakeEngine struct {
	srv     *daggertest.Server
	log     *testkit.LockedBuffer
	out     *testkit.LockedBuffer
	runner  *Runner
	dir     string
	goTests *[]string // go test calls, in order, with the Dagger query count at the time
	digest  string    // digest of the image the fake export writes
	images  func() []imagesizetest.Image
	files   map[string]map[string][]byte // platform -> image files the export adds (setFiles)
	// filesGz and filesContent: files as a layer, compressed once (setFiles)
	filesGz      map[string][]byte
	filesContent map[string]int64
	topType      string // media type of the export's top manifest
	top          []byte // the export's top manifest (an index for several platforms)
	layout       string // the export unpacked (an OCI layout directory)
	// vars is the environment the run sees besides Config's (its
	// lookupEnv): the recording session's DAGGER_SESSION_PORT and token,
	// for push the ECR stand-in's AWS variables; never the process's.
	vars map[string]string
	// dockerLoads records the local loads ("name platform config-digest",
	// with the session's query count then); the pipeline's fake images
	// are not runnable, dockerload's own tests load real ones.
	dockerLoads *[]string
}

// layerBytes is each platform's image in the fake export.
type layerBytes map[string][]int

func gitRepo(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Unavailable(t, "git is not installed (apt-get install git)")
	}
	dir := t.TempDir()
	// The real Dockerfile: the fake reads its HEALTHCHECK, as the engine does.
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o644); err != nil {
		t.Fatal(err)
	}
	// The workflow BUILD_WORKFLOW names, which config.Load checks is there.
	wf, err := os.ReadFile("../.github/workflows/pipeline.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, ".github", "workflows"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".github", "workflows", "pipeline.yml"), wf, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "Dockerfile", ".github"}, {"commit", "-q", "-m", "init"}} {
		gitRun(t, dir, args...)
	}
	return dir
}

// gitRun runs git in dir as a committer with no configuration of its own,
// and returns its output.
func gitRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func gitTag(t *testing.T, dir, tag string) {
	t.Helper()
	if out, err := exec.Command("git", "-C", dir, "tag", tag).CombinedOutput(); err != nil {
		t.Fatalf("git tag: %v %s", err, out)
	}
}

func gitHead(t *testing.T, dir string) string {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// newEngine starts a recording session answering like a healthy engine:
// the export writes a real OCI tarball, the smoke steps print what a
// working sidecar prints.
func newEngine(t *testing.T, env map[string]string, sizes layerBytes) *fakeEngine {
	t.Helper()
	fe := &fakeEngine{srv: daggertest.Serve(t), log: &testkit.LockedBuffer{}, out: &testkit.LockedBuffer{}, dir: gitRepo(t), goTests: &[]string{}}
	fe.vars = fe.srv.Env()
	// The runner sees only these variables. Should a test reach the AWS
	// preflight without credentials, the SDK must not ask 169.254.169.254.
	fe.vars["AWS_EC2_METADATA_DISABLED"] = "true"
	if sizes == nil {
		sizes = layerBytes{"linux/amd64": {60_000}, "linux/arm64": {55_000}}
	}
	fe.images = func() []imagesizetest.Image {
		var imgs []imagesizetest.Image
		for _, p := range []string{"linux/amd64", "linux/arm64"} {
			if l, ok := sizes[p]; ok {
				imgs = append(imgs, imagesizetest.Image{Platform: p, LayerBytes: l, Files: fe.files[p], FilesGz: fe.filesGz[p], FilesContent: fe.filesContent[p]})
			}
		}
		return imgs
	}
	fe.setFiles(t, nil)
	fe.srv.Handle("export", func(q daggertest.Query) (any, error) {
		path := q.Leaf().Arg("path")
		_, err := imagesizetest.Write(path, fe.images()...)
		return path, err
	})
	fe.srv.Handle("publish", func(q daggertest.Query) (any, error) {
		return q.Leaf().Arg("address") + "@" + fe.digest, nil
	})
	fe.srv.Handle("stdout", func(q daggertest.Query) (any, error) { return healthyStdout(q), nil })
	// The public vulnerability database is not reachable here: an empty
	// local one unless the test brings its own.
	emptyDB := vulndbtest.Write(t)
	lookup := func(k string) (string, bool) {
		v, ok := env[k]
		if !ok && k == "GOVULNDB" {
			return emptyDB, true
		}
		return v, ok
	}
	cfg, err := config.Load(fe.dir, lookup)
	if err != nil {
		t.Fatal(err)
	}
	fe.runner = &Runner{Config: cfg, Log: fe.log, Out: fe.out, GoTest: func(ctx context.Context, dir string, _ io.Writer) error {
		*fe.goTests = append(*fe.goTests, fmt.Sprintf("%s after %d queries", dir, len(fe.workQueries())))
		return nil
	}}
	fe.runner.lookupEnv = func(k string) (string, bool) { v, ok := fe.vars[k]; return v, ok }
	fe.runner.sessionOpts = []dagger.ClientOpt{dagger.WithConn(fe.srv.Conn())}
	fe.dockerLoads = &[]string{}
	fe.runner.pingDocker = func(context.Context) error { return nil }
	fe.runner.loadImage = func(_ context.Context, idx v1.ImageIndex, platform, name string) error {
		img, err := imagefiles.Image(idx, platform)
		if err != nil {
			return err
		}
		cfg, err := img.ConfigName()
		if err != nil {
			return err
		}
		*fe.dockerLoads = append(*fe.dockerLoads, fmt.Sprintf("%s %s %s after %d queries", name, platform, cfg, len(fe.srv.Queries())))
		return nil
	}
	return fe
}

// setEnv adds env to what the run sees (GitHub's variables, …).
func (fe *fakeEngine) setEnv(env map[string]string) {
	maps.Copy(fe.vars, env)
}

// execScript is the shell script of the chain's last withExec.
func execScript(q daggertest.Query) string {
	execs := q.FindAll("withExec")
	if len(execs) == 0 {
		return ""
	}
	args, _ := execs[len(execs)-1].Args["args"].([]any)
	if len(args) < 3 {
		return ""
	}
	s, _ := args[2].(string)
	return s
}

func healthyStdout(q daggertest.Query) string {
	switch s := execScript(q); {
	case strings.Contains(s, "SMOKE_SQL"):
		return "mysql: [Warning] something\n" + smokesql.Expected() + "\n"
	case strings.Contains(s, "MODE") || strings.Contains(s, "stayed-up"):
		return "stayed-up\nhealthcheck=ok\nexit=0\n"
	case strings.Contains(s, "uid="):
		return "uid=1000\nhealthcheck=ok\nexit=0\n"
	}
	return ""
}

func (fe *fakeEngine) leaves(field string) []daggertest.Query {
	return fe.srv.Select(func(q daggertest.Query) bool { return q.Leaf().Field == field })
}

// platformsOf follows the platformVariants IDs of a call back to the
// dockerBuild that produced each, returning their platforms.
func (fe *fakeEngine) platformsOf(t *testing.T, c daggertest.Call) []string {
	t.Helper()
	ids, _ := c.Args["platformVariants"].([]any)
	var plats []string
	for _, id := range ids {
		q, ok := fe.srv.Resolve(id.(string))
		if !ok {
			t.Fatalf("%s: platform variant %v is not an ID the session issued", c.Field, id)
		}
		b, ok := q.Find("dockerBuild")
		if !ok {
			t.Fatalf("%s: platform variant %v is not a Dockerfile build: %s", c.Field, id, fe.srv.Expand(q))
		}
		plats = append(plats, b.Arg("platform"))
	}
	slices.Sort(plats)
	return plats
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // safety net
	t.Cleanup(cancel)
	return ctx
}

func TestBuildPipeline(t *testing.T) {
	t.Parallel()
	fe := newEngine(t, map[string]string{"GO_IMAGE": "mirror.example/golang:1.26-alpine", "GOPROXY": "https://goproxy.corp.example,direct"}, nil)
	if err := fe.runner.Build(testCtx(t)); err != nil {
		t.Fatalf("Build: %v\nlog:\n%s", err, fe.log)
	}
	head := gitHead(t, fe.dir)

	// The Dockerfile was built once per platform from the source directory.
	builds := fe.srv.Select(func(q daggertest.Query) bool { return q.Leaf().Field == "id" && q.Has("dockerBuild") })
	var plats []string
	for _, q := range builds {
		dir, _ := q.Find("directory")
		b, _ := q.Find("dockerBuild")
		if dir.Arg("path") != fe.dir {
			t.Errorf("build context %q, want %q", dir.Arg("path"), fe.dir)
		}
		if excl := fmt.Sprint(dir.Args["exclude"]); !strings.Contains(excl, ".git") {
			t.Errorf("build context does not exclude .git: %s", excl)
		}
		if b.Arg("dockerfile") != "Dockerfile" {
			t.Errorf("dockerfile = %q", b.Arg("dockerfile"))
		}
		args := fmt.Sprint(b.Args["buildArgs"])
		// Base images pinned to the digests their tags resolve to (an
		// unset one is the Dockerfile's default, pinned).
		for _, want := range []string{"name:GO_IMAGE value:" + daggertest.ImageRef("mirror.example/golang:1.26-alpine") + "]",
			"name:RUNTIME_IMAGE value:" + daggertest.ImageRef(config.DefaultRuntimeImage) + "]",
			"name:REVISION value:" + head, "name:VERSION value:dev", "name:CREATED value:", "name:GOPROXY value:https://goproxy.corp.example,direct]"} {
			if !strings.Contains(args, want) {
				t.Errorf("build args %s lack %q", args, want)
			}
		}
		plats = append(plats, b.Arg("platform"))
	}
	slices.Sort(plats)
	if want := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(plats, want) {
		t.Fatalf("Dockerfile built for %v, want %v", plats, want)
	}

	// One gzip export of both variants, measured.
	exports := fe.leaves("export")
	if len(exports) != 1 {
		t.Fatalf("%d exports, want 1", len(exports))
	}
	exp := exports[0].Leaf()
	if got := fe.platformsOf(t, exp); !slices.Equal(got, plats) {
		t.Errorf("export variants %v, want %v", got, plats)
	}
	if exp.Arg("forcedCompression") != "Gzip" {
		t.Errorf("export compression %v, want Gzip (as published)", exp.Args["forcedCompression"])
	}
	for _, want := range []string{"platform", "linux/amd64", "linux/arm64", "uncompressed", "50.0 MB", "ok"} {
		if !strings.Contains(fe.log.String(), want) {
			t.Errorf("size table lacks %q:\n%s", want, fe.log)
		}
	}

	// Then the host variant of the export is loaded into local Docker as
	// sidecar:latest, on this side: no exportImage.
	if n := len(fe.leaves("exportImage")); n != 0 {
		t.Errorf("%d exportImage calls, want the load from the export", n)
	}
	if len(*fe.dockerLoads) != 1 || !strings.HasPrefix((*fe.dockerLoads)[0], "sidecar:latest linux/"+runtime.GOARCH+" sha256:") {
		t.Fatalf("docker loads: %v, want sidecar:latest of linux/%s", *fe.dockerLoads, runtime.GOARCH)
	}
	if n := len(fe.leaves("publish")); n != 0 {
		t.Errorf("build published %d times", n)
	}
}

func TestBuildOverBudgetStopsBeforeAnythingLeaves(t *testing.T) {
	t.Parallel()
	tarball := filepath.Join(t.TempDir(), "out.tar")
	fe := newEngine(t, map[string]string{"SIZE_BUDGET": "100kB", "OCI_TARBALL": tarball},
		layerBytes{"linux/amd64": {60_000}, "linux/arm64": {150_000}})
	err := fe.runner.Build(testCtx(t))
	var over *imagesize.OverBudgetError
	if !errors.As(err, &over) {
		t.Fatalf("Build err = %v, want an over-budget error", err)
	}
	for _, want := range []string{"linux/arm64", "uncompressed", "compressed", "100.0 kB"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "linux/amd64") {
		t.Errorf("error names the platform within budget: %v", err)
	}
	if !strings.Contains(fe.log.String(), "OVER BUDGET") {
		t.Errorf("table does not flag the platform:\n%s", fe.log)
	}
	if n := len(*fe.dockerLoads) + len(fe.leaves("publish")); n != 0 {
		t.Errorf("image left the engine (%d loads/publishes) although over budget", n)
	}
	if _, err := os.Stat(tarball); err == nil {
		t.Error("OCI tarball written although over budget")
	}
}

func TestBuildFailureShowsTheFailingStep(t *testing.T) {
	t.Parallel()
	fe := newEngine(t, nil, nil)
	fe.srv.Handle("export", func(q daggertest.Query) (any, error) {
		return nil, daggertest.ExecFailure([]string{"/bin/sh", "-c", "go build ./sidecar"}, 1, "", "sidecar/main.go:3:1: syntax error\n")
	})
	err := fe.runner.Build(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "build failed") || !strings.Contains(err.Error(), "syntax error") {
		t.Fatalf("err = %v, want the build failure with its output", err)
	}
	if n := len(*fe.dockerLoads); n != 0 {
		t.Errorf("loaded a failed build")
	}
}

func TestBuildWritesOCITarballAndSkipsLocalLoad(t *testing.T) {
	t.Parallel()
	tarball := filepath.Join(t.TempDir(), "sidecar.tar")
	fe := newEngine(t, map[string]string{"OCI_TARBALL": tarball, "LOCAL_IMAGE": "none"}, nil)
	if err := fe.runner.Build(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	sizes, err := imagesize.Measure(tarball)
	if err != nil || len(sizes) != 2 {
		t.Fatalf("OCI tarball: %v, %v", sizes, err)
	}
	if n := len(*fe.dockerLoads); n != 0 {
		t.Errorf("LOCAL_IMAGE=none still loaded the image %d times", n)
	}
}

// A copy to OCI_TARBALL that a kill or mage -t cut short leaves a hidden
// partial file; the next run with that OCI_TARBALL removes it, saying so,
// but not the partial file of a copy still going.
func TestBuildRemovesPartialTarballsOfEndedRuns(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("no file locks: partial files are left")
	}
	dir := t.TempDir()
	tarball := filepath.Join(dir, "sidecar.tar")
	// Held by no one: its run has ended.
	stale := filepath.Join(dir, ".sidecar.tar.partial-1234")
	if err := os.WriteFile(stale, []byte("cut short"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Held, as a copy still going (in another run) holds it.
	live, err := tmpdir.CreateHeld(dir, partialPattern(tarball))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	other := filepath.Join(dir, ".other.tar.partial-1234") // another target's
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fe := newEngine(t, map[string]string{"OCI_TARBALL": tarball, "LOCAL_IMAGE": "none"}, nil)
	if err := fe.runner.Build(testCtx(t)); err != nil {
		t.Fatalf("Build: %v\nlog:\n%s", err, fe.log)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the partial file of an ended run is still there: %v", err)
	}
	for _, keep := range []string{live.Name(), other, tarball} {
		if _, err := os.Stat(keep); err != nil {
			t.Errorf("%s: %v, want it kept", keep, err)
		}
	}
	want := "==> build: removed 1 partial cop(ies) of OCI_TARBALL=" + tarball + " left by runs that ended during the copy (mage -t, a kill)"
	if !strings.Contains(fe.log.String(), want) {
		t.Errorf("log does not say %q:\n%s", want, fe.log)
	}
}

// smokeQueries returns the three smoke steps' stdout queries.
func (fe *fakeEngine) smokeQueries(t *testing.T) (client, running, sleep daggertest.Query) {
	t.Helper()
	for _, q := range fe.leaves("stdout") {
		switch s := execScript(q); {
		case strings.Contains(s, "SMOKE_SQL"):
			client = q
		case strings.Contains(s, "uid="):
			running = q
		case strings.Contains(s, "stayed-up"):
			sleep = q
		}
	}
	if client.Chain == nil || running.Chain == nil || sleep.Chain == nil {
		t.Fatalf("missing smoke steps; stdout queries:\n%v", fe.leaves("stdout"))
	}
	return client, running, sleep
}

// env returns a container chain's environment variables.
func envOf(q daggertest.Query) map[string]string {
	env := map[string]string{}
	for _, c := range q.FindAll("withEnvVariable") {
		env[c.Arg("name")] = c.Arg("value")
	}
	return env
}

// workQueries are the recorded queries that make the engine work: all
// but the preflight's question for its platform.
func (fe *fakeEngine) workQueries() []daggertest.Query {
	return fe.srv.Select(func(q daggertest.Query) bool { return q.Leaf().Field != "defaultPlatform" })
}

func TestTestPipeline(t *testing.T) {
	t.Parallel()
	fe := newEngine(t, nil, nil)
	if err := fe.runner.Test(testCtx(t)); err != nil {
		t.Fatalf("Test: %v\nlog:\n%s", err, fe.log)
	}
	if want := []string{fe.runner.Config.Dir + " after 0 queries"}; !slices.Equal(*fe.goTests, want) {
		t.Errorf("go test calls %v, want %v (before any engine work)", *fe.goTests, want)
	}
	client, running, sleep := fe.smokeQueries(t)

	// Client: the MySQL image's own client, bound to the sidecar service.
	if from, _ := client.Find("from"); from.Arg("address") != "public.ecr.aws/docker/library/mysql:8.4" {
		t.Errorf("client image %q, want public.ecr.aws/docker/library/mysql:8.4", from.Arg("address"))
	}
	bind, ok := client.Find("withServiceBinding")
	if !ok || bind.Arg("alias") != sidecarAlias {
		t.Fatalf("client not bound to the sidecar: %s", client)
	}
	side, ok := fe.srv.Resolve(bind.Arg("service"))
	if !ok || !side.Has("dockerBuild") || !side.Has("asService") {
		t.Fatalf("client's %q service is not the built image as a service: %s", sidecarAlias, fe.srv.Expand(side))
	}
	if b, _ := side.Find("dockerBuild"); b.Arg("platform") != "linux/"+runtime.GOARCH {
		t.Errorf("smoke-tested %s, want the host platform", b.Arg("platform"))
	}
	if env := envOf(side); env["MODE"] != "proxy" || env["TARGET_HOST"] != mysqlAlias || env["TARGET_PORT"] != "3306" || env["LISTEN_PORT"] != "8080" {
		t.Errorf("sidecar service env %v, want proxy mode to %s:3306 listening on 8080", env, mysqlAlias)
	}
	if p, ok := side.Find("withExposedPort"); !ok || fmt.Sprint(p.Args["port"]) != "8080" {
		t.Errorf("sidecar service does not expose its listen port: %s", side)
	}
	if !strings.Contains(execScript(client), `-h "${SMOKE_HOST:-sidecar}" -P "${SMOKE_PORT:-8080}"`) || envOf(client)["SMOKE_HOST"] != "" {
		t.Errorf("client does not connect through the sidecar: %s", execScript(client))
	}
	if as, _ := side.Find("asService"); as.Args["useEntrypoint"] != true {
		t.Errorf("sidecar service does not use the image ENTRYPOINT: %s", as)
	}

	// The sidecar is bound to MySQL, whose root password is a secret.
	mbind, ok := side.Find("withServiceBinding")
	if !ok || mbind.Arg("alias") != mysqlAlias {
		t.Fatalf("sidecar not bound to MySQL: %s", fe.srv.Expand(side))
	}
	db, _ := fe.srv.Resolve(mbind.Arg("service"))
	if from, _ := db.Find("from"); from.Arg("address") != "public.ecr.aws/docker/library/mysql:8.4" || !db.Has("asService") {
		t.Fatalf("MySQL service: %s", fe.srv.Expand(db))
	}
	sv, ok := db.Find("withSecretVariable")
	if !ok || sv.Arg("name") != "MYSQL_ROOT_PASSWORD" {
		t.Fatalf("MySQL root password not a secret variable: %s", fe.srv.Expand(db))
	}
	pwq, _ := fe.srv.Resolve(sv.Arg("secret"))
	sec, _ := pwq.Find("secret")
	pw, ok := fe.srv.Secret(sec.Arg("uri"))
	if !ok || len(pw) < 32 {
		t.Fatalf("password secret %s could not be resolved by the session", sec)
	}
	assertSecretHidden(t, fe, pw)

	// The client authenticates from a mounted secret option file.
	ms, ok := client.Find("withMountedSecret")
	if !ok {
		t.Fatalf("client has no mounted secret: %s", client)
	}
	cnfq, _ := fe.srv.Resolve(ms.Arg("source"))
	cnfs, _ := cnfq.Find("secret")
	if cnf, _ := fe.srv.Secret(cnfs.Arg("uri")); !strings.Contains(cnf, "password="+pw) {
		t.Error("client option file does not carry the MySQL password")
	}
	if envOf(client)["SMOKE_SQL"] != smokesql.SQL || !strings.Contains(execScript(client), strings.Join(smokesql.ClientArgs(), " ")) {
		t.Errorf("client does not run smokesql.SQL with smokesql.ClientArgs(): %s", execScript(client))
	}

	// Running-sidecar and sleep-mode checks run inside the sidecar image.
	for _, q := range []daggertest.Query{running, sleep} {
		if b, ok := q.Find("dockerBuild"); !ok || b.Arg("platform") != "linux/"+runtime.GOARCH {
			t.Errorf("check does not run in the built image: %s", q)
		}
	}
	if !strings.Contains(execScript(running), "sidecar healthcheck") || envOf(running)["MODE"] != "proxy" {
		t.Errorf("running check: %s", execScript(running))
	}
	if envOf(sleep)["MODE"] != "sleep" {
		t.Errorf("sleep check env %v", envOf(sleep))
	}
	if n := len(fe.leaves("publish")); n != 0 {
		t.Errorf("test published %d times", n)
	}
}

// assertSecretHidden checks a secret never appears in a query or output.
func assertSecretHidden(t *testing.T, fe *fakeEngine, secret string) {
	t.Helper()
	if strings.Contains(fe.srv.Text(), secret) {
		t.Error("secret appears in plain text in a GraphQL query")
	}
	if strings.Contains(fe.log.String(), secret) || strings.Contains(fe.out.String(), secret) {
		t.Error("secret appears in the pipeline output")
	}
}

func TestSmokeFailureReportsOutput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		stdout func(q daggertest.Query) (any, error)
		want   []string
	}{
		{"client exits non-zero", func(q daggertest.Query) (any, error) {
			if strings.Contains(execScript(q), "SMOKE_SQL") {
				return nil, daggertest.ExecFailure([]string{"sh", "-c", "..."}, 1, "partial\n", "ERROR 2013 (HY000): Lost connection to MySQL server\n")
			}
			return healthyStdout(q), nil
		}, []string{"SQL round trip", "exit code 1", "ERROR 2013", "partial"}},
		{"wrong row back", func(q daggertest.Query) (any, error) {
			if strings.Contains(execScript(q), "SMOKE_SQL") {
				return "smoke 1 abc\n", nil
			}
			return healthyStdout(q), nil
		}, []string{"smoke check", "smoke 1 abc"}},
		{"not UID 1000", func(q daggertest.Query) (any, error) {
			if strings.Contains(execScript(q), "uid=") {
				return "uid=0\nhealthcheck=ok\nexit=0\n", nil
			}
			return healthyStdout(q), nil
		}, []string{"running sidecar", `"uid=1000"`, "uid=0"}},
		{"sleep mode dies", func(q daggertest.Query) (any, error) {
			if strings.Contains(execScript(q), "stayed-up") {
				return nil, daggertest.ExecFailure([]string{"sh", "-c", "..."}, 1, "", "sleep mode exited with 2 within 3s\n")
			}
			return healthyStdout(q), nil
		}, []string{"sleep mode", "exited with 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fe := newEngine(t, nil, nil)
			fe.srv.Handle("stdout", tc.stdout)
			err := fe.runner.Test(testCtx(t))
			if err == nil {
				t.Fatal("Test passed with a failing smoke step")
			}
			for _, w := range append(tc.want, "smoke test failed") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// versionRelease is the common release setup: an ECR stand-in whose
// repository has immutable tags, a push engine with env over a checkout
// whose HEAD carries the version tag, and HEAD's short commit (the
// candidate's tag).
func versionRelease(t *testing.T, version string, env map[string]string) (*ecrtest.Server, *fakeEngine, string) {
	t.Helper()
	immutable := true
	ecrSrv := pushEnv(t, &immutable)
	fe := newLightPushEngine(t, ecrSrv, env)
	gitTag(t, fe.dir, version)
	return ecrSrv, fe, gitHead(t, fe.dir)[:12]
}

// pushEnv starts an ECR stand-in (newPushEngine points the run at it).
func pushEnv(t *testing.T, immutable *bool) *ecrtest.Server {
	t.Helper()
	ecrSrv := ecrtest.Start(t, "eu-west-1")
	if immutable != nil {
		ecrSrv.AddRepository("sidecar", *immutable)
	}
	return ecrSrv
}

func TestPushPipeline(t *testing.T) {
	t.Parallel()
	ecrSrv := pushEnv(t, nil)
	fe := newPushEngine(t, ecrSrv, map[string]string{"VULN_CHECK": "true"}) // the default, checked by TestReleaseConfig
	// Written by the session's handler goroutine: read it under the lock.
	var mu sync.Mutex
	var opsAtFirstQuery, opsAtPlatform []string
	fe.srv.Observe(func(q daggertest.Query) {
		mu.Lock()
		if q.Leaf().Field == "defaultPlatform" {
			opsAtPlatform = append([]string{}, ecrSrv.Operations()...)
		} else if opsAtFirstQuery == nil {
			opsAtFirstQuery = ecrSrv.Operations()
		}
		mu.Unlock()
	})
	if err := fe.runner.Push(testCtx(t)); err != nil {
		t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
	}
	short := gitHead(t, fe.dir)[:12]

	// The AWS preflight (login, repository) came after the engine's
	// platform check, which a run may fail without having created the
	// repository, and before any engine work.
	mu.Lock()
	ops, atPlatform := opsAtFirstQuery, opsAtPlatform
	mu.Unlock()
	if atPlatform == nil || len(atPlatform) != 0 {
		t.Errorf("ECR calls before the engine's platform check: %v (nil: no check), want none", atPlatform)
	}
	if want := []string{"GetAuthorizationToken", "DescribeRepositories", "CreateRepository"}; !slices.Equal(ops, want) {
		t.Errorf("ECR calls before the first engine work: %v, want %v", ops, want)
	}
	repo, _ := ecrSrv.Repository("sidecar")
	if !repo.Immutable || !repo.ScanOnPush {
		t.Errorf("created repository %+v, want immutable tags and scan on push", repo)
	}

	pubs := fe.leaves("publish")
	if len(pubs) != 1 {
		t.Fatalf("%d publishes, want 1 (commit tag only)", len(pubs))
	}
	pub := pubs[0]
	if addr, want := pub.Leaf().Arg("address"), ecrSrv.Host()+"/sidecar:"+short; addr != want {
		t.Errorf("published %q, want %q", addr, want)
	}
	if got := fe.platformsOf(t, pub.Leaf()); !slices.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("published variants %v, want both platforms", got)
	}
	auth, ok := pub.Find("withRegistryAuth")
	if !ok || auth.Arg("address") != ecrSrv.Host() || auth.Arg("username") != "AWS" {
		t.Fatalf("publish without ECR registry auth: %s", pub)
	}
	sq, _ := fe.srv.Resolve(auth.Arg("secret"))
	sec, ok := sq.Find("secret")
	if !ok {
		t.Fatalf("registry password is not a secret: %s", fe.srv.Expand(sq))
	}
	if pw, _ := fe.srv.Secret(sec.Arg("uri")); pw != ecrSrv.Password {
		t.Errorf("registry auth secret does not hold the ECR password")
	}
	assertSecretHidden(t, fe, ecrSrv.Password)

	// Published only after the size check and every smoke step.
	client, running, sleep := fe.smokeQueries(t)
	export := fe.leaves("export")[0]
	for _, before := range []daggertest.Query{export, client, running, sleep} {
		if before.Seq > pub.Seq {
			t.Errorf("publish (query %d) came before %s (query %d)", pub.Seq, before.Leaf().Field, before.Seq)
		}
	}
	if got, want := strings.TrimSpace(fe.out.String()), ecrSrv.Host()+"/sidecar:"+short+"@"+fe.digest; got != want {
		t.Errorf("printed %q, want %q", got, want)
	}

	// Every step of Steps("push") ran, in that order, and said so; release
	// tags said why it had nothing to do (no v* tag on HEAD, no latest).
	log, last, steps := fe.log.String(), -1, Steps("push")
	for i, s := range steps {
		line := fmt.Sprintf("==> push: [%d/%d] %s (", i+1, len(steps), s.Name)
		end := "==> push: " + s.Name + " done in "
		if s.Name == "release tags" {
			line = fmt.Sprintf("==> push: [%d/%d] %s skipped (", i+1, len(steps), s.Name)
			end = line
		}
		at := strings.Index(log, line)
		if at < 0 || at < last || !strings.Contains(log, end) {
			t.Errorf("log lacks %q and its end after step %d, in order:\n%s", line, i, log)
		}
		last = at
	}
}

func TestPushVersionTagAndIdempotence(t *testing.T) {
	t.Parallel()
	ecrSrv, fe, short := versionRelease(t, "v1.4.0", nil)
	// The commit was pushed before with this very image; v1.4.0 is new.
	ecrSrv.PushImage("sidecar", short, fe.topType, fe.top)

	if err := fe.runner.Push(testCtx(t)); err != nil {
		t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
	}
	// The version tag goes onto the pushed image (PutImage), no second push.
	if n := len(fe.leaves("publish")); n != 0 {
		t.Errorf("published %d times, want 0 (the version tag is put on the pushed image)", n)
	}
	if repo, _ := ecrSrv.Repository("sidecar"); repo.Tags["1.4.0"] != fe.digest {
		t.Errorf("1.4.0 at %q, want %s", repo.Tags["1.4.0"], fe.digest)
	}
	if !strings.Contains(fe.log.String(), "sidecar:"+short+" already at "+fe.digest) {
		t.Errorf("log does not say the commit tag was skipped:\n%s", fe.log)
	}
	builds := fe.srv.Select(func(q daggertest.Query) bool { return q.Leaf().Field == "id" && q.Has("dockerBuild") })
	b, _ := builds[0].Find("dockerBuild")
	if args := fmt.Sprint(b.Args["buildArgs"]); !strings.Contains(args, "name:VERSION value:1.4.0") {
		t.Errorf("VERSION build arg is not the tag: %s", args)
	}

	// Same commit, both tags present with the same digest: nothing pushed.
	puts := slices.Collect(func(yield func(string) bool) {
		for _, op := range ecrSrv.Operations() {
			if op == "PutImage" && !yield(op) {
				return
			}
		}
	})
	fe.out = &testkit.LockedBuffer{}
	fe.runner.Out = fe.out
	if err := fe.runner.Push(testCtx(t)); err != nil {
		t.Fatalf("second Push: %v", err)
	}
	if n := len(fe.leaves("publish")); n != 0 {
		t.Errorf("second push of the same commit published %d times", n)
	}
	if n := strings.Count(strings.Join(ecrSrv.Operations(), " "), "PutImage"); n != len(puts) {
		t.Errorf("second push re-tagged: %d PutImage calls, %d before", n, len(puts))
	}
	if !strings.Contains(fe.log.String(), "every tag already points at the commit's image") || !strings.Contains(fe.out.String(), "sidecar:1.4.0@"+fe.digest) {
		t.Errorf("second push does not say it skipped:\nlog:\n%s\nout:\n%s", fe.log, fe.out)
	}
}

// A v* tag on a commit the main-branch run already pushed (from a build
// that is not byte-identical) releases the pushed image: no rebuild is
// pushed, the version tag is put on the existing image.
func TestPushReleasesThePushedCommitImage(t *testing.T) {
	t.Parallel()
	ecrSrv, fe, short := versionRelease(t, "v1.5.0", nil)
	mainBuild, _ := pushedCandidate(t, ecrSrv, short, earlierFiles(t))

	if err := fe.runner.Push(testCtx(t)); err != nil {
		t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
	}
	if n := len(fe.leaves("publish")); n != 0 {
		t.Errorf("pushed the rebuild %d times", n)
	}
	repo, _ := ecrSrv.Repository("sidecar")
	if repo.Tags["1.5.0"] != mainBuild || repo.Tags[short] != mainBuild {
		t.Errorf("tags after release: %v, want both at %s", repo.Tags, mainBuild)
	}
	if !slices.Contains(ecrSrv.Operations(), "PutImage") {
		t.Errorf("no PutImage call: %v", ecrSrv.Operations())
	}
	out := fe.out.String()
	for _, want := range []string{ecrSrv.Host() + "/sidecar:" + short + "@" + mainBuild, ecrSrv.Host() + "/sidecar:1.5.0@" + mainBuild} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
	if !strings.Contains(fe.log.String(), "releasing "+mainBuild+" as "+ecrSrv.Host()+"/sidecar:1.5.0") {
		t.Errorf("log does not explain the release:\n%s", fe.log)
	}
}

// Re-running the push of a commit (GitHub "Re-run jobs" on a fresh runner)
// rebuilds an image that is not byte-identical. With immutable tags the
// commit's pushed image stands: the rebuild is not pushed, and that is not
// an error.
func TestPushRerunKeepsThePushedCommitImage(t *testing.T) {
	t.Parallel()
	immutable := true
	ecrSrv := pushEnv(t, &immutable)
	fe := newLightPushEngine(t, ecrSrv, nil)
	short := gitHead(t, fe.dir)[:12]
	first, _ := pushedCandidate(t, ecrSrv, short, earlierFiles(t))

	if err := fe.runner.Push(testCtx(t)); err != nil {
		t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
	}
	if n := len(fe.leaves("publish")); n != 0 {
		t.Errorf("pushed the rebuild %d times", n)
	}
	if ops := ecrSrv.Operations(); slices.Contains(ops, "PutImage") {
		t.Errorf("re-tagged on a re-run: %v", ops)
	}
	repo, _ := ecrSrv.Repository("sidecar")
	if repo.Tags[short] != first || len(repo.Tags) != 1 {
		t.Errorf("tags after re-run: %v, want only %s at %s", repo.Tags, short, first)
	}
	want := "commit " + short + " already in ECR as " + first + "; this rebuild (" + fe.digest + ") is not pushed"
	if !strings.Contains(fe.log.String(), want) {
		t.Errorf("log does not say %q:\n%s", want, fe.log)
	}
	if got, want := strings.TrimSpace(fe.out.String()), ecrSrv.Host()+"/sidecar:"+short+"@"+first; got != want {
		t.Errorf("printed %q, want %q", got, want)
	}
}

// Reading a commit's image back from the registry says that it waits, as
// an ECR API call does, and a registry that stops answering ends the run
// with an error naming it, not a silence.
func TestPushWatchesTheRegistry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		delay time.Duration
		bound time.Duration
	}{
		{"slow", 250 * time.Millisecond, 0},
		{"silent", time.Minute, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			immutable := true
			ecrSrv := pushEnv(t, &immutable)
			fe := newLightPushEngine(t, ecrSrv, nil)
			pushedCandidate(t, ecrSrv, gitHead(t, fe.dir)[:12], earlierFiles(t))
			ecrSrv.DelayRegistryReads(tc.delay)
			fe.runner.awsProgress, fe.runner.registryBound = 100*time.Millisecond, tc.bound
			err := fe.runner.Push(testCtx(t))
			what := "the registry at " + ecrSrv.Host() + "/sidecar (the candidate's files)"
			line := regexp.MustCompile(`(?m)^==> push: still waiting for ` + regexp.QuoteMeta(what) + `: \d+s so far; giving up after ` +
				regexp.QuoteMeta(cmp.Or(tc.bound, ecr.RegistryBound).String()) + ` \(\d+\.\ds\)$`)
			if !line.MatchString(fe.log.String()) {
				t.Errorf("no progress line %s:\n%s", line, fe.log)
			}
			switch {
			case tc.bound == 0 && err != nil:
				t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
			case tc.bound > 0 && (err == nil || !strings.Contains(err.Error(), "no answer from "+what+" within 1s")):
				t.Fatalf("Push: %v; want no answer from %s within 1s", err, what)
			}
		})
	}
}

func TestUnitTestsCanBeSkipped(t *testing.T) {
	t.Parallel()
	fe := newEngine(t, map[string]string{"UNIT_TESTS": "false"}, nil)
	if err := fe.runner.Test(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if len(*fe.goTests) != 0 {
		t.Errorf("go test ran with UNIT_TESTS=false: %v", *fe.goTests)
	}
	if !strings.Contains(fe.log.String(), "skipped (UNIT_TESTS=false)") {
		t.Errorf("log does not say unit tests were skipped:\n%s", fe.log)
	}
}

func TestPushRefusals(t *testing.T) {
	immutable := true
	for _, tc := range []struct {
		name     string
		setup    func(t *testing.T, fe *fakeEngine, ecrSrv *ecrtest.Server)
		env      map[string]string
		want     []string
		noWork   bool // refused before any engine work (at most the platform question)
		noECR    bool // refused before ECR was called
		noEngine bool // refused before the engine session opened
		serial   bool // sets the process environment
		exit     int  // the exit code; 0 = ExitFailed
	}{
		{name: "version tag names another image", setup: func(t *testing.T, fe *fakeEngine, e *ecrtest.Server) {
			gitTag(t, fe.dir, "v2.0.0")
			e.SetTag("sidecar", "2.0.0", "sha256:"+strings.Repeat("1", 64))
		}, want: []string{`tag "2.0.0"`, "another commit's", "immutable", "nothing built or pushed", "tag a new version"}, noWork: true},
		{name: "version tag names another image, immutable by an exclusion filter", setup: func(t *testing.T, fe *fakeEngine, e *ecrtest.Server) {
			e.AddRepository("sidecar", false)
			e.SetExclusions("sidecar", "*.*.*") // MUTABLE_WITH_EXCLUSION: release versions cannot move
			gitTag(t, fe.dir, "v2.0.0")
			e.SetTag("sidecar", "2.0.0", "sha256:"+strings.Repeat("1", 64))
		}, want: []string{`tag "2.0.0"`, "another commit's", "nothing built or pushed"}, noWork: true},
		{name: "re-run: version tag names another image than the pushed commit", setup: func(t *testing.T, fe *fakeEngine, e *ecrtest.Server) {
			gitTag(t, fe.dir, "v2.1.0")
			e.SetTag("sidecar", gitHead(t, fe.dir)[:12], "sha256:"+strings.Repeat("0", 64))
			e.SetTag("sidecar", "2.1.0", "sha256:"+strings.Repeat("1", 64))
		}, want: []string{`tag "2.1.0"`, "already points at sha256:111", "sha256:000", "immutable", "nothing built or pushed"}, noWork: true},
		{name: "smoke test fails", setup: func(t *testing.T, fe *fakeEngine, e *ecrtest.Server) {
			fe.srv.Handle("stdout", func(q daggertest.Query) (any, error) {
				return nil, daggertest.ExecFailure([]string{"sh"}, 1, "", "boom\n")
			})
		}, want: []string{"smoke test failed", "boom"}},
		{name: "over budget", env: map[string]string{"SIZE_BUDGET": "50kB"}, want: []string{"size budget"}},
		{name: "latest with immutable tags", env: map[string]string{"PUSH_LATEST": "true"}, want: []string{"PUSH_LATEST", "immutable"}, noWork: true, exit: ExitConfig},
		{name: "uncommitted changes", setup: func(t *testing.T, fe *fakeEngine, e *ecrtest.Server) {
			if err := os.WriteFile(filepath.Join(fe.dir, "Dockerfile"), []byte("FROM changed\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, want: []string{`push: step "preflight" failed: the worktree has uncommitted changes to tracked files (Dockerfile)`}, noWork: true, noECR: true},
		{name: "version tag that cannot be released", setup: func(t *testing.T, fe *fakeEngine, e *ecrtest.Server) {
			gitTag(t, fe.dir, "v1.4.0+build.7")
		}, want: []string{`git tag "v1.4.0+build.7" on HEAD is not a version tag`, "v1.4.0-rc.1"}, noWork: true, noECR: true, exit: ExitConfig},
		// Local refusals come before the AWS preflight, which may create
		// the repository: a run refused here has changed nothing in AWS.
		{name: "engine platform not in PLATFORMS", env: map[string]string{"PLATFORMS": "linux/" + runtime.GOARCH},
			setup: func(t *testing.T, fe *fakeEngine, e *ecrtest.Server) {
				fe.srv.Handle("defaultPlatform", func(daggertest.Query) (any, error) { return otherPlatform(), nil })
			}, want: []string{"PLATFORMS=", "the engine runs " + otherPlatform()}, noWork: true, noECR: true, exit: ExitConfig},
		{name: "local Docker not reachable", setup: func(t *testing.T, fe *fakeEngine, e *ecrtest.Server) {
			fe.runner.Config.LocalImage = "sidecar:dev"
			fe.runner.pingDocker = func(context.Context) error { return errors.New("connection refused") }
		}, want: []string{"LOCAL_IMAGE=sidecar:dev needs the local Docker", "nothing was built"}, noWork: true, noECR: true},
		// The SDK also reads the process environment: cleared for this one.
		// Checked before the engine (which may take minutes to start).
		{name: "no AWS region", setup: func(t *testing.T, fe *fakeEngine, e *ecrtest.Server) {
			ecrtest.Isolate(t)
			delete(fe.vars, "AWS_REGION")
		}, want: []string{"AWS region is not set"}, noWork: true, noECR: true, noEngine: true, serial: true, exit: ExitConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.serial {
				t.Parallel()
			}
			ecrSrv := pushEnv(t, &immutable)
			fe := newLightPushEngine(t, ecrSrv, tc.env)
			if tc.setup != nil {
				tc.setup(t, fe, ecrSrv)
			}
			err := fe.runner.Push(testCtx(t))
			if err == nil {
				t.Fatalf("Push succeeded; log:\n%s", fe.log)
			}
			if want := cmp.Or(tc.exit, ExitFailed); ExitCode(err) != want {
				t.Errorf("exit code %d, want %d: %v", ExitCode(err), want, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
			if n := len(fe.leaves("publish")); n != 0 {
				t.Errorf("published %d times", n)
			}
			if n := len(fe.workQueries()); tc.noWork && n != 0 {
				t.Errorf("%d engine queries before the refusal", n)
			}
			if n := len(fe.srv.Queries()); tc.noEngine && n != 0 {
				t.Errorf("%d engine queries (the session opened) before the refusal", n)
			}
			if ops := ecrSrv.Operations(); tc.noECR && len(ops) != 0 {
				t.Errorf("ECR called before the refusal: %v", ops)
			}
			if strings.Contains(fe.log.String()+err.Error(), ecrSrv.Password) {
				t.Error("ECR password in output")
			}
			var ce *ecr.ConflictError
			if strings.Contains(tc.name, "another") && !errors.As(err, &ce) {
				t.Errorf("err is %T, want *ecr.ConflictError", err)
			}
		})
	}
}

// A slow answer from ECR is reported as the run's other progress is: a
// "==> push:" line, with the run's clock, naming the call and its bound.
func TestPushReportsASlowECRCall(t *testing.T) {
	t.Parallel()
	ecrSrv := pushEnv(t, nil)
	ecrSrv.Delay("DescribeRepositories", 500*time.Millisecond)
	fe := newLightPushEngine(t, ecrSrv, nil)
	fe.runner.awsProgress = 100 * time.Millisecond
	if err := fe.runner.Push(testCtx(t)); err != nil {
		t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
	}
	line := regexp.MustCompile(`(?m)^==> push: still waiting for ECR \(ecr:DescribeRepositories\) at ` +
		regexp.QuoteMeta(ecrSrv.URL) + `: \d+s so far; giving up after ` + regexp.QuoteMeta(ecr.CallTimeout.String()) + ` \(\d+\.\ds\)$`)
	if n := len(line.FindAllString(fe.log.String(), -1)); n < 2 {
		t.Errorf("%d progress lines for the slow call, want at least 2, each %s:\n%s", n, line, fe.log)
	}
	if strings.Contains(fe.log.String(), "\nstill waiting") {
		t.Errorf("a progress line without the step prefix:\n%s", fe.log)
	}
}

// With no engine, Test and Push fail first thing: no unit tests, no AWS.
func TestNoEngineFailsFirst(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(*Runner, context.Context) error
	}{
		{"test", (*Runner).Test},
		{"push", (*Runner).Push},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ecrSrv := pushEnv(t, nil)
			fe := newEngine(t, nil, nil)
			fe.setEnv(ecrSrv.Vars(t))                       // a region and a reachable ECR: only the engine is missing
			fe.vars["DAGGER_SESSION_PORT"] = refusedPort(t) // the session is gone
			err := tc.run(fe.runner, testCtx(t))
			var ee *engine.Error
			if !errors.As(err, &ee) {
				t.Fatalf("err = %v, want EngineError", err)
			}
			if len(*fe.goTests) != 0 {
				t.Errorf("unit tests ran before the engine check: %v", *fe.goTests)
			}
			if ops := ecrSrv.Operations(); len(ops) != 0 {
				t.Errorf("ECR called before the engine check: %v", ops)
			}
		})
	}
}

// With a shared remote engine of another architecture, the smoke test runs
// the variant native to the engine.
func TestSmokeRunsTheEnginesPlatform(t *testing.T) {
	t.Parallel()
	other := otherPlatform()
	t.Run("engine platform built", func(t *testing.T) {
		fe := newEngine(t, map[string]string{"UNIT_TESTS": "false"}, nil)
		fe.srv.Handle("defaultPlatform", func(daggertest.Query) (any, error) { return other, nil })
		if err := fe.runner.Test(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		client, running, sleep := fe.smokeQueries(t)
		bind, _ := client.Find("withServiceBinding")
		side, _ := fe.srv.Resolve(bind.Arg("service"))
		for _, q := range []daggertest.Query{side, running, sleep} {
			if b, _ := q.Find("dockerBuild"); b.Arg("platform") != other {
				t.Errorf("smoke step runs %s, want the engine's %s: %s", b.Arg("platform"), other, fe.srv.Expand(q))
			}
		}
	})
	t.Run("engine platform not built", func(t *testing.T) {
		fe := newEngine(t, map[string]string{"UNIT_TESTS": "false", "PLATFORMS": "linux/" + runtime.GOARCH},
			layerBytes{"linux/" + runtime.GOARCH: {1000}})
		fe.srv.Handle("defaultPlatform", func(daggertest.Query) (any, error) { return other, nil })
		err := fe.runner.Test(testCtx(t))
		if want := `PLATFORMS="linux/` + runtime.GOARCH + `": the engine runs ` + other; err == nil || !strings.Contains(err.Error(), want) ||
			!strings.Contains(err.Error(), "want a list that includes "+other) {
			t.Fatalf("err = %v, want it to say %q and what to include", err, want)
		}
		if ExitCode(err) != ExitConfig {
			t.Errorf("exit code %d, want %d (bad configuration)", ExitCode(err), ExitConfig)
		}
		// Found before the unit tests and the build, not at the smoke step.
		if len(*fe.goTests) != 0 || len(fe.workQueries()) != 0 {
			t.Errorf("work done before the platform check: go test %v, queries %d", *fe.goTests, len(fe.workQueries()))
		}
	})
}

// otherPlatform is a platform the default PLATFORMS builds that is not
// this machine's: a shared remote engine of another architecture.
func otherPlatform() string {
	if runtime.GOARCH == "arm64" {
		return "linux/amd64"
	}
	return "linux/arm64"
}

// A session that refuses the token (a stale DAGGER_SESSION_TOKEN) is no
// engine to use: exit 3, naming both variables, before any work.
func TestSessionRefusesTheToken(t *testing.T) {
	t.Parallel()
	fe := newEngine(t, map[string]string{"UNIT_TESTS": "false", "LOCAL_IMAGE": "none"}, nil)
	fe.srv.Token = "another-run's-token" // the session now refuses the one the client sends
	err := fe.runner.Test(testCtx(t))
	if ExitCode(err) != ExitNoEngine || !strings.Contains(err.Error(), "refused DAGGER_SESSION_TOKEN (401 Unauthorized)") {
		t.Fatalf("exit %d: %v; want exit %d naming DAGGER_SESSION_TOKEN", ExitCode(err), err, ExitNoEngine)
	}
}

// Every progress line of a run names the target run, whatever step
// writes it (the docs show push's as `==> push: …`).
func TestEveryLineNamesTheTarget(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"build", "test", "push"} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			var fe *fakeEngine
			if target == "push" {
				fe = newLightPushEngine(t, pushEnv(t, nil), nil)
			} else {
				fe = newEngine(t, nil, nil)
				gitTag(t, fe.dir, "v1.4.0+build.7") // a local build goes on, with a note
			}
			run := map[string]func(context.Context) error{"build": fe.runner.Build, "test": fe.runner.Test, "push": fe.runner.Push}[target]
			if err := run(testCtx(t)); err != nil {
				t.Fatalf("%s: %v\nlog:\n%s", target, err, fe.log)
			}
			lines := 0
			for _, l := range strings.Split(fe.log.String(), "\n") {
				if strings.HasPrefix(l, "==> ") {
					lines++
					if !strings.HasPrefix(l, "==> "+target+": ") {
						t.Errorf("line does not name %s: %s", target, l)
					}
				}
			}
			if lines < 10 {
				t.Errorf("only %d progress lines:\n%s", lines, fe.log)
			}
		})
	}
}

// Tags on HEAD that name no version (a release line, v1.4) leave the
// version tag out, and the log says they were seen and ignored, not that
// there are none.
func TestPushSaysWhichTagsItIgnored(t *testing.T) {
	t.Parallel()
	fe := newEngine(t, nil, nil)
	gitTag(t, fe.dir, "v1.4")
	gitTag(t, fe.dir, "vendor-sync")
	s := &run{Runner: fe.runner, target: "push"}
	if err := s.pushPreflight(testCtx(t)); err != nil {
		t.Fatalf("push preflight: %v\nlog:\n%s", err, fe.log)
	}
	want := "==> push: version skipped: no version git tag on HEAD, only v1.4 (a release-line tag), vendor-sync (no digit after the v); " +
		"a version tag is v and a semantic version, such as v1.4.0 ("
	if log := fe.log.String(); !strings.Contains(log, want) || strings.Contains(log, "no v* git tag") {
		t.Errorf("log does not say %q:\n%s", want, log)
	}
}

// A session port that accepts but never answers (a stale
// DAGGER_SESSION_PORT now held by something else) is no engine: the wait
// for its first answer says so every few seconds and ends at its bound,
// exit 3, before any work.
func TestSessionThatNeverAnswers(t *testing.T) {
	t.Parallel()
	fe := newEngine(t, map[string]string{"LOCAL_IMAGE": "none"}, nil)
	silent := testkit.Serve(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }) // reads, never answers
	port := silent.Addr().(*net.TCPAddr).Port
	fe.vars["DAGGER_SESSION_PORT"] = strconv.Itoa(port)
	fe.runner.sessionOpts = []dagger.ClientOpt{dagger.WithConn(daggertest.ConnTo(port, "token"))}
	fe.runner.engineAnswer, fe.runner.engineProgress = 2*time.Second, 300*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // far past the bound
	defer cancel()
	began := time.Now()
	err := fe.runner.Build(ctx)
	took := time.Since(began)
	want := fmt.Sprintf("the session at DAGGER_SESSION_PORT=%d accepted the connection but did not answer its first query (the engine's platform) within 2s", port)
	if ExitCode(err) != ExitNoEngine || !strings.Contains(err.Error(), want) {
		t.Fatalf("after %s: exit %d: %v; want exit %d saying %q\nlog:\n%s", took, ExitCode(err), err, ExitNoEngine, want, fe.log)
	}
	if took > 10*time.Second {
		t.Errorf("gave up after %s, want about the 2s bound", took)
	}
	progress := regexp.MustCompile(fmt.Sprintf(`(?m)^==> build: still waiting for the session at DAGGER_SESSION_PORT=%d to answer its first query `+
		`\(the engine's platform\): \d+s so far; giving up after 2s \(\d+\.\ds\)$`, port))
	if n := len(progress.FindAllString(fe.log.String(), -1)); n < 3 {
		t.Errorf("%d progress lines while waiting, want one every 300ms:\n%s", n, fe.log)
	}
}

// A push builds the commit it tags: untracked files (a new .go file in a
// package's directory would be compiled in) stay out of the build context,
// and the log names them. A local build takes the worktree as it is.
func TestPushLeavesUntrackedFilesOutOfTheBuild(t *testing.T) {
	t.Parallel()
	untracked := func(t *testing.T, dir string) {
		for _, name := range []string{"wip.go", "notes/a.md", "notes/b.md", "odd*name.go"} {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("package main\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	excludes := func(t *testing.T, fe *fakeEngine) []string {
		builds := fe.srv.Select(func(q daggertest.Query) bool { return q.Leaf().Field == "id" && q.Has("dockerBuild") })
		if len(builds) == 0 {
			t.Fatalf("no Dockerfile build; log:\n%s", fe.log)
		}
		dir, _ := builds[0].Find("directory")
		var out []string
		for _, e := range dir.Args["exclude"].([]any) {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	left := []string{"wip.go", "notes", `odd\*name.go`}

	t.Run("push", func(t *testing.T) {
		t.Parallel()
		fe := newLightPushEngine(t, pushEnv(t, nil), nil)
		untracked(t, fe.dir)
		if err := fe.runner.Push(testCtx(t)); err != nil {
			t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
		}
		got := excludes(t, fe)
		for _, w := range left {
			if !slices.Contains(got, w) {
				t.Errorf("push build context excludes %q, want %q among them", got, w)
			}
		}
		if want := "push: leaving 3 untracked path(s) out of the build, so the image is commit " + gitHead(t, fe.dir)[:12] + "'s: notes/, odd*name.go, wip.go"; !strings.Contains(fe.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, fe.log)
		}
	})
	t.Run("build", func(t *testing.T) {
		t.Parallel()
		fe := newEngine(t, nil, nil)
		untracked(t, fe.dir)
		if err := fe.runner.Build(testCtx(t)); err != nil {
			t.Fatalf("Build: %v\nlog:\n%s", err, fe.log)
		}
		if got := excludes(t, fe); slices.Contains(got, "wip.go") {
			t.Errorf("local build context excludes %q: a local build takes the worktree", got)
		}
	})
}

// ECR's IMMUTABLE_WITH_EXCLUSION with latest excluded is how AWS suggests
// keeping versions immutable and latest moving: PUSH_LATEST works there.
func TestPushLatestInAnImmutableRepositoryThatExcludesIt(t *testing.T) {
	t.Parallel()
	immutable := true
	ecrSrv := pushEnv(t, &immutable)
	ecrSrv.SetExclusions("sidecar", "latest")
	ecrSrv.SetTag("sidecar", "latest", "sha256:"+strings.Repeat("1", 64)) // an earlier release's
	fe := newLightPushEngine(t, ecrSrv, map[string]string{"PUSH_LATEST": "true"})
	if err := fe.runner.Push(testCtx(t)); err != nil {
		t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
	}
	repo, _ := ecrSrv.Repository("sidecar")
	short := gitHead(t, fe.dir)[:12]
	if repo.Tags["latest"] == "" || repo.Tags["latest"] != repo.Tags[short] {
		t.Errorf("latest is %q, want the commit's image %q: %v", repo.Tags["latest"], repo.Tags[short], repo.Tags)
	}
	if !strings.Contains(fe.log.String(), "immutable tags except latest") {
		t.Errorf("the log does not describe the repository's exclusion:\n%s", fe.log)
	}
}

// latest never moves back along the history either: with latest following
// main (no version tags), an older commit's job re-run after a later
// commit's leaves latest on the later one, as does a version released on
// an older commit; a later commit moves it, and so does one this clone
// cannot place (said in the log).
func TestPushKeepsLatestOnALaterCommit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		onLatest string // which commit latest's image carries: later, earlier, unknown
		version  string // a version tag on this commit
		moves    bool
		log      string
	}{
		{name: "latest on a later commit stays", onLatest: "later", log: "push: latest stays on commit %s ("},
		{name: "a version on an older commit leaves latest on the later one", onLatest: "later", version: "v1.2.0", log: "push: latest stays on commit %s ("},
		{name: "latest on an earlier commit moves", onLatest: "earlier", moves: true},
		{name: "latest on a commit not in this clone moves", onLatest: "unknown", moves: true, log: "push: latest is on commit %s, which this clone's history lacks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mutable := false
			ecrSrv := pushEnv(t, &mutable)
			fe := newLightPushEngine(t, ecrSrv, map[string]string{"PUSH_LATEST": "true"})
			earlier, this, later := threeCommits(t, fe.dir)
			if tc.version != "" {
				gitTag(t, fe.dir, tc.version)
			}
			other := "sha256:" + strings.Repeat("1", 64)
			onLatest := map[string]string{"later": later, "earlier": earlier, "unknown": strings.Repeat("ab", 20)}[tc.onLatest][:12]
			ecrSrv.SetTag("sidecar", onLatest, other)
			ecrSrv.SetTag("sidecar", "latest", other)
			if err := fe.runner.Push(testCtx(t)); err != nil {
				t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
			}
			repo, _ := ecrSrv.Repository("sidecar")
			mine := repo.Tags[this[:12]]
			if want := map[bool]string{true: mine, false: other}[tc.moves]; mine == "" || repo.Tags["latest"] != want {
				t.Errorf("latest is on %s, want %s (this commit's image %s)", repo.Tags["latest"], want, mine)
			}
			if want := fmt.Sprintf(tc.log, onLatest); tc.log != "" && !strings.Contains(fe.log.String(), want) {
				t.Errorf("log does not say %q:\n%s", want, fe.log)
			}
			if tc.moves == strings.Contains(fe.log.String(), "latest stays") {
				t.Errorf("log says latest stays: %v, want %v:\n%s", !tc.moves, !tc.moves, fe.log)
			}
		})
	}
}

// threeCommits adds two commits after dir's HEAD and checks out the
// middle one: the run releases "this" between an earlier and a later one.
func threeCommits(t *testing.T, dir string) (earlier, this, later string) {
	t.Helper()
	earlier = gitHead(t, dir)
	gitRun(t, dir, "commit", "-q", "--allow-empty", "-m", "this")
	this = gitHead(t, dir)
	gitRun(t, dir, "commit", "-q", "--allow-empty", "-m", "later")
	later = gitHead(t, dir)
	gitRun(t, dir, "checkout", "-q", this)
	return earlier, this, later
}

// latest is judged again after the scan wait, just before it moves: a
// later commit's run may have moved it meanwhile (ci.yml runs tag and
// branch pipelines in different concurrency groups).
func TestPushJudgesLatestAgainAfterTheScanWait(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		movedTo string // the commit whose image another run put latest on: later, earlier, this
		moves   bool
		log     string
	}{
		{name: "to a later commit: latest stays", movedTo: "later", log: "push: latest stays on commit %s ("},
		{name: "to an earlier commit: latest moves", movedTo: "earlier", moves: true},
		{name: "to this commit's image: nothing to do", movedTo: "this", log: "push: latest already points at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mutable := false
			ecrSrv := pushEnv(t, &mutable)
			ecrSrv.SetScanning("sidecar", "BASIC", "SCAN_ON_PUSH")
			fe := newLightPushEngine(t, ecrSrv, map[string]string{"PUSH_LATEST": "true"})
			fe.runner.scanPoll, fe.runner.scanProgress = 5*time.Millisecond, time.Hour
			earlier, this, later := threeCommits(t, fe.dir)
			older, other := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64)
			ecrSrv.SetTag("sidecar", earlier[:12], older)
			ecrSrv.SetTag("sidecar", "latest", older)
			plats := fe.platformDigests(t)
			meanwhile := map[string]string{"latest": other}
			switch tc.movedTo {
			case "later":
				meanwhile[later[:12]] = other
			case "earlier":
				meanwhile[earlier[:12]] = other
			case "this":
				meanwhile["latest"] = fmt.Sprintf("sha256:%x", sha256.Sum256(fe.top)) // the index this run pushes
			}
			ecrSrv.ScriptScan(plats[0], ecrtest.ScanState{Status: "IN_PROGRESS", Meanwhile: meanwhile}, ecrtest.ScanState{Status: "COMPLETE"})
			if err := fe.runner.Push(testCtx(t)); err != nil {
				t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
			}
			repo, _ := ecrSrv.Repository("sidecar")
			mine := repo.Tags[this[:12]]
			want := map[bool]string{true: mine, false: meanwhile["latest"]}[tc.moves]
			if mine == "" || repo.Tags["latest"] != want {
				t.Errorf("latest is on %s, want %s (this commit's image %s)", repo.Tags["latest"], want, mine)
			}
			if want := strings.ReplaceAll(tc.log, "%s", later[:12]); !strings.Contains(fe.log.String(), want) {
				t.Errorf("log does not say %q:\n%s", want, fe.log)
			}
			// Every reference to this commit's image is printed, latest too
			// when it is on it, whoever moved it there.
			onMine := repo.Tags["latest"] == mine
			if printed := strings.Contains(fe.out.String(), "/sidecar:latest@"+mine+"\n"); printed != onMine {
				t.Errorf("latest on this commit's image: %v, but printed on stdout: %v:\n%s", onMine, printed, fe.out)
			}
		})
	}
}

// latest never moves back: an older version's release (its job re-run
// after a newer release) leaves latest on the newer version's image, and
// a newer one moves it.
func TestPushKeepsLatestOnANewerVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, onLatest string // the version tag on latest's image
		moves          bool
	}{
		{name: "latest on a newer version stays", onLatest: "1.10.0"},
		{name: "latest on an older version moves", onLatest: "1.9.0", moves: true},
		{name: "latest on a pre-release of this version moves", onLatest: "1.9.5-rc.1", moves: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mutable := false
			ecrSrv := pushEnv(t, &mutable)
			other := "sha256:" + strings.Repeat("1", 64)
			ecrSrv.SetTag("sidecar", tc.onLatest, other)
			ecrSrv.SetTag("sidecar", "latest", other)
			ecrSrv.SetTag("sidecar", "123456789012", other) // an all-digit commit tag is no version
			fe := newLightPushEngine(t, ecrSrv, map[string]string{"PUSH_LATEST": "true"})
			gitTag(t, fe.dir, "v1.9.5")
			if err := fe.runner.Push(testCtx(t)); err != nil {
				t.Fatalf("Push: %v\nlog:\n%s", err, fe.log)
			}
			repo, _ := ecrSrv.Repository("sidecar")
			mine := repo.Tags[gitHead(t, fe.dir)[:12]]
			if repo.Tags["1.9.5"] != mine {
				t.Errorf("1.9.5 is on %s, want the commit's image %s", repo.Tags["1.9.5"], mine)
			}
			if want := map[bool]string{true: mine, false: other}[tc.moves]; repo.Tags["latest"] != want {
				t.Errorf("latest is on %s, want %s", repo.Tags["latest"], want)
			}
			if stays := "push: latest stays on " + tc.onLatest; strings.Contains(fe.log.String(), stays) == tc.moves {
				t.Errorf("log says %q: %v, want %v:\n%s", stays, !tc.moves, !tc.moves, fe.log)
			}
		})
	}
}
