// Package splicepipe sets up the pipe that splice(2) moves socket bytes
// through, for every data path that splices (the portable one's live
// counting and the epoll engine), so the pipe's flags and size are decided
// in one place.
//
//	r, w, size, err := splicepipe.New()
//	if err != nil {
//		// out of descriptors: copy through a buffer instead
//	}
//	// splice(src, w, size, splicepipe.Flags), then splice(r, dst, n, splicepipe.Flags)
//
// New exists only on Linux; elsewhere the package holds FDs alone.
package splicepipe

// FDs is how many descriptors a pipe holds: its read end and its write end.
const FDs = 2
