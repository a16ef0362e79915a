//go:build !linux

package proxy

// takeQueued does nothing off Linux: closing the listener resets the
// connections still in its accept queue.
func (s *Server) takeQueued(*forward) {}
