package main

import (
	"bytes"
	"database/sql"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testmysql"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// nativePassword is mysql_native_password's answer to scramble.
func nativePassword(scramble []byte, password string) []byte {
	return mysqlwire.NativeProof([]byte(password), scramble)
}

// rawClient is a minimal MySQL client, for the commands no driver here
// sends: COM_CHANGE_USER and COM_RESET_CONNECTION.
type rawClient struct {
	t        *testing.T
	c        net.Conn
	scramble []byte
}

// dialRaw connects a rawClient to addr, closed when the test ends, with
// 30 s for everything it does.
func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawClient{t: t, c: c}
}

func (r *rawClient) send(seq byte, p []byte) {
	r.t.Helper()
	if _, err := mysqlwire.WritePacket(r.c, seq, p); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawClient) recv() mysqlwire.Packet {
	r.t.Helper()
	p, err := mysqlwire.ReadPacket(r.c, 1<<24)
	if err != nil {
		r.t.Fatal(err)
	}
	if code, msg, isErr := mysqlwire.ErrMessage(p.Payload); isErr {
		r.t.Fatalf("server error %d: %s", code, msg)
	}
	return p
}

// finishAuth answers auth switches with mysql_native_password until OK.
func (r *rawClient) finishAuth(password string) {
	r.t.Helper()
	for {
		p := r.recv()
		switch p.Payload[0] {
		case mysqlwire.OK:
			return
		case mysqlwire.AuthSwitch:
			name, data, _ := bytes.Cut(p.Payload[1:], []byte{0})
			if string(name) != "mysql_native_password" {
				r.t.Fatalf("auth switch to %q", name)
			}
			r.send(p.Seq+1, nativePassword(bytes.TrimSuffix(data, []byte{0}), password))
		default:
			r.t.Fatalf("unexpected packet %q", p.Payload)
		}
	}
}

func (r *rawClient) query(q string) string {
	r.t.Helper()
	r.send(0, append([]byte{0x03}, q...))
	var all []byte
	for {
		p := r.recv()
		all = append(all, p.Payload...)
		// a text result ends with an EOF (0xfe, short) after the rows
		if p.Payload[0] == 0xfe && len(p.Payload) < 9 && bytes.Count(all, []byte{0xfe}) >= 2 || p.Payload[0] == mysqlwire.OK {
			return string(all)
		}
	}
}

func TestChangeUserAndResetConnectionThroughTLS(t *testing.T) {
	t.Parallel()
	srv, files := testmysql.StartTLS(t, testmysql.TLSOptions{})
	root, err := sql.Open("mysql", "root@unix("+srv.Socket+")/")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"CREATE USER 'second'@'%' IDENTIFIED BY 'second-pw'", "GRANT ALL ON *.* TO 'second'@'%'", "CREATE DATABASE cu"} {
		if _, err := root.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	_ = root.Close()
	via := tlsSidecar(t, srv, map[string]string{"TARGET_TLS_CA": files.CA})
	r := dialRaw(t, via)
	g := r.recv()
	r.scramble, err = mysqlwire.GreetingScramble(g.Payload)
	if err != nil {
		t.Fatal(err)
	}
	caps := mysqlwire.ClientLongPassword | mysqlwire.ClientProtocol41 | mysqlwire.ClientSecureConnection |
		mysqlwire.ClientPluginAuth | mysqlwire.ClientTransactions | mysqlwire.ClientConnectWithDB
	resp := binary.LittleEndian.AppendUint32(nil, caps)
	resp = binary.LittleEndian.AppendUint32(resp, 1<<24)
	resp = append(resp, 33)
	resp = append(resp, make([]byte, 23)...)
	resp = append(append(resp, srv.User...), 0)
	auth := nativePassword(r.scramble, srv.Password)
	resp = append(append(resp, byte(len(auth))), auth...)
	resp = append(append(resp, "cu"...), 0)
	resp = append(append(resp, "mysql_native_password"...), 0)
	r.send(1, resp)
	r.finishAuth(srv.Password)
	if out := r.query("SELECT CURRENT_USER()"); !bytes.Contains([]byte(out), []byte(srv.User+"@")) {
		t.Fatalf("CURRENT_USER() before the change: %q", out)
	}

	// COM_CHANGE_USER: user, auth (length-prefixed), database, charset, plugin.
	cu := append([]byte{0x11}, "second"...)
	cu = append(cu, 0)
	auth = nativePassword(r.scramble, "second-pw")
	cu = append(append(cu, byte(len(auth))), auth...)
	cu = append(append(cu, "cu"...), 0)
	cu = append(cu, 33, 0)
	cu = append(append(cu, "mysql_native_password"...), 0)
	r.send(0, cu)
	r.finishAuth("second-pw")
	if out := r.query("SELECT CURRENT_USER()"); !bytes.Contains([]byte(out), []byte("second@")) {
		t.Fatalf("CURRENT_USER() after COM_CHANGE_USER: %q", out)
	}

	r.query("SET @marker = 42")
	r.send(0, []byte{0x1f}) // COM_RESET_CONNECTION
	if p := r.recv(); p.Payload[0] != mysqlwire.OK {
		t.Fatalf("COM_RESET_CONNECTION answered %q", p.Payload)
	}
	if out := r.query("SELECT @marker IS NULL"); !bytes.Contains([]byte(out), []byte{1, '1'}) {
		t.Fatalf("the session variable survived COM_RESET_CONNECTION: %q", out)
	}
	if out := r.query("SHOW SESSION STATUS LIKE 'Ssl_version'"); !bytes.Contains([]byte(out), []byte("TLSv1.")) {
		t.Fatalf("not TLS to the server: %q", out)
	}
}
