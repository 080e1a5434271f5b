package gateway

import (
	"errors"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The relay of established sessions, as HAProxy's event loop does it: a few OS threads, each
// waiting in epoll on the sockets of its sessions and moving bytes with read and write, with
// no goroutine per direction and no round through Go's netpoller and scheduler per message.
// A session's sockets are duplicated out of Go's net.Conn (so that Go's close of the conn
// cannot hand the descriptor number to another socket under the loop), and the loop owns the
// duplicates from then on. The serving goroutine waits for the session to end.

// evloop is one relaying thread.
type evloop struct {
	epfd         int
	wakeR, wakeW int // a pipe that wakes the thread to stop
	stopping     atomic.Bool
	exited       chan struct{}
	mu           sync.Mutex
	halves       map[int32]*half
	// waiting are spliced halves whose EOF, or bytes the program passed up, wait until the
	// peer's socket has taken every byte the kernel moved to it; spliced are the loop's
	// spliced halves, whose credit the loop raises every tick.
	waiting  []*half
	spliced  []*half
	lastTick time.Time
	passedUp *atomic.Uint64
}

// half is one direction of a session: bytes read from fd are written to peer.
type half struct {
	fd, peer int
	other    *half
	buf      []byte
	pending  []byte // read but not yet written (the peer's send buffer was full)
	eof      bool   // fd said EOF
	shut     bool   // peer was shut down for writing after fd's EOF
	sess     *evSession
	// sp is fd's splice when the session is spliced in the kernel; then what arrives on fd
	// goes to peer without the loop, which passes an EOF on only once peer has taken it all.
	// passed: the program passes fd's bytes up to the loop now (for good); upOK: the peer
	// took every byte the kernel moved, so the loop may write what it reads.
	sp           *splice
	passed, upOK bool
	waitBy       time.Time
	// mask is what fd is registered for in epoll: EPOLLIN while this half may read it,
	// EPOLLOUT while the other half has bytes to write to it. unwatched: no longer in epoll.
	mask      uint32
	unwatched bool
}

type evSession struct {
	a, b   *half
	done   chan struct{}
	closed atomic.Bool
	killed atomic.Bool // ended from elsewhere: nothing more is owed to either side
	loop   *evloop
}

// loopSet is a gateway's relaying threads: one per two cores, at most four. On two cores
// one loop moved the same sessions with less CPU than two (more sessions' events arrive in
// one epoll_wait), and with more throughput: BENCHMARKS.md.
type loopSet struct {
	loops   []*evloop
	next    atomic.Uint32
	splice  bool         // splice sessions in the kernel where it can
	spliced atomic.Int64 // sessions spliced in the kernel now
	// passedUp counts spliced directions the program handed to the loops because the
	// peer fell a window behind.
	passedUp atomic.Uint64
}

// passedUpCount is how many spliced directions were handed back to the loops.
func (ls *loopSet) passedUpCount() uint64 {
	if ls == nil {
		return 0
	}
	return ls.passedUp.Load()
}

// splicedNow is how many sessions the kernel moves the bytes of now.
func (ls *loopSet) splicedNow() int64 {
	if ls == nil {
		return 0
	}
	return ls.spliced.Load()
}

func newLoopSet(splice bool) *loopSet {
	ls := &loopSet{splice: splice}
	for range max(1, min(baseProcs/2, 4)) {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			break
		}
		var p [2]int
		if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
			syscall.Close(epfd)
			break
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p[0])}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p[0], &ev); err != nil {
			syscall.Close(epfd)
			syscall.Close(p[0])
			syscall.Close(p[1])
			break
		}
		l := &evloop{passedUp: &ls.passedUp, epfd: epfd, wakeR: p[0], wakeW: p[1], halves: map[int32]*half{}, exited: make(chan struct{})}
		ls.loops = append(ls.loops, l)
		go l.run()
	}
	return ls
}

// stop ends every session still relayed and the threads.
func (ls *loopSet) stop() {
	for _, l := range ls.loops {
		l.stopping.Store(true)
		_, _ = syscall.Write(l.wakeW, []byte{1})
		<-l.exited
	}
}

// dupFD duplicates a connection's socket as a non-blocking descriptor the loop owns.
func dupFD(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = syscall.Dup(int(s))
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// relay relays a session on an event loop, first sending first (the client's startup
// packet) to the server, until either side ends or the session is ended from elsewhere (a
// route change: session.end). It returns false, having done nothing, when the loop cannot
// take the session; the caller then sends first and relays the session itself.
func (ls *loopSet) relay(sess *session, first []byte) bool {
	if ls == nil || len(ls.loops) == 0 {
		return false
	}
	fa, err := dupFD(sess.client)
	if err != nil {
		return false
	}
	fb, err := dupFD(sess.server)
	if err != nil {
		syscall.Close(fa)
		return false
	}
	// The sockets live on in the duplicates; closing Go's descriptors takes them out of Go's
	// netpoller, which would otherwise wake on every message too.
	sess.client.Close()
	sess.server.Close()
	l := ls.loops[int(ls.next.Add(1))%len(ls.loops)]
	s := &evSession{done: make(chan struct{}), loop: l}
	s.a = &half{fd: fa, peer: fb, buf: make([]byte, 16<<10), sess: s}
	s.b = &half{fd: fb, peer: fa, buf: make([]byte, 16<<10), sess: s}
	s.a.other, s.b.other = s.b, s.a
	// Splice in the kernel when it can, before the first byte goes to the server: nothing
	// has arrived on the server's socket yet, and the client, which waits for the answer to
	// its startup packet, has sent nothing more (checked), so no byte can be left behind
	// in a socket's queue where neither the program nor the loop would see it.
	if sp, err := kernelSplicer(); err == nil && ls.splice && pendingIn(fa) == 0 {
		s.a.sp, s.b.sp = sp.pair(fa, fb)
	}
	if rest, err := writeAll(fb, first); err != nil || len(rest) > 0 {
		s.unsplice()
		syscall.Close(fa)
		syscall.Close(fb)
		return true
	}
	if s.b.sp != nil {
		s.b.sp.sent += uint64(len(first))
	}
	if l.stopping.Load() {
		s.unsplice()
		syscall.Close(fa)
		syscall.Close(fb)
		return true
	}
	spliced := s.a.sp != nil
	// Register both sockets before the loop can see the halves: an event for a socket the
	// loop does not know yet is reported again (epoll is level-triggered), and the loop never
	// changes a registration that is not there yet.
	for _, h := range []*half{s.a, s.b} {
		h.mask = syscall.EPOLLIN | syscall.EPOLLRDHUP
		if h.sp != nil {
			h.mask = syscall.EPOLLRDHUP
		}
		ev := syscall.EpollEvent{Events: h.mask, Fd: int32(h.fd)}
		if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, h.fd, &ev); err != nil {
			l.end(s)
			return true
		}
	}
	// From here on the loop owns the halves.
	l.mu.Lock()
	l.halves[int32(fa)], l.halves[int32(fb)] = s.a, s.b
	if spliced {
		l.spliced = append(l.spliced, s.a, s.b)
	}
	l.mu.Unlock()
	kill := func() {
		// A hang-up on both sockets wakes the loop, which ends the session. Under the loop's
		// lock, so that descriptors the loop already closed (and the kernel may have given
		// to another socket) are never touched.
		s.killed.Store(true)
		l.mu.Lock()
		defer l.mu.Unlock()
		if !s.closed.Load() {
			_ = syscall.Shutdown(fa, syscall.SHUT_RDWR)
			_ = syscall.Shutdown(fb, syscall.SHUT_RDWR)
		}
	}
	sess.kill.Store(&kill)
	if spliced {
		// Wake the loop, which may be waiting without a timeout: it must tick now.
		_, _ = syscall.Write(l.wakeW, []byte{1})
		ls.spliced.Add(1)
		defer ls.spliced.Add(-1)
	}
	if sess.killed.Load() {
		kill()
	}
	<-s.done
	return true
}

// pendingIn is how many bytes wait to be read on fd (-1 when unknown).
func pendingIn(fd int) int {
	n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		return -1
	}
	return n
}

// unsplice takes the session's sockets out of the kernel's tables.
func (s *evSession) unsplice() {
	for _, h := range []*half{s.a, s.b} {
		if h.sp != nil {
			splicing.s.remove(h.sp)
			h.sp = nil
		}
	}
}

var procsMu sync.Mutex

// baseProcs is GOMAXPROCS before any loop added to it: the cores the process may use.
var baseProcs = runtime.GOMAXPROCS(0)

// loopProcs is how many Ps the running loops added.
var loopProcs int

// addProcs notes d more (or fewer) running loops and sets GOMAXPROCS to the cores plus one
// P per loop. A loop spends its time in epoll_wait, a blocking system call: when it returns,
// the thread needs a P again, and with one P per core that P has usually been handed to
// another thread meanwhile, so the loop waits for one (or wakes another thread to give it
// back) once per message. With a P to spare per loop the return finds one idle. The loops
// still use at most the cores: they are threads that mostly sleep.
func addProcs(d int) {
	procsMu.Lock()
	defer procsMu.Unlock()
	loopProcs += d
	runtime.GOMAXPROCS(baseProcs + loopProcs)
}

// run is the loop.
func (l *evloop) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	addProcs(1)
	defer addProcs(-1)
	defer close(l.exited)
	events := make([]syscall.EpollEvent, 128)
	for {
		timeout := -1
		if len(l.waiting) > 0 {
			timeout = 1
		} else if l.hasSpliced() {
			timeout = int(spliceTick / time.Millisecond)
		}
		n, err := syscall.EpollWait(l.epfd, events, timeout)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return
		}
		if l.stopping.Load() {
			l.mu.Lock()
			var open []*evSession
			for _, h := range l.halves {
				open = append(open, h.sess)
			}
			l.mu.Unlock()
			for _, s := range open {
				l.end(s)
			}
			syscall.Close(l.epfd)
			syscall.Close(l.wakeR)
			syscall.Close(l.wakeW)
			return
		}
		for i := range n {
			ev := events[i]
			if ev.Fd == int32(l.wakeR) {
				var b [64]byte
				_, _ = rawRead(l.wakeR, b[:])
				continue
			}
			l.mu.Lock()
			h := l.halves[ev.Fd]
			l.mu.Unlock()
			if h == nil || h.sess.closed.Load() {
				continue
			}
			if h.eof && ev.Events&(syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
				// Nothing more to read, and the socket is shut both ways or failed: epoll
				// reports that whatever it is registered for, so stop watching it.
				if ev.Events&syscall.EPOLLERR != 0 {
					l.end(h.sess)
					continue
				}
				l.unwatch(h)
			} else if ev.Events&(syscall.EPOLLIN|syscall.EPOLLHUP|syscall.EPOLLERR|syscall.EPOLLRDHUP) != 0 {
				l.readable(h)
			}
			if ev.Events&syscall.EPOLLOUT != 0 && !h.sess.closed.Load() {
				// h.fd can take more: flush what the other direction could not write.
				l.flush(h.other)
			}
		}
		if len(l.waiting) > 0 {
			l.checkWaiting()
		}
		if now := time.Now(); now.Sub(l.lastTick) >= spliceTick {
			l.lastTick = now
			l.tick()
		}
	}
}

// passUp notes that the program passes h.fd's bytes up to the loop from now on.
func (l *evloop) passUp(h *half) {
	if !h.passed {
		h.passed = true
		l.passedUp.Add(1)
	}
}

// spliceTick is how often the loop looks at its spliced sessions to raise their credit.
const spliceTick = 10 * time.Millisecond

func (l *evloop) hasSpliced() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.spliced) > 0
}

// tick raises the credit of every spliced direction by what its peer's socket has taken,
// and turns to reading a direction the program passed up.
func (l *evloop) tick() {
	l.mu.Lock()
	keep := l.spliced[:0]
	for _, h := range l.spliced {
		if !h.sess.closed.Load() {
			keep = append(keep, h)
		}
	}
	clear(l.spliced[len(keep):])
	l.spliced = keep
	hs := slices.Clone(keep)
	l.mu.Unlock()
	for _, h := range hs {
		if h.passed || h.eof || h.sess.closed.Load() {
			continue
		}
		st := splicing.s.state(h.sp)
		if st.pass != 0 {
			l.passUp(h)
			l.rearm(h)
			continue
		}
		if st.bytes == h.sp.seen && h.sp.credit-st.bytes >= spliceWindow/2 {
			continue // nothing new, and room enough for a burst
		}
		h.sp.seen = st.bytes
		taken, ok := takenToSend(h.peer)
		if !ok || taken < h.other.sp.sent {
			continue
		}
		if c := taken - h.other.sp.sent + spliceWindow; c > h.sp.credit+spliceWindow/4 {
			splicing.s.grant(h.sp, c)
		}
	}
}

// drainTimeout bounds how long an EOF waits for the peer's socket to take what was spliced
// to it (a peer that reads nothing).
const drainTimeout = 30 * time.Second

// await holds h until its peer's socket has taken every byte the kernel moved to it.
func (l *evloop) await(h *half) {
	h.waitBy = time.Now().Add(drainTimeout)
	l.waiting = append(l.waiting, h)
}

// checkWaiting lets go of the waiting halves whose peer has taken the kernel's bytes: an
// EOF is passed on (also once drainTimeout has passed: a peer that reads nothing is not
// waited for forever), bytes passed up are written.
func (l *evloop) checkWaiting() {
	ws := l.waiting
	l.waiting = nil
	for _, h := range ws {
		switch {
		case h.sess.closed.Load():
		case h.sess.killed.Load():
			l.end(h.sess)
		case !l.drained(h) && (!h.eof || time.Now().Before(h.waitBy)):
			l.waiting = append(l.waiting, h)
		case h.eof:
			l.passEOF(h)
		default:
			h.upOK = true
			l.flush(h)
		}
	}
}

// drained says whether h's peer socket has taken every byte spliced to it from h.fd and
// every byte the loop wrote to it.
func (l *evloop) drained(h *half) bool {
	taken, ok := takenToSend(h.peer)
	return !ok || taken >= h.other.sp.sent+splicing.s.state(h.sp).bytes
}

// passEOF shuts the peer down for writing, and ends the session once both directions are
// done.
func (l *evloop) passEOF(h *half) {
	h.shut = true
	_ = syscall.Shutdown(h.peer, syscall.SHUT_WR)
	if h.other.shut {
		l.end(h.sess)
	}
}

// readable moves what h.fd has to its peer.
func (l *evloop) readable(h *half) {
	if len(h.pending) > 0 || h.eof {
		return // waiting for the peer to drain, or already at EOF
	}
	for {
		n, err := rawRead(h.fd, h.buf)
		if n > 0 {
			if h.sp != nil && !h.upOK {
				// The program passed these up, and redirects nothing from h.fd any more; they
				// follow the bytes it did redirect, so they wait until the peer took those.
				l.passUp(h)
				if !l.drained(h) {
					h.pending = append(h.pending[:0], h.buf[:n]...)
					l.rearm(h)
					l.await(h)
					return
				}
				h.upOK = true
			}
			if !l.write(h, h.buf[:n]) {
				return
			}
			if n < len(h.buf) {
				return
			}
			continue
		}
		if err == syscall.EAGAIN || err == syscall.EINTR {
			return
		}
		if err != nil {
			l.end(h.sess)
			return
		}
		// EOF: pass it on, and end the session once both directions are done. A spliced
		// half first waits until its peer's socket has taken what the kernel moved to it.
		// (A direction passed up can, in one case, read EOF before bytes the kernel parked
		// for it: when the socket's receive memory was full as they came. PostgreSQL's
		// clients and servers do not close a direction with an answer still owed, so the
		// bytes that could be lost are at most a Terminate message.)
		h.eof = true
		if h.sess.killed.Load() {
			l.end(h.sess)
			return
		}
		l.rearm(h)
		if h.sp != nil && !l.drained(h) {
			l.await(h)
			return
		}
		l.passEOF(h)
		return
	}
}

// writeAll writes p to fd until done or the socket is full; it returns what is left
// (EAGAIN) or the error that ends the session.
func writeAll(fd int, p []byte) ([]byte, error) {
	for len(p) > 0 {
		n, err := rawWrite(fd, p)
		if n > 0 {
			p = p[n:]
			continue
		}
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return p, nil
		}
		return p, err
	}
	return nil, nil
}

// write writes p to h.peer; what does not fit is kept, h.fd's reads pause and the peer is
// watched for room. It reports whether everything was written.
func (l *evloop) write(h *half, p []byte) bool {
	rest, err := writeAll(h.peer, p)
	h.wrote(len(p) - len(rest))
	switch {
	case err != nil:
		l.end(h.sess)
		return false
	case len(rest) > 0:
		h.pending = append(h.pending[:0], rest...)
		l.rearm(h)
		l.rearm(h.other)
		return false
	}
	return true
}

// flush writes h's pending bytes to h.peer, resuming h.fd's reads when done.
func (l *evloop) flush(h *half) {
	if len(h.pending) == 0 || !h.mayWrite() {
		return
	}
	rest, err := writeAll(h.peer, h.pending)
	h.wrote(len(h.pending) - len(rest))
	if err != nil {
		l.end(h.sess)
		return
	}
	if len(rest) > 0 {
		// The peer is full: wait for room (flush may come from a drain check, before the
		// peer was ever watched for it).
		h.pending = append(h.pending[:0], rest...)
		l.rearm(h)
		l.rearm(h.other)
		return
	}
	h.pending = h.pending[:0]
	l.rearm(h)
	l.rearm(h.other)
	l.readable(h)
}

// mayWrite says whether the loop may write what it read from h.fd: not before the peer took
// the bytes the kernel redirected before the program passed h.fd's up.
func (h *half) mayWrite() bool { return h.sp == nil || h.upOK }

// wrote counts n bytes the loop wrote to h.peer, for a spliced peer's drain.
func (h *half) wrote(n int) {
	if h.other.sp != nil && n > 0 {
		h.other.sp.sent += uint64(n)
	}
}

// rearm registers h.fd for what the session needs of it now: reading while h has room
// (nothing pending) and no EOF yet, writing while the other direction has bytes pending for
// it. Both halves' needs meet on one registration per socket.
func (l *evloop) rearm(h *half) {
	var want uint32
	if !h.eof {
		// A spliced socket is watched for its end only, until the program passes its bytes
		// up: the kernel signals every segment as readable, even those it redirected.
		want |= syscall.EPOLLRDHUP
		if len(h.pending) == 0 && (h.sp == nil || h.passed) {
			want |= syscall.EPOLLIN
		}
	}
	if len(h.other.pending) > 0 && h.other.mayWrite() {
		want |= syscall.EPOLLOUT
	}
	if h.unwatched || want == h.mask || h.sess.closed.Load() {
		return
	}
	h.mask = want
	ev := syscall.EpollEvent{Events: want, Fd: int32(h.fd)}
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_MOD, h.fd, &ev)
}

// unwatch takes h.fd out of epoll; the session's end or a drain check finishes it.
func (l *evloop) unwatch(h *half) {
	if !h.unwatched {
		h.unwatched = true
		_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, h.fd, nil)
	}
}

// end closes the session's descriptors and wakes its serving goroutine.
func (l *evloop) end(s *evSession) {
	l.mu.Lock()
	if !s.closed.CompareAndSwap(false, true) {
		l.mu.Unlock()
		return
	}
	delete(l.halves, int32(s.a.fd))
	delete(l.halves, int32(s.b.fd))
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, s.a.fd, nil)
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, s.b.fd, nil)
	s.unsplice()
	syscall.Close(s.a.fd)
	syscall.Close(s.b.fd)
	l.mu.Unlock()
	close(s.done)
}

// rawRead and rawWrite are system calls made without the runtime's bookkeeping for a call
// that might block: the sockets are non-blocking, so they never do.
func rawRead(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}
