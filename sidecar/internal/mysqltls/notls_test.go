package mysqltls_test

import (
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// A server without TLS is refused with what to do, and the way out it
// offers must be one the sidecar accepts: TARGET_AUTH=iam refuses to start
// with TARGET_TLS=disabled, so it is not offered there.
func TestServerWithoutTLSSaysWhatToDo(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	for _, tc := range []struct {
		name    string
		iam     bool
		want    []string
		mustNot string
	}{
		{name: "passthrough", want: []string{"enable TLS on the server", "or set TARGET_TLS=disabled"}},
		{name: "iam", iam: true, want: []string{"enable TLS on the server", "TARGET_AUTH=iam"}, mustNot: "set TARGET_TLS=disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName), noTLS: true})
			target := iamTarget(t, ca)
			if !tc.iam {
				target.IAM = nil
			}
			addr, _, _ := sidecar(t, srv, target)
			a := dialApp(t, addr)
			p := a.read()
			_, msg, isErr := mysqlwire.ErrMessage(p.Payload)
			if !isErr || !strings.Contains(msg, "does not offer TLS") {
				t.Fatalf("app got seq %d %q, want the refusal of a server without TLS", p.Seq, p.Payload)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not say %q", msg, w)
				}
			}
			if tc.mustNot != "" && strings.Contains(msg, tc.mustNot) {
				t.Errorf("message %q offers %q, which the sidecar refuses with TARGET_AUTH=iam", msg, tc.mustNot)
			}
		})
	}
}
