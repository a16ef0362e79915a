// Package daggertest is a recording Dagger session for tests of code that
// drives the Dagger Go SDK. No engine can run on our CI machines, so the
// test serves the session endpoint itself: Start sets DAGGER_SESSION_PORT
// and DAGGER_SESSION_TOKEN (as `dagger run` does), the SDK then POSTs each
// lazy chain as one GraphQL query to /query, and the server parses it with
// gqlparser, answers the leaf fields, and records the chain. Tests assert
// on what the pipeline asked the engine to do, in order.
//
// IDs: every object passed as an argument is first resolved by an `id`
// query; the server remembers which chain produced each ID so assertions
// can follow an argument back to what it is (Resolve, Query.Expand).
//
// Engine behaviours it reproduces, each read in the engine's source at
// v0.21.8 (github.com/dagger/dagger, commit 7902e644be); anything else is
// answered with a zero value or what a Handle override returns:
//
//   - Service readiness (Services, Startup): before a container runs, each
//     bound service is started, its own bindings first; a container whose
//     config has a healthcheck (Dockerfile HEALTHCHECK, from's image
//     config, withDockerHealthcheck) is ready when that passes, at its
//     interval; one without is ready when its withExposedPort ports accept.
//     core/service.go Service.startContainer; core/healthcheck.go
//     dockerHealthcheck.Check, durationBetweenRetries, portHealthChecker.Check.
//   - The engine's platform (Platform): defaultPlatform answers it.
//     core/schema/platform.go platformSchema.defaultPlatform. Directory.dockerBuild derives
//     BUILDPLATFORM from the target, not from the engine
//     (core/container.go Container.Build; dockerfile2llb/platform.go
//     buildPlatformOpt), which is why the pipeline passes it.
//   - Platform variants: export and publish take the variants as IDs of
//     their own chains (Resolve follows them); the empty receiver
//     container (client.Container()) is not a variant.
//     core/container.go Container.Export (filterEmptyContainers).
//   - Secret resolution (Secret): a file:// secret is read when a query
//     that needs it is evaluated, not when it is created, and a missing
//     file fails that query. core/secret.go Secret.plaintext;
//     engine/client/secretprovider/file.go fileProvider.
//   - ExecError (ExecFailure): a failed exec is a GraphQL error with
//     extensions _type EXEC_ERROR, cmd, exitCode, stdout, stderr, which the
//     SDK turns into *dagger.ExecError. core/exec_error.go ExecError.Extensions.
//   - Image references (ImageDigest): from(address) on a tag resolves it
//     to the digest of the root descriptor (an index for a multi-platform
//     image, the same for every platform) and imageRef, asked right after
//     from, answers the normalized name with its tag and that digest
//     (name:tag@sha256:…); after any other call it is an error. A digest
//     in the address is kept. core/schema/container.go containerSchema.from
//     (reference.ParseNormalizedNamed, TagNameOnly, ResolveImageConfig,
//     reference.WithDigest), containerSchema.imageRef;
//     engine/server/resolver/resolver.go Resolver.ResolveImageConfig
//     (digest: rootDesc.Digest); core/container.go Container.ImageRefOrErr.
//   - Image platforms (ImagePlatforms): from(address) on a container of a
//     platform the image's index lacks fails with "no manifest matches
//     requested platform for <index digest>"; a container with no platform
//     argument is of the engine's platform. engine/server/resolver/resolver.go
//     Resolver.ResolveImageConfig (imageConfigPlatformMatcher:
//     platforms.Only) and engine/server/resolver/metadata.go
//     imageConfigMetadataChildrenHandler.
//   - Image loading (RunnerHost): exportImage loads into the client's
//     Docker only through a driver with an image loader; the unix:// and
//     tcp:// drivers have none, so exportImage fails with "client has no
//     supported api for loading image". engine/client/drivers/dial.go
//     (dialDriver registered for tcp and unix with a nil loader,
//     ImageLoader); engine/engineutil/containerimage.go
//     Client.ExportContainerImage.
//   - Export layout: export writes an OCI image layout tarball whose index
//     lists one manifest per platform variant (core/container.go
//     Container.Export, ExportContainerImage); the default answer writes
//     nothing, tests write one with ci/imagesize/imagesizetest.
package daggertest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"dagger.io/dagger/engineconn"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/example/sidecar/internal/testkit"
)

// Version is the engine and SDK version this model was read from
// (github.com/dagger/dagger at ModelCommit). A test fails when go.mod's
// dagger.io/dagger differs: a Dagger bump must revisit every behaviour
// listed in the package comment.
const (
	Version     = "v0.21.8"
	ModelCommit = "7902e644be"
)

// Call is one field selection in a chain with its arguments.
type Call struct {
	Field string
	Args  map[string]any
}

// Arg returns the argument as a string ("" when absent or not a string).
func (c Call) Arg(name string) string {
	s, _ := c.Args[name].(string)
	return s
}

// Query is one recorded request: the chain from the root to the leaf.
type Query struct {
	Seq   int
	Text  string
	Chain []Call
}

// Leaf is the last field of the chain (what was asked for).
func (q Query) Leaf() Call { return q.Chain[len(q.Chain)-1] }

// Find returns the first call of field in the chain.
func (q Query) Find(field string) (Call, bool) {
	for _, c := range q.Chain {
		if c.Field == field {
			return c, true
		}
	}
	return Call{}, false
}

// FindAll returns every call of field in the chain, in order.
func (q Query) FindAll(field string) []Call {
	var out []Call
	for _, c := range q.Chain {
		if c.Field == field {
			out = append(out, c)
		}
	}
	return out
}

// Has reports whether field appears anywhere in the chain.
func (q Query) Has(field string) bool {
	_, ok := q.Find(field)
	return ok
}

// String renders the chain as field(arg:value).field(...), arguments
// sorted, values as JSON.
func (q Query) String() string {
	parts := make([]string, len(q.Chain))
	for i, c := range q.Chain {
		parts[i] = c.String()
	}
	return strings.Join(parts, ".")
}

func (c Call) String() string {
	if len(c.Args) == 0 {
		return c.Field
	}
	names := make([]string, 0, len(c.Args))
	for n := range c.Args {
		names = append(names, n)
	}
	sort.Strings(names)
	args := make([]string, len(names))
	for i, n := range names {
		args[i] = n + ":" + formatValue(c.Args[n])
	}
	return c.Field + "(" + strings.Join(args, ", ") + ")"
}

// expanded is an ID argument replaced by its chain; printed as is.
type expanded string

func formatValue(v any) string {
	switch x := v.(type) {
	case expanded:
		return string(x)
	case string:
		return strconv.Quote(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = formatValue(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ":" + formatValue(x[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// Handler answers a leaf field. It returns the JSON value for the leaf, or
// an error to fail the whole query (use ExecFailure for a failed exec).
type Handler func(q Query) (any, error)

// Server is the recording session. Its methods are safe for concurrent use
// (the SDK resolves argument IDs in parallel).
type Server struct {
	Token string

	mu       sync.Mutex
	queries  []Query
	ids      map[string]Query
	handlers map[string]Handler
	observer func(Query)
	platform string
	startup  StartupFunc
	plats    map[string][]string // normalized image -> platforms of its index
	runner   string              // runner host scheme: "" = image:// (engine in Docker)
	services []Service
	secrets  map[string]string
	port     int // where it listens on 127.0.0.1
}

// Start serves a session on 127.0.0.1 until the test ends and points the
// SDK at it through DAGGER_SESSION_PORT/DAGGER_SESSION_TOKEN (restored
// after the test), as `dagger run` does. Such a test cannot run in
// parallel; Serve's can.
func Start(t testing.TB) *Server {
	t.Helper()
	s := Serve(t)
	for k, v := range s.Env() {
		t.Setenv(k, v)
	}
	return s
}

// Serve serves a session on 127.0.0.1 until the test ends, leaving the
// environment alone: the code under test reaches it through Env (the
// variables `dagger run` would set) and Conn.
func Serve(t testing.TB) *Server {
	t.Helper()
	s := &Server{Token: "daggertest-token", ids: map[string]Query{}, handlers: map[string]Handler{},
		platform: "linux/" + runtime.GOARCH, secrets: map[string]string{}, plats: map[string][]string{}}
	l := testkit.Listen(t) // 127.0.0.1 only: httptest would fall back to ::1
	srv := httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	s.port = l.Addr().(*net.TCPAddr).Port
	return s
}

// Env is the session's DAGGER_SESSION_PORT and DAGGER_SESSION_TOKEN.
func (s *Server) Env() map[string]string {
	return map[string]string{"DAGGER_SESSION_PORT": strconv.Itoa(s.port), "DAGGER_SESSION_TOKEN": s.Token}
}

// Conn is a connection to the session for dagger.WithConn: ConnTo its
// port with its token.
func (s *Server) Conn() engineconn.EngineConn { return ConnTo(s.port, s.Token) }

// ConnTo is a connection for dagger.WithConn to whatever listens at
// 127.0.0.1:port, made as the SDK makes one from DAGGER_SESSION_PORT and
// DAGGER_SESSION_TOKEN (dagger.io/dagger engineconn/env.go
// FromSessionEnv, engineconn.go defaultHTTPClient: every request to
// 127.0.0.1:port, the token as the basic-auth user), without reading the
// environment.
func ConnTo(port int, token string) engineconn.EngineConn {
	dial := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	}}
	return &sessionConn{host: fmt.Sprintf("127.0.0.1:%d", port), Client: &http.Client{
		Transport: engineconn.RoundTripperFunc(func(r *http.Request) (*http.Response, error) {
			r.SetBasicAuth(token, "")
			return dial.RoundTrip(r)
		}),
	}}
}

type sessionConn struct {
	*http.Client
	host string
}

func (c *sessionConn) Host() string { return c.host }
func (c *sessionConn) Close() error { return nil }

// Platform sets what defaultPlatform answers: the engine's own platform
// (default: this machine's, as for an engine started here).
func (s *Server) Platform(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.platform = p
}

// ImagePlatforms declares the platforms of ref's index (by default an
// image has every platform): from(ref) for another platform then fails.
func (s *Server) ImagePlatforms(ref string, platforms ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.plats[NormalizeImage(ref)] = platforms
}

// checkPlatforms fails a chain that takes an image from a registry for a
// platform its index lacks (see ImagePlatforms).
func (s *Server) checkPlatforms(chain []Call) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	plat := s.platform // container() without a platform: the engine's
	for _, c := range chain {
		switch c.Field {
		case "container":
			if p := c.Arg("platform"); p != "" {
				plat = p
			}
		case "from":
			ref := c.Arg("address")
			if ps, ok := s.plats[NormalizeImage(ref)]; ok && !slices.Contains(ps, plat) {
				return Failure("no manifest matches requested platform for " + ImageDigest(ref))
			}
		}
	}
	return nil
}

// RunnerHost sets the scheme of the runner host the session stands for
// (_EXPERIMENTAL_DAGGER_RUNNER_HOST): "unix" and "tcp" have no image
// loader, so exportImage fails as on such an engine.
func (s *Server) RunnerHost(scheme string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runner = scheme
}

// Handle overrides the answer for leaf field (e.g. "stdout", "size").
func (s *Server) Handle(field string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[field] = h
}

// Observe calls fn for every query as it arrives (before it is answered),
// e.g. to check what else has happened by then.
func (s *Server) Observe(fn func(Query)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observer = fn
}

// Queries returns the recorded queries in arrival order.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.queries)
}

// Select returns the recorded queries for which keep is true.
func (s *Server) Select(keep func(Query) bool) []Query {
	var out []Query
	for _, q := range s.Queries() {
		if keep(q) {
			out = append(out, q)
		}
	}
	return out
}

// Resolve returns the chain that produced an ID.
func (s *Server) Resolve(id string) (Query, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.ids[id]
	return q, ok
}

// Expand renders q with every ID argument replaced by the chain that
// produced it, in braces: publish(platformVariants:[{host.directory...}]).
func (s *Server) Expand(q Query) string {
	parts := make([]string, len(q.Chain))
	for i, c := range q.Chain {
		ex := Call{Field: c.Field, Args: map[string]any{}}
		for k, v := range c.Args {
			ex.Args[k] = s.expandValue(v)
		}
		parts[i] = ex.String()
	}
	return strings.Join(parts, ".")
}

func (s *Server) expandValue(v any) any {
	switch x := v.(type) {
	case string:
		if q, ok := s.Resolve(x); ok {
			return expanded("{" + s.Expand(q) + "}")
		}
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = s.expandValue(e)
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = s.expandValue(e)
		}
		return out
	}
	return v
}

// Text returns every recorded query's raw GraphQL, one per line: what a
// secret must never appear in.
func (s *Server) Text() string {
	var b strings.Builder
	for _, q := range s.Queries() {
		b.WriteString(q.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

// gqlError is a GraphQL error as the engine reports it.
type gqlError struct {
	Message    string         `json:"message"`
	Path       []string       `json:"path,omitempty"`
	Extensions map[string]any `json:"extensions,omitempty"`
}

func (e *gqlError) Error() string { return e.Message }

// ExecFailure is the error the engine returns when a withExec exits
// non-zero; the SDK turns it into *dagger.ExecError. As the engine makes
// it (core/exec_error.go execErrorFromMetaRef): the message is the cause
// with its trace origin appended, "exit code: N [traceparent:…]"
// (telemetry.TrackOrigin), and stdout and stderr are trimmed of
// surrounding whitespace.
func ExecFailure(cmd []string, exitCode int, stdout, stderr string) error {
	args := make([]any, len(cmd))
	for i, c := range cmd {
		args[i] = c
	}
	trace := sha256.Sum256([]byte(strings.Join(cmd, " ")))
	return &gqlError{
		Message: fmt.Sprintf("exit code: %d [traceparent:00-%x-%x-01]", exitCode, trace[:16], trace[16:24]),
		Extensions: map[string]any{
			"_type": "EXEC_ERROR", "cmd": args, "exitCode": exitCode,
			"stdout": strings.TrimSpace(stdout), "stderr": strings.TrimSpace(stderr),
		},
	}
}

// Failure is a plain engine error (e.g. a failed build).
func Failure(msg string) error { return &gqlError{Message: msg} }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	user, _, _ := r.BasicAuth()
	if r.URL.Path != "/query" || r.Method != http.MethodPost || user != s.Token {
		http.Error(w, "daggertest: want POST /query with the session token", http.StatusUnauthorized)
		return
	}
	var req struct {
		Query     string         `json:"query"`
		Variables map[string]any `json:"variables"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	doc, err := parser.ParseQuery(&ast.Source{Input: req.Query})
	if err != nil {
		writeJSON(w, map[string]any{"errors": []any{&gqlError{Message: "daggertest: parse: " + err.Error()}}})
		return
	}
	if len(doc.Operations) != 1 {
		writeJSON(w, map[string]any{"errors": []any{&gqlError{Message: "daggertest: want one operation"}}})
		return
	}
	data, err := s.answer(req.Query, doc.Operations[0].SelectionSet, nil, req.Variables)
	if err != nil {
		ge, ok := err.(*gqlError)
		if !ok {
			ge = &gqlError{Message: err.Error()}
		}
		writeJSON(w, map[string]any{"data": nil, "errors": []any{ge}})
		return
	}
	writeJSON(w, map[string]any{"data": data})
}

// answer builds the response object for a selection set, recording a
// query for every leaf reached.
func (s *Server) answer(text string, set ast.SelectionSet, chain []Call, vars map[string]any) (map[string]any, error) {
	out := map[string]any{}
	for _, sel := range set {
		switch x := sel.(type) {
		case *ast.InlineFragment: // node(id:){... on Container{...}}: same level
			sub, err := s.answer(text, x.SelectionSet, chain, vars)
			if err != nil {
				return nil, err
			}
			for k, v := range sub {
				out[k] = v
			}
		case *ast.Field:
			call := Call{Field: x.Name, Args: map[string]any{}}
			for _, a := range x.Arguments {
				v, err := a.Value.Value(vars)
				if err != nil {
					return nil, fmt.Errorf("daggertest: argument %s: %w", a.Name, err)
				}
				call.Args[a.Name] = v
			}
			next := append(slices.Clone(chain), call)
			key := x.Alias
			if key == "" {
				key = x.Name
			}
			if len(x.SelectionSet) > 0 {
				sub, err := s.answer(text, x.SelectionSet, next, vars)
				if err != nil {
					return nil, err
				}
				out[key] = sub
				continue
			}
			v, err := s.leaf(text, next)
			if err != nil {
				return nil, err
			}
			out[key] = v
		default:
			return nil, fmt.Errorf("daggertest: unsupported selection %T", sel)
		}
	}
	return out, nil
}

func (s *Server) leaf(text string, chain []Call) (any, error) {
	s.mu.Lock()
	q := Query{Seq: len(s.queries), Text: text, Chain: chain}
	s.queries = append(s.queries, q)
	h := s.handlers[q.Leaf().Field]
	obs := s.observer
	s.mu.Unlock()
	if obs != nil {
		obs(q)
	}
	if err := s.checkPlatforms(q.Chain); err != nil {
		return nil, err
	}
	if resolves[q.Leaf().Field] {
		if err := s.resolveSecrets(q.Chain, map[string]bool{}); err != nil {
			return nil, err
		}
	}
	if evaluates[q.Leaf().Field] {
		if err := s.startServices(q.Chain, map[string]bool{}); err != nil {
			return nil, err
		}
	}
	if h != nil {
		return h(q)
	}
	return s.defaultAnswer(q)
}

func (s *Server) defaultAnswer(q Query) (any, error) {
	leaf := q.Leaf()
	switch leaf.Field {
	case "id", "sync", "start", "stop":
		s.mu.Lock()
		defer s.mu.Unlock()
		id := fmt.Sprintf("daggertest-id-%d", len(s.ids)+1)
		s.ids[id] = Query{Seq: q.Seq, Text: q.Text, Chain: q.Chain[:len(q.Chain)-1]}
		return id, nil
	case "publish":
		addr := leaf.Arg("address")
		sum := sha256.Sum256([]byte(s.Expand(q)))
		return addr + "@sha256:" + hex.EncodeToString(sum[:]), nil
	case "export":
		return leaf.Arg("path"), nil
	case "stdout", "stderr", "combinedOutput", "contents":
		return "", nil
	case "exitCode", "size":
		return 0, nil
	case "defaultPlatform":
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.platform, nil
	case "version":
		return Version, nil
	case "exportImage":
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.runner == "unix" || s.runner == "tcp" {
			return nil, Failure("client has no supported api for loading image")
		}
		return nil, nil
	case "imageRef":
		if len(q.Chain) < 2 || q.Chain[len(q.Chain)-2].Field != "from" {
			return nil, Failure("Image reference can only be retrieved immediately after the 'Container.From' call. Error in fetching imageRef as the container image is changed")
		}
		return ImageRef(q.Chain[len(q.Chain)-2].Arg("address")), nil
	}
	return nil, nil
}

// NormalizeImage is reference.ParseNormalizedNamed followed by
// TagNameOnly, for the references tests use: docker.io/library/ for a
// bare Docker Hub name, :latest when there is neither tag nor digest.
func NormalizeImage(ref string) string {
	name, digest, _ := strings.Cut(ref, "@")
	first, _, hasSlash := strings.Cut(name, "/")
	if !hasSlash || !strings.ContainsAny(first, ".:") && first != "localhost" {
		if !hasSlash {
			name = "library/" + name
		}
		name = "docker.io/" + name
	}
	if i := strings.LastIndex(name, "/"); !strings.Contains(name[i+1:], ":") && digest == "" {
		name += ":latest"
	}
	if digest != "" {
		return name + "@" + digest
	}
	return name
}

// ImageDigest is the digest the session resolves a tag to (its root
// descriptor's): a hash of the normalized reference, so tests can
// compute it.
func ImageDigest(ref string) string {
	sum := sha256.Sum256([]byte("daggertest-image:" + NormalizeImage(ref)))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ImageRef is what imageRef answers right after from(ref).
func ImageRef(ref string) string {
	n := NormalizeImage(ref)
	if strings.Contains(n, "@") {
		return n
	}
	return n + "@" + ImageDigest(ref)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
