package mysqltls

import (
	"bytes"
	"io"
	"testing"
)

// The IAM relay looks at each packet's header and first bytes but copies
// it as the byte-for-byte relay does: an answer of many small rows costs
// no allocation per packet. Each packet cost two (its header, moved to
// the heap for the writer, and io.CopyN's LimitedReader): an IAM session
// made twice the garbage of a TLS one on a result set of small rows.
func TestIAMRelayAllocatesNothingPerPacket(t *testing.T) {
	const rows = 1000
	r := startIAMRelay(t, "")
	r.write(r.app, frame(0, []byte("\x03SELECT * FROM big")))
	r.read(r.db)
	answer := bytes.Join(append(rowsFrom(1, rows, wrapRows["text"]), frame(byte((rows+1)%256), endOfRows)), nil)
	got := make([]byte, len(answer))
	allocs := testing.AllocsPerRun(5, func() {
		r.write(r.db, answer)
		if _, err := io.ReadFull(r.app, got); err != nil {
			t.Fatal(err)
		}
		// Later runs' answers come unasked: relayed as any packet is.
	})
	if !bytes.Equal(got, answer) {
		t.Fatal("the app read another answer than the server sent")
	}
	if allocs > rows/10 {
		t.Errorf("relaying an answer of %d rows made %.0f allocations; want less than one per ten packets", rows, allocs)
	}
}
