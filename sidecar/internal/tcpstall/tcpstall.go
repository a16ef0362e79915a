package tcpstall

import "time"

// WindowSilence is how long a peer whose window holds the data back may go
// unheard before it is taken for gone: window probes back off to one every
// TCP_RTO_MAX (120 s), and only their answers are heard meanwhile, so
// three times that lets one probe or answer be lost. (The kernel's own
// limit, tcp_rtx_probe0_timed_out, is twice.)
const WindowSilence = 360 * time.Second

// Period is how often a connection with a user timeout of bound is
// checked: a silent peer is cut between bound and bound*9/8 after it was
// last heard.
func Period(bound time.Duration) time.Duration {
	return max(bound/8, 100*time.Millisecond)
}
