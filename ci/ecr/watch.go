package ecr

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"

	"github.com/example/sidecar/ci/progress"
)

// CallTimeout bounds each ECR API call, its retries included: a network
// that drops packets ends in an error naming the call, not a long silence
// (the SDK alone retries for about a minute). docs/pipeline.md states it.
const CallTimeout = 30 * time.Second

// DefaultCredentialsTimeout bounds the credential chain, which may probe
// the EC2 metadata service.
const DefaultCredentialsTimeout = 15 * time.Second

// ProgressEvery is how often a wait on AWS says what it is waiting for.
const ProgressEvery = 5 * time.Second

// Wait is one watched wait on AWS: what it waits for, where its progress
// lines go and how often, and its bound.
type Wait struct {
	Report       func(line string)
	What         string
	Bound, Every time.Duration
}

// watched runs fn under w.Bound, passing w.Report every w.Every what it
// still waits for (w.What), and turns a timeout into an error saying so;
// one that ctx ended first (the run's deadline, Ctrl-C) says that instead.
func watched(ctx context.Context, w Wait, fn func(context.Context) error) error {
	report, what, bound := w.Report, w.What, w.Bound
	timedOut, err := progress.Bounded(ctx, bound, w.Every, func(waited time.Duration) {
		report(fmt.Sprintf("still waiting for %s: %s so far; giving up after %s", what, waited.Round(time.Second), bound))
	}, fn)
	switch {
	case timedOut:
		return fmt.Errorf("no answer from %s within %s: check the network path to AWS (a proxy, or a firewall dropping packets): %w", what, bound, err)
	case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("stopped waiting for %s: the run's deadline passed first, not the %s this wait allows: %w", what, bound, err)
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("stopped waiting for %s: the run was stopped (Ctrl-C): %w", what, err)
	}
	return err
}

// RegistryBound bounds each wait on the registry's own HTTP API (read the
// candidate's layers, list or attach its referrers), which goes through
// go-containerregistry rather than the ECR API. The candidate read is the
// longest: its layers, tens of MB. docs/pipeline.md states it.
const RegistryBound = 5 * time.Minute

// Watch runs fn, a wait on the registry, as each ECR API call is watched:
// a line to w.Report every w.Every (ProgressEvery when zero) saying what
// it waits for, and an error naming it after w.Bound (RegistryBound when
// zero).
func Watch(ctx context.Context, w Wait, fn func(context.Context) error) error {
	w.Bound, w.Every = cmp.Or(w.Bound, RegistryBound), cmp.Or(w.Every, ProgressEvery)
	return watched(ctx, w, fn)
}

// watchCalls applies watched to every ECR API call of a client.
func watchCalls(report func(string), endpoint string, bound, every time.Duration) func(*middleware.Stack) error {
	return func(s *middleware.Stack) error {
		return s.Initialize.Add(middleware.InitializeMiddlewareFunc("SidecarWatchCall",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				var out middleware.InitializeOutput
				var md middleware.Metadata
				what := "ECR (ecr:" + awsmiddleware.GetOperationName(ctx) + ") at " + endpoint
				err := watched(ctx, Wait{Report: report, What: what, Bound: bound, Every: every}, func(ctx context.Context) error {
					var err error
					out, md, err = next.HandleInitialize(ctx, in)
					return err
				})
				return out, md, err
			}), middleware.Before)
	}
}
