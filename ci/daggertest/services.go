package daggertest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Healthcheck is a container's Docker healthcheck as the engine keeps it
// (dockerspec.HealthcheckConfig): Test is ["CMD", args...] or
// ["CMD-SHELL", command].
type Healthcheck struct {
	Test          []string
	Interval      time.Duration
	Timeout       time.Duration
	StartPeriod   time.Duration
	StartInterval time.Duration
	Retries       int
}

// Service is one service the session started for a query, with how the
// model decided it was ready.
type Service struct {
	Alias string // the binding's alias (hostname)
	Query Query  // the chain that made the service; its last call is asService
	// Healthcheck is what the engine checks readiness with; nil means it
	// dials the exposed Ports instead.
	Healthcheck *Healthcheck
	Ports       []int // withExposedPort ports the port check dials
	// Ready is the modelled time from the service's start until the
	// engine saw it ready (or gave up, when Err is set); Checks is how
	// many checks or dials that took.
	Ready  time.Duration
	Checks int
	Err    error
}

// StartupFunc says how long a started service takes until its readiness
// check would pass; ok=false means it never does.
type StartupFunc func(svc Service) (d time.Duration, ok bool)

// Startup sets how long services take to come up (default: ready at the
// first check).
func (s *Server) Startup(fn StartupFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.startup = fn
}

// Services returns the services started so far, in start order.
func (s *Server) Services() []Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Service(nil), s.services...)
}

// evaluates are leaves whose answer needs the container run, so the
// engine first starts the services bound to it.
var evaluates = map[string]bool{"stdout": true, "stderr": true, "combinedOutput": true, "exitCode": true, "sync": true}

// startServices starts, as the engine does before running a container,
// every service bound to the chain (each service's own bindings first),
// and fails the query when one never gets ready.
func (s *Server) startServices(chain []Call, seen map[string]bool) error {
	for _, c := range chain {
		if c.Field != "withServiceBinding" {
			continue
		}
		id := c.Arg("service")
		if seen[id] {
			continue
		}
		seen[id] = true
		q, ok := s.Resolve(id)
		if !ok {
			return fmt.Errorf("daggertest: withServiceBinding(%s): not a service ID the session issued", id)
		}
		if err := s.startServices(q.Chain, seen); err != nil {
			return err
		}
		svc := s.readiness(c.Arg("alias"), q)
		s.mu.Lock()
		s.services = append(s.services, svc)
		s.mu.Unlock()
		if svc.Err != nil {
			return &gqlError{Message: fmt.Sprintf("start %s: %v", svc.Alias, svc.Err)}
		}
	}
	return nil
}

// readiness models how v0.21.8 decides a started service is ready
// (core/service.go, Service.startContainer): with a healthcheck in the
// container's config it runs that (core/healthcheck.go, dockerHealthcheck),
// otherwise it dials every exposed port (core/healthcheck.go,
// portHealthChecker.Check).
func (s *Server) readiness(alias string, q Query) Service {
	svc := Service{Alias: alias, Query: q}
	svc.Healthcheck, svc.Ports = s.containerConfig(q.Chain)
	s.mu.Lock()
	startup := s.startup
	s.mu.Unlock()
	up, ok := time.Duration(0), true
	if startup != nil {
		up, ok = startup(svc)
	}
	if svc.Healthcheck != nil {
		svc.Ready, svc.Checks, svc.Err = healthcheckReady(svc.Healthcheck, up, ok)
	} else {
		svc.Ready, svc.Checks, svc.Err = portsReady(svc.Ports, up, ok)
	}
	return svc
}

// healthcheckReady is dockerHealthcheck.Check (core/healthcheck.go): the
// first check runs as soon as the container has started; between checks
// it waits StartInterval if set, else Interval, else 5s
// (durationBetweenRetries: StartInterval applies after the start period
// too, unlike Docker); failures before StartPeriod do not count; the
// Retries-th counted failure (default 3) fails the service. Timeout is
// not applied (dockerHealthcheck.check runs the command without it).
// newDockerHealthcheck rejects NONE and malformed tests.
func healthcheckReady(hc *Healthcheck, up time.Duration, ok bool) (time.Duration, int, error) {
	if len(hc.Test) == 0 || hc.Test[0] == "NONE" {
		return 0, 0, fmt.Errorf("failed to setup docker healthcheck: container does not have a healthcheck command")
	}
	if hc.Test[0] != "CMD" && hc.Test[0] != "CMD-SHELL" || len(hc.Test) < 2 {
		return 0, 0, fmt.Errorf("failed to setup docker healthcheck: malformed healthcheck command: %v", hc.Test)
	}
	wait := 5 * time.Second
	switch {
	case hc.StartInterval > 0:
		wait = hc.StartInterval
	case hc.Interval > 0:
		wait = hc.Interval
	}
	retries := 3
	if hc.Retries > 0 {
		retries = hc.Retries
	}
	failures := 0
	for t, n := time.Duration(0), 1; ; t, n = t+wait, n+1 {
		if ok && t >= up {
			return t, n, nil
		}
		if t >= hc.StartPeriod {
			failures++
		}
		if failures == retries {
			return t, n, fmt.Errorf("health check errored: process %q did not complete successfully: exit code: 1", strings.Join(hc.Test[1:], " "))
		}
	}
}

// portsReady is portHealthChecker.Check (core/healthcheck.go): no ports,
// ready at once; otherwise each port in turn is dialled with exponential
// backoff from 100ms (backoff/v4 defaults otherwise: factor 1.5, here
// without jitter; 15 minutes in all).
func portsReady(ports []int, up time.Duration, ok bool) (time.Duration, int, error) {
	var t time.Duration
	n := 0
	for _, p := range ports {
		for wait := 100 * time.Millisecond; ; wait = min(wait*3/2, 10*time.Second) {
			n++
			if ok && t >= up {
				break
			}
			if t+wait > 15*time.Minute {
				return t, n, fmt.Errorf("health check errored: checking for port %d/tcp: dial tcp: connection refused", p)
			}
			t += wait
		}
	}
	return t, n, nil
}

// containerConfig follows a container chain the way the engine builds the
// container's config: dockerBuild takes the Dockerfile's final-stage
// HEALTHCHECK (read from the host directory the chain names), from takes
// what ImageConfig set, withDockerHealthcheck/withoutDockerHealthcheck
// replace or clear it (core/schema/container.go, withHealthcheck and
// withoutHealthcheck). Ports come from withExposedPort only: image EXPOSE
// does not add to the container's Ports (core/container.go,
// WithExposedPort), and experimentalSkipHealthcheck ports are not dialled.
func (s *Server) containerConfig(chain []Call) (*Healthcheck, []int) {
	var hc *Healthcheck
	var ports []int
	hostDir := ""
	for _, c := range chain {
		switch c.Field {
		case "directory":
			hostDir = c.Arg("path")
		case "from":
			// Pulled images' configs are not available to the fake:
			// none is given a healthcheck.
			hc = nil
			ports = nil
		case "dockerBuild":
			name := c.Arg("dockerfile")
			if name == "" {
				name = "Dockerfile"
			}
			hc = dockerfileHealthcheck(filepath.Join(hostDir, name))
			ports = nil
		case "withDockerHealthcheck":
			hc = healthcheckArgs(c)
		case "withoutDockerHealthcheck":
			hc = nil
		case "withExposedPort":
			if skip, _ := c.Args["experimentalSkipHealthcheck"].(bool); !skip {
				ports = append(ports, argInt(c.Args["port"]))
			}
		}
	}
	return hc, ports
}

func healthcheckArgs(c Call) *Healthcheck {
	var args []string
	raw, _ := c.Args["args"].([]any)
	for _, a := range raw {
		args = append(args, fmt.Sprint(a))
	}
	hc := &Healthcheck{Test: append([]string{"CMD"}, args...)}
	if shell, _ := c.Args["shell"].(bool); shell {
		hc.Test = append([]string{"CMD-SHELL"}, args...)
	}
	dur := func(name string) time.Duration {
		d, _ := time.ParseDuration(c.Arg(name))
		return d
	}
	hc.Interval, hc.Timeout, hc.StartPeriod, hc.StartInterval = dur("interval"), dur("timeout"), dur("startPeriod"), dur("startInterval")
	hc.Retries = argInt(c.Args["retries"])
	return hc
}

func argInt(v any) int {
	switch x := v.(type) {
	case int64:
		return int(x)
	case float64:
		return int(x)
	case int:
		return x
	case string:
		n, _ := strconv.Atoi(x)
		return n
	}
	return 0
}

// dockerfileHealthcheck returns the last HEALTHCHECK of the Dockerfile's
// final stage (nil when none or unreadable). Limits of this reading: a
// healthcheck inherited from a base image or an earlier stage is not seen.
func dockerfileHealthcheck(path string) *Healthcheck {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var hc *Healthcheck
	var insn strings.Builder
	sc := bufio.NewScanner(f)
	flush := func() {
		line := strings.TrimSpace(insn.String())
		insn.Reset()
		word, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(word) {
		case "FROM":
			hc = nil
		case "HEALTHCHECK":
			hc = parseHealthcheck(strings.TrimSpace(rest))
		}
	}
	for sc.Scan() {
		line := sc.Text()
		if t := strings.TrimSpace(line); insn.Len() == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			insn.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		insn.WriteString(line)
		flush()
	}
	return hc
}

// parseHealthcheck reads HEALTHCHECK's flags and CMD (exec or shell
// form), with Docker's defaults for unset flags left zero as in the image
// config.
func parseHealthcheck(s string) *Healthcheck {
	hc := &Healthcheck{}
	for strings.HasPrefix(s, "--") {
		var flag string
		flag, s, _ = strings.Cut(s, " ")
		s = strings.TrimSpace(s)
		name, val, _ := strings.Cut(strings.TrimPrefix(flag, "--"), "=")
		d, _ := time.ParseDuration(val)
		switch name {
		case "interval":
			hc.Interval = d
		case "timeout":
			hc.Timeout = d
		case "start-period":
			hc.StartPeriod = d
		case "start-interval":
			hc.StartInterval = d
		case "retries":
			hc.Retries, _ = strconv.Atoi(val)
		}
	}
	word, rest, _ := strings.Cut(s, " ")
	rest = strings.TrimSpace(rest)
	switch strings.ToUpper(word) {
	case "NONE":
		hc.Test = []string{"NONE"}
	case "CMD":
		var args []string
		if json.Unmarshal([]byte(rest), &args) == nil {
			hc.Test = append([]string{"CMD"}, args...)
		} else {
			hc.Test = []string{"CMD-SHELL", rest}
		}
	}
	return hc
}

// resolves are leaves after which the engine has needed every secret the
// chain uses: running a container, exporting or publishing it.
var resolves = map[string]bool{"stdout": true, "stderr": true, "combinedOutput": true, "exitCode": true, "sync": true,
	"export": true, "exportImage": true, "publish": true}

// resolveSecrets reads, at the time the query is evaluated, every
// file:// secret the chain reaches through its ID arguments, as the
// engine does: it asks the client's session for the plaintext only when
// it needs it (core/secret.go, Secret.plaintext), and the session reads
// the file then (engine/client/secretprovider/file.go, fileProvider). So
// a secret file removed before the query runs fails it.
func (s *Server) resolveSecrets(chain []Call, seen map[string]bool) error {
	for _, c := range chain {
		if c.Field == "secret" {
			uri := c.Arg("uri")
			path, ok := strings.CutPrefix(uri, "file://")
			if !ok {
				continue // env://, op://, ...: not modelled
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return &gqlError{Message: fmt.Sprintf("failed to read secret file %q: %v", path, err)}
			}
			s.mu.Lock()
			s.secrets[uri] = string(b)
			s.mu.Unlock()
		}
		for _, v := range c.Args {
			for _, id := range idsIn(v) {
				if seen[id] {
					continue
				}
				seen[id] = true
				if q, ok := s.Resolve(id); ok {
					if err := s.resolveSecrets(q.Chain, seen); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

func idsIn(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, idsIn(e)...)
		}
		return out
	case map[string]any:
		var out []string
		for _, e := range x {
			out = append(out, idsIn(e)...)
		}
		return out
	}
	return nil
}

// Secret returns the plaintext the session read for a secret URI, and
// whether any evaluated query needed it.
func (s *Server) Secret(uri string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.secrets[uri]
	return v, ok
}

// DockerfileHealthcheck is the HEALTHCHECK the fake reads from a
// Dockerfile's final stage for dockerBuild (nil when none).
func DockerfileHealthcheck(path string) *Healthcheck { return dockerfileHealthcheck(path) }
