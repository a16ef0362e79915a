package iamauth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// slowAfterFirst fails at once, then answers nothing until release is
// closed: the request after a failure is still under way when every
// held-back login has woken, and after their time has ended.
type slowAfterFirst struct {
	calls   atomic.Int64
	release chan struct{}
}

func (p *slowAfterFirst) Retrieve(context.Context) (aws.Credentials, error) {
	if p.calls.Add(1) > 1 {
		<-p.release
	}
	return aws.Credentials{}, errors.New("agent restarting")
}

// Logins held back by a failed request wake together when
// CredentialRetryEvery has passed: one of them asks the source, and the
// others wait for its answer. Each asked on its own when the source failed
// at once (as an ECS agent restarting does), faster than the SDK's cache
// could share the request: a storm asked once per login a second. The
// second case has no cache to share a request under way.
func TestHeldBackLoginsShareTheNextRequest(t *testing.T) {
	t.Run("SDK cache, failing at once", func(t *testing.T) {
		p := &countingProvider{err: errors.New("agent restarting")}
		heldBackShareOneRequest(t, aws.NewCredentialsCache(p), p.calls.Load, func() {})
	})
	t.Run("no cache, the next request slow", func(t *testing.T) {
		p := &slowAfterFirst{release: make(chan struct{})}
		var ended atomic.Int64
		go func() {
			// The 15 logins waiting for the one that asked end with their
			// time; a third request means they did not wait for it.
			for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if ended.Load() == 15 || p.calls.Load() > 2 {
					break
				}
			}
			close(p.release)
		}()
		heldBackShareOneRequest(t, p, p.calls.Load, func() { ended.Add(1) })
	})
}

func heldBackShareOneRequest(t *testing.T, p aws.CredentialsProvider, calls func() int64, ended func()) {
	a := &Authority{Tokens: &Tokens{Source: Source{Provider: p, Name: "test"}, Region: "us-east-1"}, Endpoint: "db:3306"}
	if err := a.Credentials(context.Background()); err == nil {
		t.Fatal("a source that only fails gave credentials")
	}
	// Each waits for the request after the failure, and its time ends
	// before a third could be made (2 × CredentialRetryEvery after the
	// first failure began).
	ctx, cancel := context.WithTimeout(context.Background(), CredentialRetryEvery*3/2)
	defer cancel()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if err := a.Credentials(ctx); err == nil {
				t.Error("a login got credentials from a source that only fails")
			}
			ended()
		})
	}
	wg.Wait()
	if n := calls(); n != 2 {
		t.Fatalf("the source was asked %d times; want 2: the first failure, then one request the 16 held-back logins share", n)
	}
}

// failsLateOnce holds its first request until release is closed, then
// fails it; every later request succeeds at once: a request that failed
// slowly, its endpoint answering the newer ones meanwhile.
type failsLateOnce struct {
	calls   atomic.Int64
	release chan struct{}
}

func (p *failsLateOnce) Retrieve(context.Context) (aws.Credentials, error) {
	if p.calls.Add(1) == 1 {
		<-p.release
		return aws.Credentials{}, errors.New("agent restarting")
	}
	return aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "s"}, nil
}

// A failure that ends after a newer request succeeded does not hold the
// logins after it back: the newer answer is the source's state.
func TestOlderFailureDoesNotOverwriteNewerSuccess(t *testing.T) {
	p := &failsLateOnce{release: make(chan struct{})}
	tk := &Tokens{Source: Source{Provider: p, Name: "test"}, Region: "us-east-1"}
	a := &Authority{Tokens: tk, Endpoint: "db:3306"}
	older := make(chan error, 1)
	go func() { older <- a.Credentials(context.Background()) }()
	for p.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := a.Credentials(context.Background()); err != nil {
		t.Fatalf("the newer request: %v", err)
	}
	close(p.release)
	if err := <-older; err == nil {
		t.Fatal("the older request did not fail")
	}
	tk.mu.Lock()
	failure, retryAt := tk.failure, tk.retryAt
	tk.mu.Unlock()
	if failure != nil || !retryAt.IsZero() {
		t.Fatalf("after a newer success, the older failure was recorded (%v; retry at %s): logins wait for the next request", failure, retryAt)
	}
	// A login whose time ends before that retry would have got the old
	// failure without asking.
	ctx, cancel := context.WithTimeout(context.Background(), CredentialRetryEvery/2)
	defer cancel()
	if err := a.Credentials(ctx); err != nil {
		t.Fatalf("a login after the newer success: %v", err)
	}
}

// failsPanicsAnswers fails its first request, panics in its second and
// answers the rest.
type failsPanicsAnswers struct{ calls atomic.Int64 }

func (p *failsPanicsAnswers) Retrieve(context.Context) (aws.Credentials, error) {
	switch p.calls.Add(1) {
	case 1:
		return aws.Credentials{}, errors.New("agent restarting")
	case 2:
		panic("a broken credentials provider")
	}
	return aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "s"}, nil
}

// A request after a failure that panics (recovered by its caller) lets
// the logins after it ask again: one that left the request marked under
// way held every later login back until its own time ran out.
func TestPanickedRequestDoesNotHoldLoginsBack(t *testing.T) {
	p := &failsPanicsAnswers{}
	tk := &Tokens{Source: Source{Provider: p, Name: "test"}, Region: "us-east-1"}
	a := &Authority{Tokens: tk, Endpoint: "db:3306"}
	if err := a.Credentials(context.Background()); err == nil {
		t.Fatal("the first request did not fail")
	}
	func() {
		defer func() { _ = recover() }()
		_ = a.Credentials(context.Background()) // after CredentialRetryEvery: the one that asks
		t.Fatal("the second request did not panic")
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*CredentialRetryEvery)
	defer cancel()
	if err := a.Credentials(ctx); err != nil || p.calls.Load() != 3 {
		t.Fatalf("after the panic: %v, the source asked %d times; want credentials from a third request", err, p.calls.Load())
	}
}
