package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/sidecar/internal/config"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// decodeJSONBlock decodes a JSON document, or the members of an object (a
// fragment to add to a container definition) as that object.
func decodeJSONBlock(block string) (any, error) {
	var v any
	err := json.Unmarshal([]byte(block), &v)
	if err == nil || json.Unmarshal([]byte("{"+block+"}"), &v) == nil {
		return v, nil
	}
	return nil, err
}

// parseJSONBlock accepts what decodeJSONBlock does, or JSON lines (log
// examples).
func parseJSONBlock(block string) error {
	_, err := decodeJSONBlock(block)
	if err == nil {
		return nil
	}
	var v any
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		if json.Unmarshal([]byte(l), &v) != nil {
			return err
		}
	}
	return nil
}

// codeBlocks returns the bodies of markdown's fenced blocks in lang.
func codeBlocks(markdown, lang string) []string {
	var out []string
	rest := markdown
	for {
		var ok bool
		var block string
		if _, rest, ok = strings.Cut(rest, "```"+lang+"\n"); !ok {
			return out
		}
		block, rest, _ = strings.Cut(rest, "```")
		out = append(out, block)
	}
}

// Every JSON block in the README and docs/ is valid JSON, so a task
// definition snippet pastes into the console or a CLI call as it is.
func TestDocsJSONBlocksParse(t *testing.T) {
	blocks := 0
	for f, text := range userDocs(t) {
		for _, block := range codeBlocks(text, "json") {
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

// Every health check command the docs show ("CMD", then the binary) names
// the binary where the Dockerfile puts it (its ENTRYPOINT), so a pasted
// task definition does not mark a working sidecar unhealthy.
func TestDocsHealthCheckPathIsTheImages(t *testing.T) {
	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	entry := regexp.MustCompile(`(?m)^ENTRYPOINT \["([^"]+)"`).FindSubmatch(dockerfile)
	if entry == nil {
		t.Fatal(`the Dockerfile has no ENTRYPOINT ["…"] line`)
	}
	bin := string(entry[1])
	texts := userDocs(t)
	texts["Dockerfile"] = string(dockerfile)
	// ECS's ["CMD", bin, …] and the Dockerfile's CMD [bin, …].
	cmd := regexp.MustCompile(`(?:\["CMD",\s*|CMD \[)"([^"]+)",\s*"healthcheck"\]`)
	seen := 0
	for f, text := range texts {
		for _, m := range cmd.FindAllStringSubmatch(text, -1) {
			seen++
			if got := m[1]; got != bin {
				t.Errorf("%s: health check runs %q; the image's binary is %q (the Dockerfile's ENTRYPOINT)", f, got, bin)
			}
		}
	}
	if seen < 7 {
		t.Fatalf("found %d health check commands in the docs, README and Dockerfile; want at least 7", seen)
	}
}

// Every sidecar container in the docs' task definitions (its image is
// …/sidecar:…) sets only variables the sidecar reads, to values it accepts:
// the examples start as pasted. Those that forward are hardened.
func TestDocsTaskDefinitionsConfigureTheSidecar(t *testing.T) {
	containers := 0
	for f, text := range userDocs(t) {
		for _, block := range codeBlocks(text, "json") {
			doc, err := decodeJSONBlock(block)
			if err != nil {
				continue // JSON lines: logs, not task definitions
			}
			for _, c := range sidecarContainers(doc) {
				containers++
				env := map[string]string{}
				for _, e := range c.Environment {
					if !slices.Contains(config.Names, e.Name) {
						t.Errorf("%s: container %q sets %s, which the sidecar does not read", f, c.Name, e.Name)
					}
					env[e.Name] = e.Value
				}
				if _, err := config.Parse(lookupMap(env)); err != nil {
					t.Errorf("%s: container %q's environment is refused: %v", f, c.Name, err)
				}
				// Forwarding needs neither a writable root nor a capability
				// (imagetest runs the image so); only sleep mode, for ECS
				// Exec, may need them.
				if env["MODE"] != "sleep" && (!c.ReadonlyRoot || !slices.Equal(c.LinuxParameters.Capabilities.Drop, []string{"ALL"})) {
					t.Errorf("%s: container %q forwards without readonlyRootFilesystem true and capabilities drop [ALL]", f, c.Name)
				}
			}
		}
	}
	if containers < 4 {
		t.Fatalf("found %d sidecar containers in the docs' JSON blocks; want at least 4", containers)
	}
}

type containerDef struct {
	Name        string `json:"name"`
	Environment []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"environment"`
	ReadonlyRoot    bool `json:"readonlyRootFilesystem"`
	StopTimeout     int  `json:"stopTimeout"` // seconds; 0 when unset
	LinuxParameters struct {
		Capabilities struct {
			Drop []string `json:"drop"`
		} `json:"capabilities"`
	} `json:"linuxParameters"`
}

// sidecarContainers finds the container definitions in doc whose image is
// the sidecar's.
func sidecarContainers(doc any) []containerDef {
	var out []containerDef
	switch v := doc.(type) {
	case map[string]any:
		if img, _ := v["image"].(string); strings.Contains(img, "/sidecar:") {
			raw, _ := json.Marshal(v)
			var c containerDef
			if json.Unmarshal(raw, &c) == nil {
				out = append(out, c)
			}
		}
		for _, x := range v {
			out = append(out, sidecarContainers(x)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, sidecarContainers(x)...)
		}
	}
	return out
}

// Every whole task definition in the docs (a block with containerDefinitions)
// registers and stops as the docs say: each dependsOn names a container of
// the same task, the task has memory (at the task level, as Fargate
// requires, or on every container), and every sidecar container's
// stopTimeout (ECS's 30 s when unset) leaves its DRAIN_TIMEOUT room to end
// in time.
func TestDocsTaskDefinitionsHangTogether(t *testing.T) {
	tasks := 0
	for f, text := range userDocs(t) {
		for _, block := range codeBlocks(text, "json") {
			var task struct {
				Memory     string `json:"memory"`
				Containers []struct {
					containerDef
					Image       string `json:"image"`
					Memory      int    `json:"memory"`
					Reservation int    `json:"memoryReservation"`
					StopTimeout int    `json:"stopTimeout"`
					DependsOn   []struct {
						ContainerName string `json:"containerName"`
					} `json:"dependsOn"`
				} `json:"containerDefinitions"`
			}
			if json.Unmarshal([]byte(block), &task) != nil || len(task.Containers) == 0 {
				continue
			}
			tasks++
			names := map[string]bool{}
			for _, c := range task.Containers {
				names[c.Name] = true
			}
			for _, c := range task.Containers {
				for _, d := range c.DependsOn {
					if !names[d.ContainerName] {
						t.Errorf("%s: container %q depends on %q, which the task does not define", f, c.Name, d.ContainerName)
					}
				}
				if task.Memory == "" && c.Memory == 0 && c.Reservation == 0 {
					t.Errorf("%s: the task has no memory and container %q none either: ECS refuses it", f, c.Name)
				}
				if !strings.Contains(c.Image, "/sidecar:") {
					continue
				}
				drain := proxy.DefaultDrainTimeout
				for _, e := range c.Environment {
					if e.Name == "DRAIN_TIMEOUT" {
						d, err := time.ParseDuration(e.Value)
						if err != nil {
							t.Fatalf("%s: DRAIN_TIMEOUT=%q: %v", f, e.Value, err)
						}
						drain = d
					}
				}
				stop := config.DefaultStopTimeout
				if c.StopTimeout != 0 {
					stop = time.Duration(c.StopTimeout) * time.Second
				}
				if stop < drain+config.StopMargin {
					t.Errorf("%s: container %q stops after %s but drains for %s: ECS would kill it mid-drain", f, c.Name, stop, drain)
				}
			}
		}
	}
	if tasks < 3 {
		t.Fatalf("found %d whole task definitions in the docs; want at least 3", tasks)
	}
}

// Every health check timeout the Dockerfile and the docs set exceeds the
// sidecar's own, so a hung admin port ends as the sidecar's "unhealthy: …"
// line rather than as the runtime's bare "exceeded timeout".
func TestHealthCheckTimeoutsExceedTheSidecars(t *testing.T) {
	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^HEALTHCHECK .*--timeout=(\d+)s`).FindSubmatch(dockerfile)
	if m == nil {
		t.Fatal("the Dockerfile has no HEALTHCHECK --timeout=Ns")
	}
	secs, _ := strconv.Atoi(string(m[1]))
	if d := time.Duration(secs) * time.Second; d <= healthcheckTimeout {
		t.Errorf("Dockerfile: HEALTHCHECK --timeout=%s; want more than the sidecar's own %s", d, healthcheckTimeout)
	}
	if want := fmt.Sprintf("(timeout %d s,", secs); !strings.Contains(userDocs(t)["docs/pipeline.md"], want) {
		t.Errorf("docs/pipeline.md's image table lacks %q, the Dockerfile's HEALTHCHECK timeout", want)
	}
	checks := 0
	for f, text := range userDocs(t) {
		for _, block := range codeBlocks(text, "json") {
			for _, hc := range healthChecks(decodeOrNil(block)) {
				checks++
				timeout := 5 * time.Second // ECS's default
				if hc > 0 {
					timeout = time.Duration(hc) * time.Second
				}
				if timeout <= healthcheckTimeout {
					t.Errorf("%s: a healthCheck's timeout is %s; want more than the sidecar's own %s", f, timeout, healthcheckTimeout)
				}
			}
		}
	}
	if checks < 3 {
		t.Fatalf("found %d healthCheck objects in the docs; want at least 3", checks)
	}
}

// docs/pipeline.md's image table states the Dockerfile's HEALTHCHECK
// timings, each of them.
func TestDocsImageHealthCheckTimings(t *testing.T) {
	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^HEALTHCHECK --interval=(\d+)s --timeout=(\d+)s --start-period=(\d+)s --retries=(\d+) `).FindSubmatch(dockerfile)
	if m == nil {
		t.Fatal("the Dockerfile has no HEALTHCHECK --interval=Ns --timeout=Ns --start-period=Ns --retries=N line")
	}
	want := fmt.Sprintf("every %s s (timeout %s s, start period %s s, %s retries)", m[1], m[2], m[3], m[4])
	if text := strings.Join(strings.Fields(userDocs(t)["docs/pipeline.md"]), " "); !strings.Contains(text, want) {
		t.Errorf("docs/pipeline.md's image table lacks %q, the Dockerfile's HEALTHCHECK", want)
	}
}

func decodeOrNil(block string) any {
	doc, err := decodeJSONBlock(block)
	if err != nil {
		return nil
	}
	return doc
}

// healthChecks returns the timeout (0 when unset) of every "healthCheck"
// object in doc.
func healthChecks(doc any) []int {
	var out []int
	for _, hc := range healthCheckObjects(doc) {
		n, _ := hc["timeout"].(float64)
		out = append(out, int(n))
	}
	return out
}

// Every whole task definition in the docs wires its app to the sidecar as
// docs/ecs.md says: a container that reaches the database (DB_HOST and
// DB_PORT) connects to a port the sidecar listens on, at its loopback
// LISTEN_ADDR, and starts only once the sidecar is HEALTHY, which needs a
// healthCheck; the sidecar has no portMappings (nothing for Service Connect
// to expose).
func TestDocsTaskDefinitionsWireTheAppToTheSidecar(t *testing.T) {
	type container struct {
		containerDef
		Image        string `json:"image"`
		HealthCheck  any    `json:"healthCheck"`
		PortMappings []any  `json:"portMappings"`
		DependsOn    []struct {
			ContainerName string `json:"containerName"`
			Condition     string `json:"condition"`
		} `json:"dependsOn"`
	}
	apps := 0
	for f, text := range userDocs(t) {
		for _, block := range codeBlocks(text, "json") {
			var task struct {
				Containers []container `json:"containerDefinitions"`
			}
			if json.Unmarshal([]byte(block), &task) != nil || len(task.Containers) == 0 {
				continue
			}
			byName := map[string]container{}
			listens := map[string]config.Config{} // sidecar container name: its configuration
			for _, c := range task.Containers {
				byName[c.Name] = c
				if !strings.Contains(c.Image, "/sidecar:") {
					continue
				}
				if len(c.PortMappings) > 0 {
					t.Errorf("%s: sidecar container %q has portMappings; the app reaches it on the task's localhost", f, c.Name)
				}
				env := envOf(c.containerDef)
				cfg, err := config.Parse(lookupMap(env))
				if err != nil {
					continue // TestDocsTaskDefinitionsConfigureTheSidecar reports it
				}
				if ip := net.ParseIP(cfg.ListenAddr); cfg.Mode == config.ModeProxy && (ip == nil || !ip.IsLoopback()) {
					t.Errorf("%s: sidecar container %q listens on %q; keep LISTEN_ADDR=127.0.0.1", f, c.Name, cfg.ListenAddr)
				}
				listens[c.Name] = cfg
			}
			for _, c := range task.Containers {
				for _, d := range c.DependsOn {
					if dep, ok := byName[d.ContainerName]; ok && d.Condition == "HEALTHY" && dep.HealthCheck == nil {
						t.Errorf("%s: container %q waits for %q to be HEALTHY, which has no healthCheck", f, c.Name, d.ContainerName)
					}
				}
				env := envOf(c.containerDef)
				if _, ok := env["DB_PORT"]; !ok || strings.Contains(c.Image, "/sidecar:") {
					continue
				}
				apps++
				if !reachesSidecar(env["DB_HOST"], env["DB_PORT"], listens) {
					t.Errorf("%s: container %q connects to %s:%s, where no sidecar of the task listens", f, c.Name, env["DB_HOST"], env["DB_PORT"])
				}
				healthy := false
				for _, d := range c.DependsOn {
					_, sidecar := listens[d.ContainerName]
					healthy = healthy || (sidecar && d.Condition == "HEALTHY")
				}
				if !healthy {
					t.Errorf("%s: container %q uses the sidecar without dependsOn it with condition HEALTHY", f, c.Name)
				}
			}
		}
	}
	if apps < 3 {
		t.Fatalf("found %d app containers (with DB_PORT) in the docs' task definitions; want at least 3", apps)
	}
}

func envOf(c containerDef) map[string]string {
	env := map[string]string{}
	for _, e := range c.Environment {
		env[e.Name] = e.Value
	}
	return env
}

// reachesSidecar reports whether host:port is a forward of one of the
// sidecars.
func reachesSidecar(host, port string, sidecars map[string]config.Config) bool {
	for _, cfg := range sidecars {
		for _, fw := range cfg.Forwards {
			if strconv.Itoa(fw.ListenPort) == port && host == cfg.ListenAddr {
				return true
			}
		}
	}
	return false
}

// Every healthCheck in the docs registers as pasted, each timing within
// ECS's range, and the sidecar's stopTimeout, where set, is no longer than
// Fargate allows.
func TestDocsHealthChecksRegister(t *testing.T) {
	// ECS's ranges (HealthCheck in the ECS API reference): a task
	// definition outside them is refused when it is registered.
	ranges := map[string][2]int{"interval": {5, 300}, "timeout": {2, 60}, "retries": {1, 10}, "startPeriod": {0, 300}}
	checks := 0
	for f, text := range userDocs(t) {
		for _, block := range codeBlocks(text, "json") {
			for _, hc := range healthCheckObjects(decodeOrNil(block)) {
				checks++
				for field, r := range ranges {
					if v, ok := hc[field].(float64); ok && (v < float64(r[0]) || v > float64(r[1]) || v != float64(int(v))) {
						t.Errorf("%s: healthCheck %s is %v; ECS accepts whole seconds (or retries) from %d to %d", f, field, v, r[0], r[1])
					}
				}
			}
			for _, c := range sidecarContainers(decodeOrNil(block)) {
				if stop := time.Duration(c.StopTimeout) * time.Second; stop > config.FargateMaxStopTimeout {
					t.Errorf("%s: sidecar container %q has stopTimeout %s; Fargate allows at most %s", f, c.Name, stop, config.FargateMaxStopTimeout)
				}
			}
		}
	}
	if checks < 3 {
		t.Fatalf("found %d healthCheck objects in the docs; want at least 3", checks)
	}
}

// healthCheckObjects returns every "healthCheck" object in doc.
func healthCheckObjects(doc any) []map[string]any {
	var out []map[string]any
	switch v := doc.(type) {
	case map[string]any:
		for k, x := range v {
			if hc, ok := x.(map[string]any); ok && k == "healthCheck" {
				out = append(out, hc)
				continue
			}
			out = append(out, healthCheckObjects(x)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, healthCheckObjects(x)...)
		}
	}
	return out
}
