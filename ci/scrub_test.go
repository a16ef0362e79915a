package ci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/example/sidecar/ci/daggertest"
	"github.com/example/sidecar/ci/secrets"
	"github.com/example/sidecar/internal/redact"
)

// secretOf is the value of the secret that the call field of q's chain
// passes as arg, as the engine reads it ("" when there is none).
func secretOf(fe *fakeEngine, q daggertest.Query, field, arg string) string {
	c, ok := q.Find(field)
	if !ok {
		return ""
	}
	sq, ok := fe.srv.Resolve(c.Arg(arg))
	if !ok {
		return ""
	}
	sec, ok := sq.Find("secret")
	if !ok {
		return ""
	}
	v, _ := fe.srv.Secret(sec.Arg("uri"))
	return v
}

// Whatever path a smoke step's failure takes, the MySQL password that
// the engine's answer (a container's output, its error) quotes is masked
// in the run's error and log.
func TestSmokeFailuresMaskThePassword(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// answer is the engine's answer to a smoke step's exec (script),
		// quoting pw where the step fails.
		answer func(script, pw string) (any, error)
		want   string
	}{
		{"client exits non-zero", func(script, pw string) (any, error) {
			if strings.Contains(script, "SMOKE_SQL") {
				return nil, daggertest.ExecFailure([]string{"sh"}, 1, "", "mysql: password="+pw+" refused\n")
			}
			return nil, nil
		}, "SQL round trip through the sidecar: exit code 1"},
		{"wrong row back", func(script, pw string) (any, error) {
			if strings.Contains(script, "SMOKE_SQL") {
				return "password=" + pw + "\n", nil
			}
			return nil, nil
		}, "smoke check: want line"},
		// The check quotes 500 characters: the password straddles the cut.
		{"wrong row back, cut short", func(script, pw string) (any, error) {
			if strings.Contains(script, "SMOKE_SQL") {
				return strings.Repeat(".", 480) + pw + "\n", nil
			}
			return nil, nil
		}, "smoke check: want line"},
		{"running sidecar prints other lines", func(script, pw string) (any, error) {
			if strings.Contains(script, "uid=") {
				return "uid=0 " + pw + "\n", nil
			}
			return nil, nil
		}, "running sidecar: want line"},
		{"sleep mode fails", func(script, pw string) (any, error) {
			if strings.Contains(script, "stayed-up") {
				return nil, daggertest.ExecFailure([]string{"sh"}, 1, pw+"\n", "")
			}
			return nil, nil
		}, "sleep mode: exit code 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fe := newEngine(t, map[string]string{"UNIT_TESTS": "false", "LOCAL_IMAGE": "none"}, nil)
			var mu sync.Mutex
			var pw string // the round trip's query carries it; the checks after it do not
			fe.srv.Handle("stdout", func(q daggertest.Query) (any, error) {
				mu.Lock()
				defer mu.Unlock()
				if cnf := secretOf(fe, q, "withMountedSecret", "source"); cnf != "" {
					_, pw, _ = strings.Cut(cnf, "password=")
					pw = strings.TrimSpace(pw)
				}
				if pw == "" {
					t.Error("the round trip's query carries no MySQL password")
				}
				if out, err := tc.answer(execScript(q), pw); out != nil || err != nil {
					return out, err
				}
				return healthyStdout(q), nil
			})
			err := fe.runner.Test(testCtx(t))
			if err == nil {
				t.Fatal("Test passed with a failing smoke step")
			}
			mu.Lock()
			defer mu.Unlock()
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), redact.Mask) {
				t.Errorf("error lacks %q or the mask %s:\n%v", tc.want, redact.Mask, err)
			}
			// Its start shown is a leak too.
			if len(pw) < 32 || strings.Contains(err.Error()+fe.log.String(), pw[:16]) {
				t.Errorf("the MySQL password (%d characters), or its start, is shown:\n%v", len(pw), err)
			}
		})
	}
}

// The ECR password the engine's answer to the candidate's publish quotes
// is masked in the run's error.
func TestPushPublishFailureMasksTheECRPassword(t *testing.T) {
	t.Parallel()
	ecrSrv := pushEnv(t, nil)
	fe := newLightPushEngine(t, ecrSrv, nil)
	fe.srv.Handle("publish", func(q daggertest.Query) (any, error) {
		pw := secretOf(fe, q, "withRegistryAuth", "secret")
		return nil, daggertest.Failure("push " + q.Leaf().Arg("address") + ": 401 Unauthorized: basic auth AWS:" + pw + " refused")
	})
	err := fe.runner.Push(testCtx(t))
	if err == nil {
		t.Fatalf("Push passed with a failing publish; log:\n%s", fe.log)
	}
	if !strings.Contains(err.Error(), "401 Unauthorized: basic auth AWS:"+redact.Mask+" refused") {
		t.Errorf("error lacks the engine's answer, its password masked:\n%v", err)
	}
	if strings.Contains(err.Error()+fe.log.String(), ecrSrv.Password) {
		t.Errorf("the ECR password is shown:\n%v", err)
	}
}

// Every step's error passes the run's scrub, whatever its path: here the
// round trip's timeout, whose error the engine's answer may carry; it is
// still the error it wraps.
func TestEveryStepErrorIsScrubbed(t *testing.T) {
	t.Parallel()
	pw := secrets.RandomHex(24)
	r := &Runner{Log: io.Discard, tempRoot: t.TempDir()}
	err := r.runStepList(testCtx(t), "test", []Step{{Name: "smoke", do: func(_ context.Context, s *run) error {
		s.scrub.Add(pw)
		return fmt.Errorf("smoke test failed: %w", &roundTripTimeout{bound: time.Second, err: errors.New("engine: password=" + pw)})
	}}})
	var late *roundTripTimeout
	if err == nil || !errors.As(err, &late) {
		t.Fatalf("err = %v, want the round trip's timeout", err)
	}
	if strings.Contains(err.Error(), pw) || !strings.HasSuffix(err.Error(), "engine: password="+redact.Mask) {
		t.Errorf("the password is not masked: %v", err)
	}
}
