package mysqltls_test

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testiam"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// The relay takes a packet at sequence id 1 right after one at 0 that
// cannot end an answer for more of it (goesOn): were an answer MariaDB
// ends at 0 taken for one going on, the reply at 1 to the sidecar's
// COM_PING or COM_CHANGE_USER would be refused. After each answer whose
// ids end around the wrap (255, 0, 1; twice wrapped too), as MariaDB
// sends it with and without CLIENT_DEPRECATE_EOF, a COM_CHANGE_USER sent
// once it is read goes through: with LOCAL_PASSWORD, switched for its
// proof after the barrier COM_PING, and, answered with the proof, sent at
// once.
func TestIAMChangeUserAfterAnswersEndingAroundTheWrap(t *testing.T) {
	f := testiam.Start(t)
	target := mariaIAMTarget(t, f)
	const local = "local-pw"
	target.IAM.LocalPassword = []byte(local)
	base := appCaps &^ mysqlwire.ClientCompress
	for name, caps := range map[string]uint32{"eof": base, "deprecate_eof": base | mysqlwire.ClientDeprecateEOF} {
		t.Run(name, func(t *testing.T) {
			addr, _, logs := serveTLS(t, "127.0.0.1", f.Server.Port, &target)
			a := dialApp(t, addr)
			_ = a.c.SetDeadline(time.Now().Add(5 * time.Minute))
			scramble, _ := mysqlwire.GreetingScramble(a.read().Payload)
			proof := mysqlwire.NativeProof([]byte(local), scramble)
			login := mysqlwire.HandshakeResponse{Caps: caps, MaxPacket: 1 << 24, Charset: 33, User: testiam.User,
				Database: testiam.Database, Plugin: mysqlwire.NativePassword, AuthData: proof}
			a.write(1, login.Append(nil))
			if ok := a.read(); ok.Payload[0] != mysqlwire.OK {
				t.Fatalf("login: %q", ok.Payload)
			}
			eof := caps&mysqlwire.ClientDeprecateEOF == 0
			changes := 0
			change := func(shape string, answer []mysqlwire.Packet) {
				t.Helper()
				end := answer[len(answer)-1]
				changes++
				cu := mysqlwire.ChangeUser{User: []string{testiam.User, testiam.OtherUser}[changes%2], Database: testiam.Database,
					Charset: 33, Plugin: mysqlwire.NativePassword, AuthData: proof, Attrs: []byte{}}
				if changes%2 == 0 { // another plugin: the proof is asked for after the barrier
					cu.Plugin, cu.AuthData = "caching_sha2_password", make([]byte, 32)
				}
				a.write(0, cu.Append(nil, caps))
				p := a.read()
				if cu.Plugin != mysqlwire.NativePassword && p.Seq == 1 && p.Payload[0] == mysqlwire.AuthSwitch {
					a.write(2, proof)
					p = a.read()
				}
				if p.Payload[0] != mysqlwire.OK {
					t.Fatalf("after %s (%d packets, the last at %d: %q), COM_CHANGE_USER with %s answered seq %d %q\n%s",
						shape, len(answer), end.Seq, end.Payload, cu.Plugin, p.Seq, p.Payload, logs)
				}
			}
			command := func(payload ...byte) []mysqlwire.Packet {
				a.write(0, payload)
				return readAnswer(a, eof)
			}
			query := func(q string) []mysqlwire.Packet { return command(append([]byte{0x03}, q...)...) }
			setup := func(q string) {
				if p := query(q); p[0].Payload[0] != mysqlwire.OK {
					t.Fatalf("%s: %q", q, p[0].Payload)
				}
			}
			setup("SET SESSION max_error_count = 65535")
			setup("CREATE TABLE ld_" + name + " (a INT, b INT)")
			setup("CREATE PROCEDURE p_" + name + "(n INT) SELECT seq FROM seq_1_to_1000 LIMIT n")
			for _, n := range []int{251, 252, 253, 508} {
				for _, q := range []string{"SELECT seq FROM seq_1_to_%d", "SELECT NULL, seq FROM seq_1_to_%d",
					"SELECT '', seq FROM seq_1_to_%d", "SELECT seq FROM seq_1_to_%d; DO 1", "SELECT seq FROM seq_1_to_%d; SELECT 1",
					"CALL p_" + name + "(%d)", "SELECT CAST('x' AS UNSIGNED) FROM seq_1_to_%d", "SELECT seq FROM seq_1_to_%d; SELECT * FROM no_such_table",
					"SELECT IF(seq < %d, seq, (SELECT seq FROM seq_1_to_2)) FROM seq_1_to_1000"} { // an ERR after the rows, an ERR among them
					q = fmt.Sprintf(q, n)
					change(q, query(q))
				}
				change("SHOW WARNINGS", query("SHOW WARNINGS"))
				for _, q := range []string{"SELECT seq FROM seq_1_to_%d", "SELECT NULL, seq FROM seq_1_to_%d", "SELECT '', seq FROM seq_1_to_%d"} {
					q = fmt.Sprintf(q, n)
					id := command(append([]byte{0x16}, q...)...)[0].Payload[1:5] // a change closes it
					change("COM_STMT_EXECUTE of "+q, command(append(append([]byte{0x17}, id...), 0, 1, 0, 0, 0)...))
				}
			}
			for _, k := range []int{126, 127} { // k parameters, k+1 columns: the last definition at 0 either way
				change(fmt.Sprintf("COM_STMT_PREPARE of %d parameters", k), command(append([]byte{0x16}, "SELECT "+strings.Repeat("?,", k)+"1"...)...))
			}
			for _, k := range []int{254, 255, 256} {
				table := fmt.Sprintf("w%d_%s", k, name)
				setup("CREATE TABLE " + table + " (" + columns(k) + ")")
				change(fmt.Sprintf("COM_FIELD_LIST of %d columns", k), command(append([]byte{0x04}, table+"\x00"...)...))
			}
			// LOAD DATA LOCAL requests at 254 to 1, files of 0 to 256 rows.
			for _, n := range []int{250, 251, 252, 253} {
				for _, rows := range []int{0, 1, 254, 255, 256} {
					answer := query(fmt.Sprintf("SELECT seq FROM seq_1_to_%d; LOAD DATA LOCAL INFILE 'f' INTO TABLE ld_%s FIELDS TERMINATED BY ','", n, name))
					req := answer[len(answer)-1]
					var file []byte
					seq := req.Seq + 1
					for i := range rows {
						file, _ = mysqlwire.AppendPacket(file, seq, fmt.Appendf(nil, "%d,1\n", i))
						seq++
					}
					file, _ = mysqlwire.AppendPacket(file, seq, nil)
					if _, err := a.c.Write(file); err != nil {
						t.Fatal(err)
					}
					change(fmt.Sprintf("LOAD DATA LOCAL requested at %d, a file of %d rows", req.Seq, rows), append(answer, readAnswer(a, eof)...))
				}
			}
		})
	}
}

// readAnswer reads one answer as MariaDB sends it, to its end or to a
// LOAD DATA LOCAL request; eof: without CLIENT_DEPRECATE_EOF.
func readAnswer(a *app, eof bool) []mysqlwire.Packet {
	a.t.Helper()
	var out []mysqlwire.Packet
	read := func() mysqlwire.Packet { p := a.read(); out = append(out, p); return p }
	for {
		p := read()
		switch b := p.Payload; {
		case b[0] == mysqlwire.ErrPacketHdr || b[0] == 0xfb:
			return out
		case b[0] == mysqlwire.OK && len(b) == 12 && len(out) == 1 && b[9] == 0: // COM_STMT_PREPARE's OK
			for _, n := range []uint16{binary.LittleEndian.Uint16(b[7:]), binary.LittleEndian.Uint16(b[5:])} { // parameters, columns
				for range n {
					read()
				}
				if eof && n > 0 {
					read()
				}
			}
			return out
		case b[0] == mysqlwire.OK:
			if !moreResults(b) {
				return out
			}
			continue
		case string(b[:min(4, len(b))]) == "\x03def": // COM_FIELD_LIST's first definition
		default: // a column count: the definitions, an EOF without CLIENT_DEPRECATE_EOF
			for range b[0] {
				read()
			}
			if eof {
				read()
			}
		}
		for {
			p = read()
			if b := p.Payload; b[0] == mysqlwire.ErrPacketHdr || b[0] == mysqlwire.AuthSwitch && len(b) < mysqlwire.MaxPayload {
				break
			}
		}
		if p.Payload[0] == mysqlwire.ErrPacketHdr || !moreResults(p.Payload) {
			return out
		}
	}
}

// moreResults reports whether an OK or EOF has SERVER_MORE_RESULTS_EXISTS.
func moreResults(b []byte) bool {
	if len(b) == 5 {
		return b[3]&8 != 0
	}
	i := 1
	for range 2 { // affected rows, last insert id: here below 2^16
		if b[i] == 0xfc {
			i += 2
		}
		i++
	}
	return b[i]&8 != 0
}

// columns are n INT columns.
func columns(n int) string {
	c := make([]string, n)
	for i := range c {
		c[i] = fmt.Sprintf("c%d INT", i)
	}
	return strings.Join(c, ", ")
}
