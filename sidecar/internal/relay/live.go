package relay

import (
	"io"
)

// liveWriter adds what it writes to live.
type liveWriter struct {
	w    io.Writer
	live counts
}

func (w *liveWriter) Write(b []byte) (int, error) {
	w.live.begin()
	n, err := w.w.Write(b)
	w.live.done()
	w.live.add(int64(n))
	return n, err
}
