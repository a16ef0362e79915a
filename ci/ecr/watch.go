package ecr

import (
	"context"
	"errors"
	"fmt"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
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

// wait is one watched wait on AWS: what it waits for, where its progress
// lines go and how often, and its bound.
type wait struct {
	report       func(line string)
	what         string
	bound, every time.Duration
}

// watched runs fn under w.bound, passing w.report every w.every what it
// still waits for (w.what), and turns a timeout into an error saying so.
func watched(ctx context.Context, w wait, fn func(context.Context) error) error {
	report, what, bound, every := w.report, w.what, w.bound, w.every
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	start := time.Now()
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				report(fmt.Sprintf("still waiting for %s: %s so far; giving up after %s", what, time.Since(start).Round(time.Second), bound))
			}
		}
	}()
	err := fn(ctx)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer from %s within %s: check the network path to AWS (a proxy, or a firewall dropping packets): %w", what, bound, err)
	}
	return err
}

// watchCalls applies watched to every ECR API call of a client.
func watchCalls(report func(string), endpoint string, bound, every time.Duration) func(*middleware.Stack) error {
	return func(s *middleware.Stack) error {
		return s.Initialize.Add(middleware.InitializeMiddlewareFunc("SidecarWatchCall",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				var out middleware.InitializeOutput
				var md middleware.Metadata
				what := "ECR (ecr:" + awsmiddleware.GetOperationName(ctx) + ") at " + endpoint
				err := watched(ctx, wait{report: report, what: what, bound: bound, every: every}, func(ctx context.Context) error {
					var err error
					out, md, err = next.HandleInitialize(ctx, in)
					return err
				})
				return out, md, err
			}), middleware.Before)
	}
}
