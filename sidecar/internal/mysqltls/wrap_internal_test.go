package mysqltls

import (
	"bytes"
	"testing"
	"time"

	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// Rows as the server sends them: a text row ("x"), a text row whose first
// column is empty, and a binary row (COM_STMT_EXECUTE's: 0x00, the NULL
// bitmap, "x"), which reads as an OK's first byte.
var wrapRows = map[string][]byte{
	"text":       []byte("\x01x"),
	"empty text": []byte("\x00\x01x"),
	"binary":     []byte("\x00\x00\x01x"),
}

// rowsFrom are n packets of row at sequence ids from first on, wrapping
// after 255.
func rowsFrom(first byte, n int, row []byte) [][]byte {
	var out [][]byte
	for i := range n {
		out = append(out, frame(first+byte(i), row))
	}
	return out
}

// Two commands sent together, the first answered by more than 255
// packets: its packet at sequence id 1, after the wrap, was counted as the
// second answer's start. A COM_CHANGE_USER sent once the first answer was
// read, but before the second's began, went to the server, and the second
// command's ERR was taken for the server's verdict on the change.
func TestIAMChangeUserBeforeTheAnswerAfterAWrappedOne(t *testing.T) {
	answers := map[string][][]byte{ // the first command's, from id 1
		// a multi-statement's first result ending at 0, the next beginning at 1
		"results": append(append(rowsFrom(1, 255, wrapRows["text"]), frame(0, []byte{mysqlwire.AuthSwitch, 0, 0, 0x0a, 0, 0, 0})),
			frame(1, []byte{1}), frame(2, endOfRows)),
		// a LOAD DATA request at 0, a file of 256 packets (below), its OK at 1
		"file": append(rowsFrom(1, 255, wrapRows["text"]), frame(0, []byte("\xfbf"))),
	}
	for name, row := range wrapRows {
		answers[name+" rows"] = append(rowsFrom(1, 300, row), frame(301%256, endOfRows)) // ids 1 to 255, 0 to 44, the end at 45
	}
	for name, answer := range answers {
		t.Run(name, func(t *testing.T) {
			r := startIAMRelay(t, "")
			first, second := frame(0, []byte("\x03SELECT * FROM big")), frame(0, []byte("\x03SELECT * FROM missing"))
			var after [][]byte // what the app sends once it has read answer
			if name == "file" {
				// The file, then the second command; the LOAD DATA's OK comes after both.
				after = append(append(rowsFrom(1, 255, []byte("a,b\n")), frame(0, nil)), second)
				r.write(r.app, first)
				r.read(r.db)
			} else {
				r.write(r.app, first, second)
				r.read(r.db)
				r.read(r.db)
			}
			r.write(r.db, answer...)
			for range answer {
				r.read(r.app)
			}
			if after != nil {
				r.write(r.app, after...)
				for range after {
					r.read(r.db)
				}
				r.write(r.db, frame(1, okPacket))
				r.read(r.app)
			}
			r.write(r.app, frame(0, changeTo("other", mysqlwire.NativePassword)))
			r.pipelinedInPlaceOf(mysqlwire.ErrPacket(1146, "42S02", "Table 'orders.missing' doesn't exist"))
		})
	}
}

// With LOCAL_PASSWORD, a COM_CHANGE_USER sent once 256 packets of a
// longer answer were read has the sidecar send its COM_PING; the next row,
// at sequence id 1 after the wrap, starting with 0x00 (a binary row, a
// text row whose first column is empty) or an ERR ending the answer there,
// was taken for the server's answer to that COM_PING: the app read the
// switch for its proof among its rows, or the query's ERR as the server
// refusing the COM_PING. It is more of that answer: the change is
// pipelined.
func TestIAMProofBarrierAfterAWrap(t *testing.T) {
	for name, rest := range map[string][]byte{
		"empty text": wrapRows["empty text"],
		"binary":     wrapRows["binary"],
		"ERR":        mysqlwire.ErrPacket(1317, "70100", "Query execution was interrupted"),
	} {
		t.Run(name, func(t *testing.T) {
			r := startIAMRelay(t, "local-pw")
			r.write(r.app, frame(0, []byte("\x03SELECT * FROM big")))
			r.read(r.db)
			row := rest
			if rest[0] == mysqlwire.ErrPacketHdr {
				row = wrapRows["text"]
			}
			read := rowsFrom(1, 256, row) // ids 1 to 255, then 0
			r.write(r.db, read...)
			for range read {
				r.read(r.app)
			}
			r.write(r.app, frame(0, changeTo("app", "caching_sha2_password")))
			if p := r.read(r.db); p.Seq != 0 || !bytes.Equal(p.Payload, []byte{comPing}) {
				t.Fatalf("server read seq %d %q; want the sidecar's COM_PING", p.Seq, p.Payload)
			}
			tail := [][]byte{frame(1, rest)}
			if rest[0] != mysqlwire.ErrPacketHdr {
				tail = append(tail, frame(2, endOfRows))
			}
			r.write(r.db, append(tail, frame(1, okPacket))...) // the rest, then the COM_PING's OK
			r.expectPipelined(1)
		})
	}
}

// A packet at sequence id 1 right after one at 0 that can end an answer
// begins the next: a result's end, an ERR, an OK after a result or an OK
// with more to come, a LOAD DATA's OK after its file, a COM_STMT_PREPARE's
// last column definition (CLIENT_DEPRECATE_EOF sends no EOF after it),
// MariaDB's progress report. A COM_CHANGE_USER sent once both answers are
// read goes through: a second answer not counted would have it refused,
// and every later one.
func TestIAMChangeUserAfterAnAnswerEndingAtZero(t *testing.T) {
	more := []byte{mysqlwire.AuthSwitch, 0, 0, 0x0a, 0, 0, 0} // a result's end, SERVER_MORE_RESULTS_EXISTS
	okMore := []byte{mysqlwire.OK, 1, 0, 0x0a, 0, 0, 0}       // an UPDATE's OK, more to come
	def := []byte("\x03def\x00\x00\x00\x01?\x00\x0c\x3f\x00\x00\x00\x00\x00\xfd\x80\x00\x00\x00\x00")
	progress := []byte{mysqlwire.ErrPacketHdr, 0xff, 0xff, 1, 1, 0, 0, 0, 0, 0, 0}
	for _, tc := range []struct {
		name   string
		answer [][]byte // the first command's, ids from 1 to 0
		file   int      // packets of the app's file after the answer's request at 255
	}{
		{name: "binary rows, the end at 0", answer: append(rowsFrom(1, 255, wrapRows["binary"]), frame(0, endOfRows))},
		{name: "rows, an ERR at 0", answer: append(rowsFrom(1, 255, wrapRows["text"]), frame(0, mysqlwire.ErrPacket(1317, "70100", "interrupted")))},
		{name: "a result with more, an OK at 0", answer: append(append(rowsFrom(1, 254, wrapRows["binary"]), frame(255, more)), frame(0, okPacket))},
		{name: "OKs with more, an OK at 0", answer: append(rowsFrom(1, 255, okMore), frame(0, okPacket))},
		{name: "a prepare's definitions, the last at 0", answer: append([][]byte{frame(1, []byte{0, 1, 0, 0, 0, 0, 0, 0xff, 0, 0, 0, 0})}, rowsFrom(2, 255, def)...)},
		{name: "progress reports, an OK at 0", answer: append(rowsFrom(1, 255, progress), frame(0, okPacket))},
		{name: "a LOAD DATA file of 256 packets, its OK at 0", answer: append(rowsFrom(1, 254, wrapRows["text"]), frame(255, []byte("\xfbf"))), file: 256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startIAMRelay(t, "")
			r.write(r.app, frame(0, []byte("\x03SELECT a")), frame(0, []byte("\x03SELECT b")))
			r.read(r.db)
			r.read(r.db)
			r.write(r.db, tc.answer...)
			for range tc.answer {
				r.read(r.app)
			}
			second := [][]byte{frame(1, mysqlwire.ErrPacket(1146, "42S02", "no such table"))}
			if tc.file > 0 {
				// The file: ids 0 to 254, its end at 255; the OK at 0.
				file := append(rowsFrom(0, tc.file-1, []byte("a,b\n")), frame(byte(tc.file-1), nil))
				r.write(r.app, file...)
				for range file {
					r.read(r.db)
				}
				second = append([][]byte{frame(0, okPacket)}, second...)
			}
			r.write(r.db, second...)
			for range second {
				r.read(r.app)
			}
			_ = r.db.SetReadDeadline(time.Now().Add(5 * time.Second))
			r.changeGoesThrough(tc.name)
		})
	}
}

// Only a packet at id 0, or one that goes on from it, is known not to be
// an answer's first: COM_STATISTICS is answered by one string at 1, which
// reads as a row, and the answer to a command of several frames begins at
// 2 right after it. That answer is counted, and a change sent once it is
// read goes through.
func TestIAMChangeUserAfterALateAnswerAfterAString(t *testing.T) {
	r := startIAMRelay(t, "")
	r.write(r.app, frame(0, []byte{0x09})) // COM_STATISTICS
	r.read(r.db)
	r.multiFrameQuery()
	r.write(r.db, frame(1, []byte("Uptime: 1  Threads: 1")), frame(2, okPacket))
	r.read(r.app)
	if p := r.read(r.app); p.Seq != 2 || p.Payload[0] != mysqlwire.OK {
		t.Fatalf("app read seq %d %q; want the answer at 2", p.Seq, p.Payload)
	}
	r.changeGoesThrough("after both answers")
}

// Without LOCAL_PASSWORD the change goes to the server at once; an ERR
// ending the previous answer at sequence id 1, after the wrap, was taken
// for the server's verdict on it, and the log said the database refused
// the change. It is the rest of that answer: the change is pipelined.
func TestIAMChangeUserBeforeAnERRAfterAWrap(t *testing.T) {
	r := startIAMRelay(t, "")
	r.write(r.app, frame(0, []byte("\x03SELECT * FROM big")))
	r.read(r.db)
	read := rowsFrom(1, 256, wrapRows["text"]) // ids 1 to 255, then 0
	r.write(r.db, read...)
	for range read {
		r.read(r.app)
	}
	r.write(r.app, frame(0, changeTo("other", mysqlwire.NativePassword)))
	if p := r.read(r.db); p.Seq != 0 || p.Payload[0] != mysqlwire.ComChangeUser {
		t.Fatalf("server read seq %d %q; want the COM_CHANGE_USER", p.Seq, p.Payload)
	}
	r.write(r.db, frame(1, mysqlwire.ErrPacket(1317, "70100", "Query execution was interrupted")))
	r.expectPipelined(1)
}
