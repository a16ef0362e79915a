package testkit

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// HoldLines wraps h so that every record whose message starts with msg
// waits until open is called: a connection that logs its end stays in
// the moment between telling the app and closing, for as long as a test
// needs. open may be called more than once.
func HoldLines(h slog.Handler, msg string) (held slog.Handler, open func()) {
	g := heldLines{Handler: h, msg: msg, gate: make(chan struct{}), once: &sync.Once{}}
	return g, func() { g.once.Do(func() { close(g.gate) }) }
}

type heldLines struct {
	slog.Handler
	msg  string
	gate chan struct{}
	once *sync.Once
}

func (h heldLines) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.msg) {
		<-h.gate
	}
	return h.Handler.Handle(ctx, r)
}

func (h heldLines) WithAttrs(as []slog.Attr) slog.Handler {
	h.Handler = h.Handler.WithAttrs(as)
	return h
}

func (h heldLines) WithGroup(name string) slog.Handler {
	h.Handler = h.Handler.WithGroup(name)
	return h
}
