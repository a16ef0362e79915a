package tlscodec

// Unread is how many fed bytes the transport holds that crypto/tls has
// not read yet: the fuzz test checks the codec buffers nothing beyond the
// record crypto/tls is reading.
func (c *Codec) Unread() int { return len(c.t.in) }
