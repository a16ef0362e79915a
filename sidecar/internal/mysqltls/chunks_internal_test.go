package mysqltls

import (
	"slices"
	"testing"
)

// records reads as a tls.Conn does: at most the rest of one record.
type records struct {
	left    []int
	started bool // some of left[0] was read
}

func (r *records) Read(p []byte) (int, error) {
	n := min(len(p), r.left[0])
	r.started = true
	if r.left[0] -= n; r.left[0] == 0 {
		r.left, r.started = r.left[1:], false
	}
	return n, nil
}

// ready has the rest of a record begun: the next one has not arrived.
func (r *records) ready(p []byte) (int, error) {
	if !r.started {
		return 0, nil
	}
	return r.Read(p)
}

// pass reads src to its end through c, as a pump does, and returns each
// read's size and whether c held a buffer after it.
func pass(c *chunks, src *records) (reads []int, held []bool) {
	for len(src.left) > 0 {
		buf, _ := c.read(src)
		c.done(len(buf))
		reads = append(reads, len(buf))
		held = append(held, c.held != nil)
	}
	return reads, held
}

// A direction reading full TLS records reads each whole once it holds a
// buffer (one write per record), and gives the buffer back at the first
// short read, so that it waits for the next burst holding none.
func TestChunksKeepToRecords(t *testing.T) {
	c := &chunks{bufs: NewBuffers(), full: maxRecordPlaintext}
	reads, held := pass(c, &records{left: []int{maxRecordPlaintext, maxRecordPlaintext, maxRecordPlaintext, 100, 3000}})
	lead, rest := leadSize, maxRecordPlaintext-leadSize
	if want := []int{lead, rest, maxRecordPlaintext, maxRecordPlaintext, 100, lead, 3000 - lead}; !slices.Equal(reads, want) {
		t.Errorf("reads %v; want %v: the first of a burst into lead, then whole records", reads, want)
	}
	if want := []bool{true, true, true, true, false, true, false}; !slices.Equal(held, want) {
		t.Errorf("buffer held after each read: %v; want %v", held, want)
	}
}

// With ready, a record longer than lead goes out whole in one write, and
// one that ends with lead is not waited on holding a buffer.
func TestChunksTakeWhatIsReady(t *testing.T) {
	src := &records{left: []int{3000, leadSize, 100, maxRecordPlaintext, maxRecordPlaintext, 5}}
	c := &chunks{bufs: NewBuffers(), full: maxRecordPlaintext, ready: src.ready}
	reads, held := pass(c, src)
	if want := []int{3000, leadSize, 100, maxRecordPlaintext, maxRecordPlaintext, 5}; !slices.Equal(reads, want) {
		t.Errorf("reads %v; want %v: a record each", reads, want)
	}
	if want := []bool{false, false, false, true, true, false}; !slices.Equal(held, want) {
		t.Errorf("buffer held after each read: %v; want %v", held, want)
	}
}
