package mysqltls_test

import "testing"

// BenchmarkTLSRelay is BenchmarkIAMRelay without IAM: a session relayed
// byte for byte (mysqltls.Relay, the portable data path's), with the pool
// config gives every forward.
func BenchmarkTLSRelay(b *testing.B) {
	benchRelay(b, plainTarget, loginConn)
}
