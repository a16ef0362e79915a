package proxy

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"

	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/relay"
)

// closeReason is why a connection ended, as logs and metrics name it: the
// relay's reasons, refined by the forwarder's own. Values are stable.
type closeReason string

const (
	closeDone                      = closeReason(relay.ReasonDone)
	closeClientError               = closeReason(relay.ReasonClientError)
	closeUpstreamError             = closeReason(relay.ReasonUpstreamError)
	closeIdle                      = closeReason(relay.ReasonIdle)
	closeCanceled                  = closeReason(relay.ReasonCanceled)
	closeDialFailed    closeReason = "dial_failed"
	closeStale         closeReason = "stale_upstream"
	closeDrainDeadline closeReason = "drain_deadline"
	closeClientGone                = closeReason(relay.ReasonClientGone) // the client left without sending a byte: before or after its upstream was connected
	closeTLSRefused    closeReason = "tls_refused"                       // the MySQL login over TLS was refused (sidecar_tls_refusals_total says why)
)

// closeReasons are every close reason: metrics start each at zero.
var closeReasons = []closeReason{closeDone, closeClientError, closeUpstreamError, closeIdle, closeCanceled,
	closeDialFailed, closeStale, closeDrainDeadline, closeClientGone, closeTLSRefused}

// Causes given to a relay's context when the forwarder ends it.
var (
	errDrainDeadline = errors.New("drain deadline passed")
	errStale         = errors.New("upstream address left the DNS answer")
)

// closeReasonOf names why a relay ended: a cancellation is refined into
// the forwarder's own reason when it caused it. A client that left is the
// relay's to tell (relay.ReasonClientGone): it alone saw whether the
// database had ended first.
func closeReasonOf(res relay.Result, ctx context.Context) closeReason {
	if res.Reason == relay.ReasonCanceled {
		switch context.Cause(ctx) {
		case errStale:
			return closeStale
		case errDrainDeadline:
			return closeDrainDeadline
		}
	}
	return closeReason(res.Reason)
}

// dialFailure is why one dial of a target failed, as metrics name it.
type dialFailure string

const (
	failDNS         dialFailure = "dns"
	failRefused     dialFailure = "refused"
	failTimeout     dialFailure = "timeout"
	failUnreachable dialFailure = "unreachable"
	failCanceled    dialFailure = "canceled"
	failUnanswered  dialFailure = "unanswered" // no answer for unansweredAfter, when the client left
	failFDLimit     dialFailure = "fd_limit"   // the sidecar is out of file descriptors: nothing to do with the target
	failOther       dialFailure = "other"

	// With TLS: connected, but the server sent no MySQL greeting (mysqltls.Target.Greet).
	failNoGreeting = dialFailure(mysqltls.ReasonNoGreeting)
)

// dialFailures are every dial failure reason: metrics start each at zero.
var dialFailures = []dialFailure{failDNS, failRefused, failTimeout, failUnreachable, failCanceled, failUnanswered, failFDLimit, failNoGreeting, failOther}

// dialFailReason sorts a dial error into the reasons metrics count.
func dialFailReason(err error) dialFailure {
	var ne net.Error
	switch {
	case outOfFiles(err):
		return failFDLimit
	case errors.Is(err, syscall.ECONNREFUSED):
		return failRefused
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return failTimeout
	case errors.Is(err, context.Canceled):
		return failCanceled
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return failUnreachable
	default:
		return failOther
	}
}

// outOfFiles reports whether err is this process (or the host) out of file
// descriptors. Go's resolver keeps only the text of its socket's error.
func outOfFiles(err error) bool {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return true
	}
	var de *net.DNSError
	return errors.As(err, &de) && (strings.Contains(de.Err, syscall.EMFILE.Error()) || strings.Contains(de.Err, syscall.ENFILE.Error()))
}
