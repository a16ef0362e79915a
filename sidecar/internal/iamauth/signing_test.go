package iamauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// slowProvider answers after delay, unless its context ends first.
type slowProvider struct{ delay time.Duration }

func (p slowProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	select {
	case <-time.After(p.delay):
		return aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "s"}, nil
	case <-ctx.Done():
		return aws.Credentials{}, ctx.Err()
	}
}

// The login that began a signing leaves (its app gave up): the others
// waiting for the same token still get it.
func TestSigningOutlivesTheLoginThatBeganIt(t *testing.T) {
	tk := &Tokens{Source: Source{Provider: aws.NewCredentialsCache(slowProvider{300 * time.Millisecond}), Name: "test"}, Region: "us-east-1"}
	a := &Authority{Tokens: tk, Endpoint: "db:3306"}
	first, leave := context.WithCancel(context.Background())
	began := make(chan error, 1)
	go func() { _, err := a.Password(first, "app", nil, nil); began <- err }()
	time.Sleep(20 * time.Millisecond) // the first login owns the signing
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() { _, errs[i] = a.Password(context.Background(), "app", nil, nil) })
	}
	time.Sleep(20 * time.Millisecond)
	leave()
	if err := <-began; !errors.Is(err, context.Canceled) {
		t.Errorf("the login that left got %v, want its cancellation", err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("login %d failed because another app left: %v", i, err)
		}
	}
	if st := tk.Stats(); st.Signed != 1 || st.Reused != 5 || st.Failures[ReasonUnreachable] != 0 {
		t.Errorf("stats %+v; want 1 signed, 5 reused, and the app that left not counted as a failure", st)
	}
}

// A login whose time runs out while it waits for credentials is refused
// and counted; the credentials arriving later still serve the next one.
func TestLoginTimeBoundsTheWaitForCredentials(t *testing.T) {
	tk := &Tokens{Source: Source{Provider: aws.NewCredentialsCache(slowProvider{time.Second}), Name: "slow source"}, Region: "us-east-1"}
	a := &Authority{Tokens: tk, Endpoint: "db:3306"}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := a.Password(ctx, "app", nil, nil)
	var f *Failure
	if !errors.As(err, &f) || f.Reason != ReasonUnreachable || !strings.Contains(err.Error(), "slow source") {
		t.Fatalf("got %v, want an endpoint_unreachable failure naming the source", err)
	}
	if n := tk.Stats().Failures[ReasonUnreachable]; n != 1 {
		t.Fatalf("endpoint_unreachable counted %d times, want 1", n)
	}
	if _, err := tk.Token(context.Background(), "db:3306", "app"); err != nil {
		t.Fatalf("the next login: %v", err)
	}
}

// credentialsServer is a container credentials endpoint: answer decides,
// per request (from 1), whether to answer, with credentials that expire
// after life, or to hang until the client gives up.
func credentialsServer(t *testing.T, life time.Duration, answer func(n int64) bool) (url string, requests *atomic.Int64) {
	t.Helper()
	requests = new(atomic.Int64)
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !answer(requests.Add(1)) {
			select {
			case <-r.Context().Done():
			case <-stop: // the test ends: Close waits for handlers
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"AccessKeyId":"AKID","SecretAccessKey":"s","Token":"t","Expiration":%q}`, time.Now().Add(life).UTC().Format(time.RFC3339))
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) }) // runs first
	return srv.URL + "/creds", requests
}

// The SDK shares one credentials request among all callers and waits
// for it without limit: a request the endpoint never answers must not
// stall every login after it.
func TestUnansweredCredentialsRequestDoesNotStallLogins(t *testing.T) {
	uri, requests := credentialsServer(t, time.Hour, func(n int64) bool { return n > 1 })
	env := map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": uri}
	src, err := credentialSource(func(k string) string { return env[k] }, "us-east-1", "AWS_REGION", 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	tk := &Tokens{Source: src, Region: "us-east-1"}
	var errs []error
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := tk.Token(ctx, "db:3306", "app")
		cancel()
		if err == nil {
			return
		}
		errs = append(errs, err)
	}
	t.Fatalf("no login got a token after the endpoint answered again (requests made: %d): %v", requests.Load(), errs)
}

// Credentials with a few minutes left are still good for a login: the
// token is signed with them (and replaced sooner).
func TestCredentialsNearTheirExpiryStillServe(t *testing.T) {
	uri, _ := credentialsServer(t, 4*time.Minute, func(int64) bool { return true })
	env := map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": uri}
	src, err := CredentialSource(func(k string) string { return env[k] }, "us-east-1", "AWS_REGION")
	if err != nil {
		t.Fatal(err)
	}
	tk := &Tokens{Source: src, Region: "us-east-1"}
	if _, err := tk.Token(context.Background(), "db:3306", "app"); err != nil {
		t.Fatalf("credentials valid for 4 more minutes refused: %v (failures %v)", err, tk.Stats().Failures)
	}
}

// Errors name the credentials endpoint's host, never its path or query,
// which may be the task's credential id or a token.
func TestCredentialErrorsHideTheEndpointAddress(t *testing.T) {
	env := map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:1/creds?token=Sup3rSecret"}
	src, err := CredentialSource(func(k string) string { return env[k] }, "us-east-1", "AWS_REGION")
	if err != nil {
		t.Fatal(err)
	}
	tk := &Tokens{Source: src, Region: "us-east-1"}
	_, err = (&Authority{Tokens: tk, Endpoint: "db:3306"}).Password(context.Background(), "app", nil, nil)
	var f *Failure
	if !errors.As(err, &f) || f.Reason != ReasonUnreachable || strings.Contains(err.Error(), "Sup3rSecret") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("login error %v; want endpoint_unreachable naming 127.0.0.1:1 without the token", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tk.Warm(ctx, nil, func(_ int, err error, _ time.Duration) {
		if strings.Contains(err.Error(), "Sup3rSecret") {
			t.Errorf("Warm reports %v", err)
		}
		cancel()
	})
	if _, why := tk.Ready(); strings.Contains(why, "Sup3rSecret") || !strings.Contains(why, "127.0.0.1:1") {
		t.Errorf("Ready's reason %q; want the host without the token", why)
	}
	// ECS's relative URI: the path is the task's credential id.
	s := Source{}
	s.endpoint, _ = url.Parse(ecsCredentialsHost + "/v2/credentials/4f0c-credential-id")
	if got := s.hide(fmt.Errorf(`Get "%s/v2/credentials/4f0c-credential-id": EOF`, ecsCredentialsHost)).Error(); strings.Contains(got, "4f0c") {
		t.Errorf("hide: %s", got)
	}
}

// A shutdown during the first credentials request is not the credentials'
// failure: Warm neither reports it ("not ready, retrying" after
// "draining") nor makes it /readyz's reason.
func TestWarmStopsQuietlyWhenCanceled(t *testing.T) {
	tk := &Tokens{Source: Source{Provider: slowProvider{delay: time.Hour}, Name: "ECS task role"}, Region: "us-east-1"}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var reports []error
	tk.Warm(ctx, nil, func(_ int, err error, _ time.Duration) { reports = append(reports, err) })
	if _, why := tk.Ready(); len(reports) != 0 || why != "waiting for AWS credentials from ECS task role" {
		t.Errorf("Warm reported %v; /readyz's reason %q", reports, why)
	}
}

// ctxDeafProvider never answers and ignores ctx.
type ctxDeafProvider struct{ never chan struct{} }

func (p ctxDeafProvider) Retrieve(context.Context) (aws.Credentials, error) {
	<-p.never
	return aws.Credentials{}, errors.New("never")
}

// A shutdown ends Warm even while a provider that ignores ctx holds its
// request: SIGTERM during start-up must not wait on the source.
func TestWarmEndsOnShutdownWhateverTheProvider(t *testing.T) {
	p := ctxDeafProvider{never: make(chan struct{})}
	defer close(p.never)
	tk := &Tokens{Source: Source{Provider: p, Name: "deaf"}, Region: "us-east-1"}
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	go func() {
		tk.Warm(ctx, nil, func(int, error, time.Duration) { t.Error("a shutdown was reported as a failure") })
		close(ended)
	}()
	cancel()
	select {
	case <-ended:
	case <-time.After(time.Minute):
		t.Fatal("Warm did not end after its ctx did")
	}
}

// A credentials source that fails at once (an ECS agent restarting, a
// throttle) must not be asked once per login while an app reconnects in a
// storm: after a failure, the next request waits CredentialRetryEvery.
func TestFailingCredentialsSourceIsNotAskedPerLogin(t *testing.T) {
	p := &countingProvider{err: errors.New("agent restarting")}
	tk := &Tokens{Source: Source{Provider: p, Name: "test"}, Region: "us-east-1"}
	a := &Authority{Tokens: tk, Endpoint: "db:3306"}
	const logins = 400
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range logins / 8 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
				var err error
				if i%2 == 0 {
					err = a.Credentials(ctx) // before the dial
				} else {
					_, err = tk.Token(ctx, "db:3306", "app")
				}
				cancel()
				if err == nil {
					t.Error("a login got credentials from a source that only fails")
				}
			}
		})
	}
	wg.Wait()
	if n := p.calls.Load(); n >= logins/4 {
		t.Fatalf("%d logins asked a failing credentials source %d times; want about once per %s", logins, n, CredentialRetryEvery)
	}
}

// ctxProvider answers at once unless the caller's context has ended.
type ctxProvider struct{}

func (ctxProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	if err := ctx.Err(); err != nil {
		return aws.Credentials{}, err
	}
	return aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "s"}, nil
}

// An app that leaves while its login waits for credentials is no failure
// of the source: the next login is not held back (CredentialRetryEvery).
func TestLoginThatLeftDoesNotHoldBackTheNext(t *testing.T) {
	a := &Authority{Tokens: &Tokens{Source: Source{Provider: ctxProvider{}, Name: "test"}, Region: "us-east-1"}, Endpoint: "db:3306"}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Credentials(gone); err == nil {
		t.Fatal("a login whose app left got credentials")
	}
	next, stop := context.WithTimeout(context.Background(), CredentialRetryEvery/10)
	defer stop()
	if err := a.Credentials(next); err != nil {
		t.Fatalf("the login after one whose app left: %v", err)
	}
}

// An endpoint that refuses with an empty body (a wrong
// AWS_CONTAINER_AUTHORIZATION_TOKEN, a proxy's 403) left the AWS SDK's
// error saying nothing: "failed to load credentials, : ", in the log
// line, /readyz and the app's error. The HTTP status now follows.
func TestCredentialErrorsNameTheEndpointsStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) }))
	defer srv.Close()
	env := map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": srv.URL + "/v2/credentials/task", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "wrong"}
	src, err := CredentialSource(func(k string) string { return env[k] }, "us-east-1", "AWS_REGION")
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&Tokens{Source: src, Region: "us-east-1"}).credentials(context.Background())
	if err == nil || !strings.Contains(err.Error(), "HTTP 401 Unauthorized") {
		t.Errorf("credentials error %v; want it to name the endpoint's HTTP 401 Unauthorized", err)
	}
}
