package iamauth

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// gatedProvider fails every Retrieve once release is closed.
type gatedProvider struct{ release chan struct{} }

func (p *gatedProvider) Retrieve(context.Context) (aws.Credentials, error) {
	<-p.release
	return aws.Credentials{}, errors.New("no EC2 IMDS role found")
}

func failuresCounted(tk *Tokens) (n int64) {
	for _, v := range tk.Stats().Failures {
		n += v
	}
	return n
}

// sidecar_iam_failures_total counts logins: ten that share one failed
// signing are ten failures.
func TestSharedSigningFailureCountsEachLogin(t *testing.T) {
	p := &gatedProvider{release: make(chan struct{})}
	tk := &Tokens{Source: Source{Provider: p, Name: "test"}, Region: "us-east-1"}
	a := &Authority{Tokens: tk, Endpoint: "db:3306"}
	const logins = 10
	var wg sync.WaitGroup
	errs := make([]error, logins)
	for i := range logins {
		wg.Go(func() { _, errs[i] = a.Password(context.Background(), "app", nil, nil) })
	}
	time.Sleep(100 * time.Millisecond) // all waiting on the one signing
	close(p.release)
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			t.Fatalf("login %d succeeded", i)
		}
	}
	if n, st := failuresCounted(tk), tk.Stats(); n != logins || st.Failures[ReasonNoCredentials] != logins {
		t.Fatalf("%d logins failed; %d failures counted: %v", logins, n, st.Failures)
	}
}

// A login whose time runs out is counted once, as endpoint_unreachable;
// the signing it began failing later is not counted again.
func TestTimedOutLoginCountedOnce(t *testing.T) {
	p := &gatedProvider{release: make(chan struct{})}
	tk := &Tokens{Source: Source{Provider: p, Name: "test"}, Region: "us-east-1"}
	a := &Authority{Tokens: tk, Endpoint: "db:3306"}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := a.Password(ctx, "app", nil, nil); err == nil {
		t.Fatal("login succeeded")
	}
	tk.mu.Lock()
	e := tk.cache[tokenKey{"db:3306", "app"}]
	tk.mu.Unlock()
	close(p.release)
	<-e.done // the signing has failed
	if n, st := failuresCounted(tk), tk.Stats(); n != 1 || st.Failures[ReasonUnreachable] != 1 {
		t.Fatalf("one failed login counted %d times: %v", n, st.Failures)
	}
}
