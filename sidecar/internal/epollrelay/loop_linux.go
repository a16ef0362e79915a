//go:build linux && (amd64 || arm64)

package epollrelay

import (
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/example/sidecar/sidecar/internal/relay"
)

type opKind uint8

const (
	opAdd opKind = iota
	opCancel
	opStop
)

// op is a request from a Relay caller (or Close) to the loop goroutine.
type op struct {
	kind opKind
	p    *pair
}

const (
	evIn  = syscall.EPOLLIN
	evOut = syscall.EPOLLOUT
	evErr = syscall.EPOLLERR
	evHup = syscall.EPOLLHUP
)

// loop owns one epoll instance and every socket registered in it. All
// fields below mu are touched only by the loop goroutine.
type loop struct {
	mu      sync.Mutex
	queue   []op
	closed  bool
	woken   bool // an eventfd signal is outstanding
	evfd    int  // closed by the loop under mu, so signals never hit a reused fd
	epfd    int
	lockOS  bool
	splice  bool
	bufSize int

	scratch   []byte // what one read takes in
	plain     []byte // what a codec opens from it, on its way to the client
	free      [][]byte
	eps       []*endpoint // by fd
	pairs     []*pair
	spare     []op
	gen       uint32
	epoch     time.Time
	now       int64
	minIdle   int64 // the shortest idle timeout of the pairs; 0 = none
	minStall  int64 // the shortest upstream user timeout of the pairs; 0 = none
	nextSweep int64
}

func newLoop(opts Options) (*loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	evfd, err := newEventfd()
	if err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if e := epollCtl(epfd, syscall.EPOLL_CTL_ADD, evfd, evIn, 0); e != 0 {
		syscall.Close(epfd)
		syscall.Close(evfd)
		return nil, fmt.Errorf("epoll_ctl add eventfd: %w", e)
	}
	return &loop{
		evfd:    evfd,
		epfd:    epfd,
		lockOS:  !opts.NoLockThread,
		splice:  !opts.NoSplice,
		bufSize: opts.bufferSize(),
		scratch: make([]byte, opts.bufferSize()),
		plain:   make([]byte, opts.bufferSize()),
		epoch:   time.Now(),
	}, nil
}

func (l *loop) closeFDs() {
	syscall.Close(l.epfd)
	l.mu.Lock()
	syscall.Close(l.evfd)
	l.evfd = -1
	l.mu.Unlock()
}

// submit queues o for the loop; false if the loop is stopping.
func (l *loop) submit(o op) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.queue = append(l.queue, o)
	l.signalLocked()
	return true
}

func (l *loop) signalLocked() {
	if !l.woken && l.evfd >= 0 {
		l.woken = true
		eventfdSignal(l.evfd)
	}
}

func (l *loop) clock() int64 { return int64(time.Since(l.epoch)) }

func (l *loop) run() {
	if l.lockOS {
		// One thread for the loop's life: its epoll_wait wake-ups go
		// straight to this goroutine, never through a hand-off.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	events := make([]syscall.EpollEvent, 256)
	for {
		timeout := -1
		if l.sweeping() {
			l.now = l.clock()
			if l.now >= l.nextSweep {
				l.sweep()
			}
			if l.sweeping() {
				timeout = int((l.nextSweep - l.now + int64(time.Millisecond) - 1) / int64(time.Millisecond))
			}
		}
		n, err := syscall.EpollWait(l.epfd, events, timeout)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			// Cannot happen with a valid epfd and buffer; end every pair
			// rather than spin.
			l.stop(fmt.Errorf("epollrelay: epoll_wait: %w", err))
			return
		}
		l.now = l.clock()
		woken := false
		for i := range events[:n] {
			ev := &events[i]
			fd := int(ev.Fd)
			if fd == l.evfd {
				woken = true
				continue
			}
			if fd >= len(l.eps) {
				continue
			}
			ep := l.eps[fd]
			if ep == nil || ep.gen != uint32(ev.Pad) {
				continue
			}
			l.handle(ep, ev.Events)
		}
		if woken && l.drainQueue() {
			return
		}
	}
}

// drainQueue runs queued ops; true when the loop must exit.
func (l *loop) drainQueue() bool {
	eventfdDrain(l.evfd)
	l.mu.Lock()
	l.woken = false
	q := l.queue
	l.queue = l.spare[:0]
	l.mu.Unlock()
	stop := false
	for _, o := range q {
		switch o.kind {
		case opAdd:
			l.add(o.p)
		case opCancel:
			l.finish(o.p, relay.ReasonCanceled, nil)
		case opStop:
			stop = true
		}
	}
	clear(q)
	l.spare = q[:0]
	if stop {
		l.stop(nil)
	}
	return stop
}

// stop ends every pair and closes the loop's own fds.
func (l *loop) stop(err error) {
	l.mu.Lock()
	l.closed = true
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, o := range q {
		if o.kind == opAdd {
			l.add(o.p)
		}
	}
	for len(l.pairs) > 0 {
		l.finish(l.pairs[len(l.pairs)-1], relay.ReasonCanceled, err)
	}
	l.closeFDs()
}

func (l *loop) add(p *pair) {
	l.now = l.clock()
	p.last, p.u.heard = l.now, l.now
	for _, ep := range [2]*endpoint{&p.c, &p.u} {
		l.gen++
		if l.gen == 0 {
			l.gen = 1
		}
		ep.gen = l.gen
		for ep.fd >= len(l.eps) {
			l.eps = append(l.eps, make([]*endpoint, len(l.eps)+64)...)
		}
		l.eps[ep.fd] = ep
	}
	p.idx = len(l.pairs)
	l.pairs = append(l.pairs, p)
	if p.idle > 0 && (l.minIdle == 0 || p.idle < l.minIdle) {
		l.minIdle = p.idle
		l.sweepWithin(sweepPeriod(p.idle))
	}
	if p.stall > 0 && (l.minStall == 0 || p.stall < l.minStall) {
		l.minStall = p.stall
		l.sweepWithin(stallPeriod(p.stall))
	}
	if p.codec != nil {
		l.drainOpen(&p.toC) // what the codec read ahead during the login
		if p.finished {
			return
		}
	}
	l.sync(&p.c)
	l.sync(&p.u)
}

// sweepPeriod is how often idle pairs are looked for: an idle timeout
// fires between idle and idle*9/8 after the last byte.
func sweepPeriod(idle int64) int64 {
	return max(idle/8, int64(time.Millisecond))
}

// sweeping reports whether some pair has a timeout the loop enforces.
func (l *loop) sweeping() bool { return l.minIdle > 0 || l.minStall > 0 }

// sweepWithin brings the next sweep forward to at most period from now.
func (l *loop) sweepWithin(period int64) {
	if next := l.now + period; l.nextSweep == 0 || next < l.nextSweep || l.nextSweep < l.now {
		l.nextSweep = next
	}
}

// sweep ends the pairs idle too long and those whose upstream went silent.
func (l *loop) sweep() {
	var minIdle, minStall int64
	for i := 0; i < len(l.pairs); {
		p := l.pairs[i]
		if p.idle > 0 && l.now-p.last >= p.idle {
			l.finish(p, relay.ReasonIdle, nil) // moves another pair to i
			continue
		}
		if p.stall > 0 {
			l.checkStall(p)
			if p.finished {
				continue
			}
		}
		minIdle, minStall = minSet(minIdle, p.idle), minSet(minStall, p.stall)
		i++
	}
	l.minIdle, l.minStall, l.nextSweep = minIdle, minStall, 0
	if minIdle > 0 {
		l.sweepWithin(sweepPeriod(minIdle))
	}
	if minStall > 0 {
		l.sweepWithin(stallPeriod(minStall))
	}
}

// minSet is the smaller of a and b, where 0 means unset.
func minSet(a, b int64) int64 {
	if a == 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

// handle acts on one epoll event for ep. Level-triggered: whatever is left
// unread or unwritten is reported again by the next epoll_wait.
func (l *loop) handle(ep *endpoint, events uint32) {
	p := ep.p
	acted := false
	if events&(evOut|evErr|evHup) != 0 && ep.wr.pending() {
		acted = true
		l.flush(ep.wr)
		if p.finished {
			return
		}
	}
	if events&(evIn|evErr|evHup) != 0 && !ep.rd.eof && !ep.rd.pending() {
		acted = true
		l.pump(ep.rd)
		if p.finished {
			return
		}
	}
	if !acted && events&(evErr|evHup) != 0 {
		e := soError(ep.fd)
		if e == 0 && events&evHup != 0 {
			// Watched with no interest (sync), its write half open: only
			// a teardown hangs it up, and something took its error.
			e = syscall.ECONNRESET
		}
		if e != 0 {
			l.fail(ep, "socket", e)
			return
		}
	}
	l.sync(&p.c)
	l.sync(&p.u)
}

// sync brings ep's epoll registration in line with what its directions
// need. A socket with nothing to wait for is removed from the set, so a
// level-triggered HUP cannot make the loop spin; but one whose reading
// waits on the other side (a database not reading) stays in it with no
// interest, as epoll still reports EPOLLERR and EPOLLHUP: its peer's reset
// must end the pair now, not once the other side reads again. Only while
// its write half is open: after that a FIN is a HUP too.
func (l *loop) sync(ep *endpoint) {
	if ep.p.finished {
		return
	}
	var want uint32
	if !ep.rd.eof && !ep.rd.pending() {
		want |= evIn
	}
	if ep.wr.pending() {
		want |= evOut
	}
	watch := want != 0 || (ep.rd.pending() && !ep.wr.eof)
	if want == ep.interest && watch == ep.inSet {
		return
	}
	var e syscall.Errno
	switch {
	case !ep.inSet:
		e = epollCtl(l.epfd, syscall.EPOLL_CTL_ADD, ep.fd, want, ep.gen)
	case !watch:
		e = epollCtl(l.epfd, syscall.EPOLL_CTL_DEL, ep.fd, 0, 0)
	default:
		e = epollCtl(l.epfd, syscall.EPOLL_CTL_MOD, ep.fd, want, ep.gen)
	}
	if e != 0 {
		l.fail(ep, "epoll_ctl", e)
		return
	}
	ep.interest, ep.inSet = want, watch
}

func (l *loop) fail(ep *endpoint, call string, e syscall.Errno) {
	p := ep.p
	if ep == &p.c && relay.PeerLeft(e) && silentClient(p) {
		l.finish(p, relay.ReasonClientGone, nil) // a reset, or a send to it failed: left, like a FIN then
		return
	}
	reason, err := relay.Settle(ep.side, fmt.Errorf("%s %s: %w", call, ep.name, e), p.toU.eof || relay.PeerDone(p.c.fd))
	l.finish(p, reason, err)
}

// finish closes both sockets (after removing them from epoll) and
// hands the result to the waiting Relay call.
func (l *loop) finish(p *pair, reason relay.Reason, err error) {
	if p.finished {
		return
	}
	p.finished = true
	for _, ep := range [2]*endpoint{&p.c, &p.u} {
		if ep.inSet {
			epollCtl(l.epfd, syscall.EPOLL_CTL_DEL, ep.fd, 0, 0)
			ep.interest, ep.inSet = 0, false
		}
		if ep.fd < len(l.eps) && l.eps[ep.fd] == ep {
			l.eps[ep.fd] = nil
		}
		syscall.Close(ep.fd)
	}
	for _, d := range [2]*direction{&p.toU, &p.toC} {
		if d.buf != nil {
			l.putBuf(d.buf)
			d.buf = nil
		}
		closePipe(d)
	}
	if p.idx < len(l.pairs) && l.pairs[p.idx] == p {
		last := len(l.pairs) - 1
		l.pairs[p.idx] = l.pairs[last]
		l.pairs[p.idx].idx = p.idx
		l.pairs[last] = nil
		l.pairs = l.pairs[:last]
	}
	p.done <- relay.Result{ToUpstream: p.toU.n, ToClient: p.toC.n, Reason: reason, Err: err}
}

const maxFreeBufs = 64

func (l *loop) getBuf() []byte {
	if n := len(l.free); n > 0 {
		b := l.free[n-1]
		l.free[n-1] = nil
		l.free = l.free[:n-1]
		return b
	}
	return make([]byte, l.bufSize)
}

func (l *loop) putBuf(b []byte) {
	if len(l.free) < maxFreeBufs {
		l.free = append(l.free, b)
	}
}
