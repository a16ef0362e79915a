//go:build !linux

package relay

import "net"

// socketDead cannot ask the kernel here; blame falls back on the error.
func socketDead(*net.TCPConn) bool { return false }

// onFD has no kernel to ask here.
func onFD(*net.TCPConn, func(int) bool) bool { return false }

// PeerEnded cannot ask the kernel here: only what the data path read counts.
func PeerEnded(int) bool { return false }

// PeerDone cannot ask the kernel here: only what the data path read counts.
func PeerDone(int) bool { return false }

// PeerReset cannot ask the kernel here.
func PeerReset(int) bool { return false }

// ConnDone cannot ask the kernel here: only what the data path read counts.
func ConnDone(*net.TCPConn) bool { return false }
