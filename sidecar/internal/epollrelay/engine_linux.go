//go:build linux && (amd64 || arm64)

package epollrelay

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/example/sidecar/sidecar/internal/relay"
	"github.com/example/sidecar/sidecar/internal/splicepipe"
)

// Engine runs the event loops. Create one per process with New, pass
// e.Relay as the relay.Func, and Close it after the last relay returned.
type Engine struct {
	opts      Options
	loops     []*loop
	next      atomic.Uint32
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New starts opts.Loops event loops. It fails only if the kernel refuses an
// epoll instance or eventfd (e.g. out of file descriptors); the caller then
// uses the portable data path.
func New(opts Options) (*Engine, error) {
	e := &Engine{opts: opts}
	for i := 0; i < opts.loops(); i++ {
		l, err := newLoop(opts)
		if err != nil {
			for _, l := range e.loops {
				l.closeFDs()
			}
			return nil, fmt.Errorf("epollrelay: start event loop %d: %w", i, err)
		}
		e.loops = append(e.loops, l)
	}
	for _, l := range e.loops {
		e.wg.Add(1)
		go e.runLoop(l)
	}
	return e, nil
}

func (e *Engine) runLoop(l *loop) {
	defer e.wg.Done()
	l.run()
}

// Close stops the loops. Relays still running end with ReasonCanceled;
// later calls to Relay close both connections and return the same. Close waits
// until every loop has closed its sockets.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		for _, l := range e.loops {
			l.mu.Lock()
			l.closed = true
			l.queue = append(l.queue, op{kind: opStop})
			l.signalLocked()
			l.mu.Unlock()
		}
	})
	e.wg.Wait()
	return nil
}

// Relay implements relay.Func. It moves both sockets into an event loop
// (duplicating their fds, then closing the Go connections) and blocks until
// the pair has finished; the calling goroutine costs nothing meanwhile.
func (e *Engine) Relay(ctx context.Context, client, upstream *net.TCPConn, idle time.Duration) relay.Result {
	cfd, err := dupConn(client)
	if err != nil {
		return e.cannot(ctx, client, upstream, idle, fmt.Errorf("epollrelay: take client socket: %w", err))
	}
	ufd, err := dupConn(upstream)
	if err != nil {
		syscall.Close(cfd)
		return e.cannot(ctx, client, upstream, idle, fmt.Errorf("epollrelay: take upstream socket: %w", err))
	}
	// The engine's duplicates keep the sockets open; closing the Go side
	// removes them from the runtime's netpoller so it gets no events.
	client.Close()
	upstream.Close()

	p := newPair(cfd, ufd, idle, relay.CountersFrom(ctx))
	l := e.loops[e.next.Add(1)%uint32(len(e.loops))]
	if !l.submit(op{kind: opAdd, p: p}) {
		syscall.Close(cfd)
		syscall.Close(ufd)
		return relay.Result{Reason: relay.ReasonCanceled}
	}
	if done := ctx.Done(); done != nil {
		select {
		case r := <-p.done:
			return r
		case <-done:
			l.submit(op{kind: opCancel, p: p}) // refused only if stopping, which finishes p too
		}
	}
	return <-p.done
}

// cannot handles a pair the engine could not take: the fallback relays it,
// or both connections are closed.
func (e *Engine) cannot(ctx context.Context, client, upstream *net.TCPConn, idle time.Duration, err error) relay.Result {
	if e.opts.Fallback != nil {
		return e.opts.Fallback(ctx, client, upstream, idle)
	}
	client.Close()
	upstream.Close()
	return relay.Result{Reason: relay.ReasonClientError, Err: err}
}

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

// endpoint is one socket of a pair, as the loop sees it.
type endpoint struct {
	fd       int
	gen      uint32 // tags epoll events so a stale event for a reused fd is ignored
	interest uint32 // events currently registered; 0 means not in the epoll set
	p        *pair
	rd       *direction   // bytes read from this socket
	wr       *direction   // bytes written to this socket
	side     relay.Reason // the Reason for an error on this socket
	name     string
}

// direction moves bytes from src to dst: by read and send, or, once it
// carries bulk data, by splice through a pipe (no copy to user space).
type direction struct {
	src, dst *endpoint
	buf      []byte // pending bytes dst would not take yet; nil otherwise
	off, end int
	eof      bool // src sent EOF and dst's write half is shut down
	n        int64
	live     *atomic.Int64 // the relay.Counters to add to as bytes go out; nil = none

	splicing     bool
	pipeR, pipeW int // -1 until the direction first goes bulk
	pipeSize     int
	inPipe       int // bytes spliced from src not yet spliced to dst
}

func (d *direction) pending() bool { return d.end > d.off || d.inPipe > 0 }

// sent counts m bytes written to dst.
func (d *direction) sent(m int) {
	d.n += int64(m)
	if d.live != nil {
		d.live.Add(int64(m))
	}
}

type pair struct {
	c, u     endpoint
	toU, toC direction
	idle     int64 // ns; 0 = no idle timeout
	last     int64 // loop clock of the last byte moved
	idx      int   // position in loop.pairs
	finished bool
	done     chan relay.Result
}

func newPair(cfd, ufd int, idle time.Duration, live *relay.Counters) *pair {
	p := &pair{idle: int64(idle), done: make(chan relay.Result, 1)}
	p.c = endpoint{fd: cfd, p: p, rd: &p.toU, wr: &p.toC, side: relay.ReasonClientError, name: "client"}
	p.u = endpoint{fd: ufd, p: p, rd: &p.toC, wr: &p.toU, side: relay.ReasonUpstreamError, name: "upstream"}
	p.toU = direction{src: &p.c, dst: &p.u, pipeR: -1, pipeW: -1}
	p.toC = direction{src: &p.u, dst: &p.c, pipeR: -1, pipeW: -1}
	if live != nil {
		p.toU.live, p.toC.live = &live.ToUpstream, &live.ToClient
	}
	return p
}

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

	scratch   []byte
	free      [][]byte
	eps       []*endpoint // by fd
	pairs     []*pair
	spare     []op
	gen       uint32
	epoch     time.Time
	now       int64
	minIdle   int64
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
		if l.minIdle > 0 {
			l.now = l.clock()
			if l.now >= l.nextSweep {
				l.sweep()
			}
			if l.minIdle > 0 {
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
	p.last = l.now
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
		if next := l.now + sweepPeriod(p.idle); l.nextSweep == 0 || next < l.nextSweep || l.nextSweep < l.now {
			l.nextSweep = next
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

func (l *loop) sweep() {
	var minIdle int64
	for i := 0; i < len(l.pairs); {
		p := l.pairs[i]
		if p.idle > 0 {
			if l.now-p.last >= p.idle {
				l.finish(p, relay.ReasonIdle, nil) // moves another pair to i
				continue
			}
			if minIdle == 0 || p.idle < minIdle {
				minIdle = p.idle
			}
		}
		i++
	}
	l.minIdle = minIdle
	if minIdle > 0 {
		l.nextSweep = l.now + sweepPeriod(minIdle)
	}
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
	if !acted && events&evErr != 0 {
		if e := soError(ep.fd); e != 0 {
			l.fail(ep, "socket", e)
			return
		}
	}
	l.sync(&p.c)
	l.sync(&p.u)
}

// pump reads once from d.src and sends what it got to d.dst. What dst does
// not take waits in d.buf, and d.src is not read again until it is sent.
func (l *loop) pump(d *direction) {
	if d.splicing {
		l.pumpSplice(d)
		return
	}
	buf := d.buf
	if buf == nil {
		buf = l.scratch
	}
	n, e := sysRead(d.src.fd, buf)
	switch {
	case e == syscall.EAGAIN || e == syscall.EINTR:
		return
	case e != 0:
		l.fail(d.src, "read", e)
		return
	case n == 0:
		l.ended(d)
		return
	}
	d.src.p.last = l.now
	m, e := sysSend(d.dst.fd, buf[:n])
	switch {
	case e == syscall.EAGAIN || e == syscall.EINTR:
		m = 0
	case e != 0:
		l.fail(d.dst, "write", e)
		return
	}
	d.sent(m)
	switch {
	case m < n && d.buf == nil:
		d.buf = l.getBuf()
		d.off, d.end = 0, copy(d.buf, buf[m:n])
	case m < n:
		d.off, d.end = m, n
	case d.buf != nil && n < len(d.buf)/2:
		// The burst is over; give the buffer back so idle pairs hold none.
		l.putBuf(d.buf)
		d.buf = nil
	case n == len(buf) && l.splice:
		// A full read: bulk data. Splice from now on, if a pipe is to be had.
		l.startSplice(d)
	}
}

// ended handles EOF on d.src: pass the half-close on to d.dst, and finish the
// pair once both directions have ended.
func (l *loop) ended(d *direction) {
	d.eof = true
	sysShutdownWrite(d.dst.fd) // a peer already gone reports itself on its own socket
	if p := d.src.p; p.toU.eof && p.toC.eof {
		l.finish(p, relay.ReasonDone, nil)
	}
}

func (l *loop) startSplice(d *direction) {
	if d.pipeR < 0 {
		r, w, size, err := splicepipe.New()
		if err != nil {
			return // out of fds: keep copying
		}
		d.pipeR, d.pipeW, d.pipeSize = r, w, size
	}
	if d.pending() {
		return // flush switches once the copied bytes are out
	}
	if d.buf != nil {
		l.putBuf(d.buf)
		d.buf = nil
	}
	d.splicing = true
}

// pumpSplice moves what src has into the pipe and on to dst. Bytes dst
// does not take stay in the pipe, and src is not read until they are sent.
func (l *loop) pumpSplice(d *direction) {
	n, e := sysSplice(d.src.fd, d.pipeW, d.pipeSize)
	switch {
	case e == syscall.EAGAIN || e == syscall.EINTR:
		return
	case e != 0:
		l.fail(d.src, "read", e)
		return
	case n == 0:
		l.ended(d)
		return
	}
	d.src.p.last = l.now
	d.inPipe = n
	l.flushPipe(d)
	if !d.src.p.finished && d.inPipe == 0 && n < l.bufSize/4 {
		d.splicing = false // small messages again: read and send is cheaper
	}
}

func (l *loop) flushPipe(d *direction) {
	m, e := sysSplice(d.pipeR, d.dst.fd, d.inPipe)
	switch {
	case e == syscall.EAGAIN || e == syscall.EINTR:
		return
	case e != 0:
		l.fail(d.dst, "write", e)
		return
	}
	d.sent(m)
	d.inPipe -= m
	d.src.p.last = l.now
}

// flush sends pending bytes to d.dst.
func (l *loop) flush(d *direction) {
	if d.inPipe > 0 {
		l.flushPipe(d)
		return
	}
	m, e := sysSend(d.dst.fd, d.buf[d.off:d.end])
	switch {
	case e == syscall.EAGAIN || e == syscall.EINTR:
		return
	case e != 0:
		l.fail(d.dst, "write", e)
		return
	}
	d.sent(m)
	d.off += m
	d.src.p.last = l.now
	if d.off == d.end {
		d.off, d.end = 0, 0
		if d.pipeR >= 0 && l.splice {
			// The copied bytes that were waiting for a pipe are out.
			l.putBuf(d.buf)
			d.buf = nil
			d.splicing = true
		}
		// Otherwise keep d.buf: the source is likely sending a burst.
	}
}

// sync brings ep's epoll registration in line with what its directions
// need. A socket with nothing to wait for is removed from the set, so a
// level-triggered HUP cannot make the loop spin.
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
	if want == ep.interest {
		return
	}
	var e syscall.Errno
	switch {
	case ep.interest == 0:
		e = epollCtl(l.epfd, syscall.EPOLL_CTL_ADD, ep.fd, want, ep.gen)
	case want == 0:
		e = epollCtl(l.epfd, syscall.EPOLL_CTL_DEL, ep.fd, 0, 0)
	default:
		e = epollCtl(l.epfd, syscall.EPOLL_CTL_MOD, ep.fd, want, ep.gen)
	}
	if e != 0 {
		l.fail(ep, "epoll_ctl", e)
		return
	}
	ep.interest = want
}

func (l *loop) fail(ep *endpoint, call string, e syscall.Errno) {
	l.finish(ep.p, ep.side, fmt.Errorf("%s %s: %w", call, ep.name, e))
}

// finish closes both sockets (after removing them from epoll) and
// hands the result to the waiting Relay call.
func (l *loop) finish(p *pair, reason relay.Reason, err error) {
	if p.finished {
		return
	}
	p.finished = true
	for _, ep := range [2]*endpoint{&p.c, &p.u} {
		if ep.interest != 0 {
			epollCtl(l.epfd, syscall.EPOLL_CTL_DEL, ep.fd, 0, 0)
			ep.interest = 0
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
		if d.pipeR >= 0 {
			syscall.Close(d.pipeR)
			syscall.Close(d.pipeW)
			d.pipeR, d.pipeW = -1, -1
		}
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
