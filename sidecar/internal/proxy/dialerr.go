package proxy

import (
	"context"
	"errors"
	"net"
	"syscall"
)

// dialFailReason sorts a dial error into the reasons metrics count.
func dialFailReason(err error) string {
	var ne net.Error
	switch {
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
