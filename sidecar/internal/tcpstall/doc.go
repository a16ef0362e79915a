// Package tcpstall enforces a socket's TCP_USER_TIMEOUT in user space, so
// that only a peer gone silent is cut.
//
// Set in the kernel, the timeout also cuts a peer that is alive but has
// stopped reading (a zero window: a database running LOAD DATA LOCAL
// INFILE while it waits on a lock), since Linux 5.11 counts a closed window
// from its first probe even when every probe is answered. Here a
// connection is cut only when data waits to be sent or acknowledged and
// nothing (no acknowledgement, no data) has been heard from the peer for
// the timeout, or for WindowSilence while the peer's window holds the data
// back.
//
// Set puts the timeout on a socket (the forwarder does, on the database's
// side); Take reads it back and clears it in the kernel; Check judges
// the socket once (an event loop calls it from its own sweep); Watch
// checks a connection on a timer, for data paths with a goroutine per
// direction. Where TCP_INFO is not offered, Take returns 0 and the kernel
// keeps its own timeout.
package tcpstall
