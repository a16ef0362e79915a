//go:build !linux

package relay

import "net"

// onFD has no kernel to ask here: socketDead, ConnDone and ConnEnded
// fall back on what the data path read.
func onFD(*net.TCPConn, func(int) bool) bool { return false }

// PeerEnded cannot ask the kernel here: only what the data path read counts.
func PeerEnded(int) bool { return false }

// PeerDone cannot ask the kernel here: only what the data path read counts.
func PeerDone(int) bool { return false }

// PeerReset cannot ask the kernel here.
func PeerReset(int) bool { return false }

// ResetPending cannot ask the kernel here.
func ResetPending(int) bool { return false }

// resetErr cannot ask the kernel here: a reset is seen when read.
func resetErr(*net.TCPConn) error { return nil }
