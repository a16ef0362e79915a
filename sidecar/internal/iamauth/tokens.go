// Package iamauth logs apps in to Aurora with IAM database authentication:
// it checks the app against IAM_USERS and LOCAL_PASSWORD, and signs RDS
// auth tokens with the task's AWS credentials, caching them per user.
// The MySQL side of the login is mysqltls's; this package never sees a
// socket.
package iamauth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"
)

// TokenLife is how long Aurora accepts a token (X-Amz-Expires=900, set by
// the SDK's BuildAuthToken).
const TokenLife = 15 * time.Minute

// RefreshBefore is how long before its expiry a token is replaced, so a
// login does not race a token's end. One its credentials end is kept to
// that end while the source returns them (sign): no token they sign
// would last longer.
const RefreshBefore = 5 * time.Minute

// Failure reasons, stable: the reason label of sidecar_iam_failures_total.
const (
	ReasonUserNotAllowed = "user_not_allowed"     // not in IAM_USERS
	ReasonLocalPassword  = "local_password"       // wrong or missing LOCAL_PASSWORD
	ReasonNoCredentials  = "no_credentials"       // the chain found or returned none
	ReasonExpired        = "credentials_expired"  // the source returned expired credentials
	ReasonUnreachable    = "endpoint_unreachable" // the credentials endpoint did not answer
	ReasonSigning        = "signing_failed"
	ReasonUserNotIAM     = "user_not_iam"   // the server asked for another auth plugin
	ReasonServerRefused  = "server_refused" // the server refused the token
)

// Reasons lists every failure reason, for metrics.
var Reasons = []string{ReasonUserNotAllowed, ReasonLocalPassword, ReasonNoCredentials, ReasonExpired,
	ReasonUnreachable, ReasonSigning, ReasonUserNotIAM, ReasonServerRefused}

// CredentialRetryEvery spaces the requests logins make to a credentials
// source that failed: an app reconnecting in a storm, each login refused,
// would otherwise ask it once per login.
const CredentialRetryEvery = time.Second

// DefaultSignTimeout bounds one signing, the wait for credentials
// included. It is below mysqltls.LoginTimeout, so an app whose login waits
// on credentials that never come gets an ERR saying so.
const DefaultSignTimeout = 20 * time.Second

// Tokens signs and caches tokens. One Tokens serves every forward.
type Tokens struct {
	Source Source
	Region string
	// Now is the clock that decides reuse; nil = time.Now. Its wall
	// clock is read, not its monotonic one (now).
	Now func() time.Time
	// SignTimeout bounds one signing; 0 = DefaultSignTimeout.
	SignTimeout time.Duration

	mu      sync.Mutex
	cache   map[tokenKey]*entry
	ready   bool
	waitErr error
	retryAt time.Time     // after a failed retrieval: the next one waits until then
	failure error         // that retrieval's, for logins that cannot wait
	asking  chan struct{} // closed when the retrieval after a failure ends; nil when none is under way
	asked   uint64        // requests for credentials begun, which numbers them
	settled uint64        // the newest request whose outcome retryAt and failure hold
	held    bool          // a retrieval got credentials (atHand)
	heldEnd time.Time     // when they expire; zero: never

	signed, reused atomic.Int64
	failures       sync.Map // reason → *atomic.Int64
}

type tokenKey struct{ endpoint, user string }

// entry is one user's token; done is closed when the signing that fills
// it has finished, so concurrent logins share one signing.
type entry struct {
	done    chan struct{}
	token   string
	refresh time.Time // reuse until then
	err     error
	// signedBy is the credentials the token was signed with when they
	// end it (they expire before TokenLife); "" otherwise.
	signedBy string
	end      time.Time // when the token expires
}

// Stats are the counters for metrics.
type Stats struct {
	Signed, Reused int64
	Failures       map[string]int64
}

// now is the wall clock, without the monotonic reading: Aurora judges a
// token by X-Amz-Date and X-Amz-Expires, wall-clock times, and Go's
// comparisons of two times with monotonic readings ignore the wall clock,
// which moves apart from it when a VM is suspended (Linux's monotonic
// clock stops) or NTP steps the clock.
func (t *Tokens) now() time.Time {
	if t.Now != nil {
		return t.Now().Round(0)
	}
	return time.Now().Round(0)
}

// Token returns a token for user at endpoint (host:port, the name the
// server knows itself by, in any case), signing one only when none is fresh. The
// signing runs apart from the login that began it, so a login that ends
// (its app gave up) does not fail the others waiting for the same token.
func (t *Tokens) Token(ctx context.Context, endpoint, user string) (string, error) {
	// Signed lower-cased, as RDS names its endpoints: DNS names are
	// case-insensitive, but the signature covers the host as written.
	k := tokenKey{strings.ToLower(endpoint), user}
	t.mu.Lock()
	if t.cache == nil {
		t.cache = map[tokenKey]*entry{}
	}
	e := t.cache[k]
	var stale *entry
	if e != nil {
		select {
		case <-e.done:
			if e.err == nil && t.now().Before(e.refresh) {
				t.mu.Unlock()
				t.reused.Add(1)
				return e.token, nil
			}
			if e.err == nil {
				stale = e
			}
			e = nil // failed or stale: sign again
		default: // a signing is under way: share it
		}
	}
	shared := e != nil
	if !shared {
		t.sweep()
		e = &entry{done: make(chan struct{})}
		t.cache[k] = e
		go t.fill(context.WithoutCancel(ctx), k, e, stale)
	}
	t.mu.Unlock()
	select {
	case <-e.done:
	case <-ctx.Done():
		return "", t.gaveUp(ctx)
	}
	if e.err != nil {
		return "", e.err
	}
	if shared {
		t.reused.Add(1)
	}
	return e.token, nil
}

// sweep drops the tokens due for a refresh, so users the app named once
// (any name, without IAM_USERS) are not kept for the process's life. A
// signing is rare, and so is this. t.mu is held.
func (t *Tokens) sweep() {
	now := t.now()
	for k, e := range t.cache {
		select {
		case <-e.done:
			if !now.Before(e.refresh) {
				delete(t.cache, k)
			}
		default: // under way
		}
	}
}

// fill signs the token of entry e, for as long as SignTimeout. stale is
// the token e replaces, if any.
func (t *Tokens) fill(ctx context.Context, k tokenKey, e *entry, stale *entry) {
	ctx, cancel := context.WithTimeout(ctx, t.signTimeout())
	defer cancel()
	var again bool
	again, e.err = t.sign(ctx, k.endpoint, k.user, e, stale)
	switch {
	case e.err == nil && again:
		t.signed.Add(1)
	case e.err == nil:
		t.reused.Add(1) // the login that began it; those sharing it count themselves
	}
	close(e.done)
	if e.err != nil {
		t.mu.Lock()
		if t.cache[k] == e {
			delete(t.cache, k)
		}
		t.mu.Unlock()
	}
}

func (t *Tokens) signTimeout() time.Duration { return cmp.Or(t.SignTimeout, DefaultSignTimeout) }

// gaveUp is the error of a login whose ctx ended while its token was
// being signed. It wraps ctx's error: Authority counts the login when its
// time ran out, not when its app left.
func (t *Tokens) gaveUp(ctx context.Context) error {
	return &Failure{Reason: ReasonUnreachable, Err: fmt.Errorf(
		"get AWS credentials from %s: no answer before the login's time ran out: %w", t.Source.Name, ctx.Err())}
}

// sign fills e with a token, and reports whether it signed one: a stale
// token whose credentials end it is kept while the source returns the
// same credentials, as one signed again would end at the same moment;
// it is then reused until they expire, when the source gets new ones.
func (t *Tokens) sign(ctx context.Context, endpoint, user string, e, stale *entry) (bool, error) {
	signedAt := t.now()
	creds, err := t.retrieve(ctx)
	if err != nil {
		return false, err
	}
	if stale != nil && stale.signedBy != "" && signedAt.Before(stale.end) &&
		creds.CanExpire && stale.signedBy == creds.AccessKeyID && stale.end.Equal(creds.Expires) {
		e.token, e.signedBy, e.end, e.refresh = stale.token, stale.signedBy, stale.end, stale.end
		return false, nil
	}
	static := credentials.StaticCredentialsProvider{Value: creds}
	token, err := auth.BuildAuthToken(ctx, endpoint, t.Region, user, static)
	if err != nil {
		return false, &Failure{Reason: ReasonSigning, Err: fmt.Errorf("sign an IAM token for %s at %s: %w", user, endpoint, err)}
	}
	e.token, e.end = token, signedAt.Add(TokenLife)
	if creds.CanExpire && creds.Expires.Before(e.end) {
		e.end, e.signedBy = creds.Expires, creds.AccessKeyID // Aurora refuses a token once its credentials expire
	}
	e.refresh = e.end.Add(-RefreshBefore)
	return true, nil
}

// retrieve gets credentials for a signing, within ctx's time (the
// caller bounds it by SignTimeout); a failure is a *Failure.
func (t *Tokens) retrieve(ctx context.Context) (aws.Credentials, error) {
	claimed, err := t.awaitRetry(ctx)
	if err != nil {
		return aws.Credentials{}, err
	}
	if claimed {
		// After the outcome, which those waiting read; deferred, so that
		// a source that panics does not leave them waiting for good.
		defer func() {
			t.mu.Lock()
			close(t.asking)
			t.asking = nil
			t.mu.Unlock()
		}()
	}
	n, began := t.begin(), time.Now()
	creds, err := t.credentials(ctx)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("no answer within %s: %w", t.signTimeout(), err)
	}
	var f *Failure
	switch {
	case err == nil:
		t.markReady(n)
		t.hold(creds)
	default:
		f = &Failure{Reason: t.credentialReason(err), Err: fmt.Errorf("get AWS credentials from %s: %w", t.Source.Name, err)}
		if ctx.Err() == nil { // the source failed, not the caller's time or app
			t.mu.Lock()
			t.settle(n, began.Add(CredentialRetryEvery), f)
			t.mu.Unlock()
		}
	}
	if f != nil {
		return creds, f
	}
	return creds, nil
}

// awaitRetry holds a retrieval back until CredentialRetryEvery after the
// last failed one began. Then one retrieval goes (claimed: it must end
// t.asking), and the others wait for its outcome rather than each asking
// the source: they woke together, too close for the SDK's cache to share
// a request that fails at once. A ctx that ends sooner gets the last
// failure.
func (t *Tokens) awaitRetry(ctx context.Context) (claimed bool, err error) {
	for {
		t.mu.Lock()
		at, failure, asking := t.retryAt, t.failure, t.asking
		wait := time.Until(at)
		switch {
		case failure == nil: // no failure since the last answer
			t.mu.Unlock()
			return false, nil
		case ctx.Err() != nil: // woken as it ended: nobody to ask for
			t.mu.Unlock()
			return false, failure
		case asking == nil && wait <= 0:
			t.asking = make(chan struct{})
			t.mu.Unlock()
			return true, nil
		}
		t.mu.Unlock()
		if d, ok := ctx.Deadline(); ok && asking == nil && d.Before(at) {
			return false, failure
		}
		if asking == nil {
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
				continue
			case <-ctx.Done():
				timer.Stop()
				return false, failure
			}
		}
		select {
		case <-asking:
		case <-ctx.Done():
			return false, failure
		}
	}
}

var errExpired = errors.New("the credentials returned have already expired")

// credentials gets credentials from the source; expired ones are an
// error, with both times: a source rarely hands out expired credentials,
// so the usual cause is this host's clock running ahead. The error's text
// hides what the source's address must not show.
func (t *Tokens) credentials(ctx context.Context) (aws.Credentials, error) {
	c, err := t.Source.Provider.Retrieve(ctx)
	if now := t.now(); err == nil && c.CanExpire && !c.Expires.After(now) {
		err = fmt.Errorf("%w: they expired at %s, and this host's clock says %s; if they are fresh, this host's clock is ahead (check NTP)",
			errExpired, c.Expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return c, t.Source.hide(withStatus(err))
}

// withStatus adds the HTTP status an endpoint refused with, when err's
// text lacks it: the SDK's error for an answer with an empty body (a
// wrong AWS_CONTAINER_AUTHORIZATION_TOKEN) says nothing else.
func withStatus(err error) error {
	var sc interface{ HTTPStatusCode() int }
	if !errors.As(err, &sc) || sc.HTTPStatusCode() == 0 || strings.Contains(err.Error(), strconv.Itoa(sc.HTTPStatusCode())) {
		return err
	}
	code := sc.HTTPStatusCode()
	// First: the SDK's own words are long, and healthcheck shows only the
	// reason's start (admin's reasonLimit).
	return fmt.Errorf("the endpoint answered HTTP %d %s: %w", code, http.StatusText(code), err)
}

// Failure is a login failure with a stable reason.
type Failure struct {
	Reason string
	Err    error
}

func (f *Failure) Error() string { return f.Err.Error() }
func (f *Failure) Unwrap() error { return f.Err }

// count counts one failed login. Logins are counted, not signings: a
// signing that fails every login waiting for it counts each of them.
func (t *Tokens) count(reason string) {
	c, _ := t.failures.LoadOrStore(reason, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
}

func (t *Tokens) credentialReason(err error) string {
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.Is(err, errExpired):
		return ReasonExpired
	case errors.As(err, &opErr), errors.As(err, &netErr), errors.Is(err, context.DeadlineExceeded),
		strings.Contains(err.Error(), "connection refused"), strings.Contains(err.Error(), "no such host"):
		return ReasonUnreachable
	default:
		return ReasonNoCredentials
	}
}

// begin numbers a request for credentials, for settle.
func (t *Tokens) begin() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.asked++
	return t.asked
}

// settle records request n's outcome (failure nil: a success) unless a
// newer request's is recorded: a slow failure that ends after a newer
// success would hold logins back from a source that answers. t.mu is held.
func (t *Tokens) settle(n uint64, retryAt time.Time, failure error) {
	if n < t.settled {
		return
	}
	t.settled, t.retryAt, t.failure = n, retryAt, failure
}

// markReady records request n's success.
func (t *Tokens) markReady(n uint64) {
	t.mu.Lock()
	t.ready, t.waitErr = true, nil
	t.settle(n, time.Time{}, nil)
	t.mu.Unlock()
}

// hold notes the credentials a retrieval got, for atHand.
func (t *Tokens) hold(creds aws.Credentials) {
	t.mu.Lock()
	t.held, t.heldEnd = true, time.Time{}
	if creds.CanExpire {
		t.heldEnd = creds.Expires
	}
	t.mu.Unlock()
}

// atHand reports whether the credentials last got are still valid, no
// failure since: the source's cache (no ExpiryWindow, CredentialSource)
// then hands them out without asking, and a signing waits for nothing.
func (t *Tokens) atHand() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.held && t.failure == nil && (t.heldEnd.IsZero() || t.now().Before(t.heldEnd))
}

// Ready reports whether credentials have been obtained once and, if not,
// why, for /readyz.
func (t *Tokens) Ready() (bool, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ready {
		return true, ""
	}
	why := "waiting for AWS credentials from " + t.Source.Name
	if t.waitErr != nil {
		why += ": " + t.waitErr.Error()
	}
	return false, why
}

// WaitReport is how long Warm lets a request for credentials go
// unanswered before it reports the wait, and then how often: one attempt
// at an endpoint that never answers lasts 3 × RequestTimeout (the SDK's
// retries), a silence an operator cannot tell from a hang.
const WaitReport = 5 * time.Second

// Warm gets credentials until it succeeds once or ctx ends, so the first
// login does not wait for them and /readyz can tell. It retries with a
// backoff from 1 s to 30 s. It calls waiting every WaitReport while an
// attempt has no answer, and report after each failure with the wait
// before the next attempt.
func (t *Tokens) Warm(ctx context.Context, waiting func(attempt int, waited time.Duration), report func(attempt int, err error, retryIn time.Duration)) {
	wait := time.Second
	for attempt := 1; ; attempt++ {
		n := t.begin()
		err := t.attempt(ctx, func(waited time.Duration) {
			if waiting != nil {
				waiting(attempt, waited)
			}
		})
		if err == nil {
			t.markReady(n)
			return
		}
		if ctx.Err() != nil {
			return // shutting down: not the credentials' failure
		}
		t.mu.Lock()
		t.waitErr = err
		t.mu.Unlock()
		if report != nil {
			report(attempt, err, wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// attempt asks for credentials once, calling waiting every WaitReport
// until the answer, unless ctx has ended (a shutdown is no wait to show).
func (t *Tokens) attempt(ctx context.Context, waiting func(waited time.Duration)) error {
	answer := make(chan error, 1)
	go func() {
		_, err := t.credentials(ctx)
		answer <- err
	}()
	start := time.Now()
	tick := time.NewTicker(WaitReport)
	defer tick.Stop()
	for {
		select {
		case err := <-answer:
			return err
		case <-ctx.Done(): // a provider that ignores ctx must not hold up a shutdown
			return ctx.Err()
		case <-tick.C:
			if ctx.Err() == nil {
				waiting(time.Since(start).Round(time.Second))
			}
		}
	}
}

// Stats returns the counters.
func (t *Tokens) Stats() Stats {
	s := Stats{Signed: t.signed.Load(), Reused: t.reused.Load(), Failures: map[string]int64{}}
	for _, r := range Reasons {
		if c, ok := t.failures.Load(r); ok {
			s.Failures[r] = c.(*atomic.Int64).Load()
		} else {
			s.Failures[r] = 0
		}
	}
	return s
}
