package relay

import (
	"io"
	"sync/atomic"
)

// liveWriter adds what it writes to live.
type liveWriter struct {
	w    io.Writer
	live *atomic.Int64
}

func (w *liveWriter) Write(b []byte) (int, error) {
	n, err := w.w.Write(b)
	w.live.Add(int64(n))
	return n, err
}
