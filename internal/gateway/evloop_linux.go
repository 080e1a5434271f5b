package gateway

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
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
}

// half is one direction of a session: bytes read from fd are written to peer.
type half struct {
	fd, peer int
	other    *half
	buf      []byte
	pending  []byte // read but not yet written (the peer's send buffer was full)
	eof      bool   // fd said EOF; peer was shut down for writing
	sess     *evSession
}

type evSession struct {
	a, b   *half
	done   chan struct{}
	closed atomic.Bool
	loop   *evloop
}

// loopSet is a gateway's relaying threads, one per core (at most four).
type loopSet struct {
	loops []*evloop
	next  atomic.Uint32
}

func newLoopSet() *loopSet {
	ls := &loopSet{}
	for range max(1, min(baseProcs, 4)) {
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
		l := &evloop{epfd: epfd, wakeR: p[0], wakeW: p[1], halves: map[int32]*half{}, exited: make(chan struct{})}
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

// relayLoop relays a session on an event loop until either side ends or the session is
// ended from elsewhere (a route change: session.end); it returns false, having done nothing,
// when the loop cannot take the session, and the caller relays it itself.
func (ls *loopSet) relay(sess *session) bool {
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
	if l.stopping.Load() {
		syscall.Close(fa)
		syscall.Close(fb)
		return true
	}
	s := &evSession{done: make(chan struct{}), loop: l}
	s.a = &half{fd: fa, peer: fb, buf: make([]byte, 16<<10), sess: s}
	s.b = &half{fd: fb, peer: fa, buf: make([]byte, 16<<10), sess: s}
	s.a.other, s.b.other = s.b, s.a
	l.mu.Lock()
	l.halves[int32(fa)], l.halves[int32(fb)] = s.a, s.b
	l.mu.Unlock()
	kill := func() {
		// A hang-up on both sockets wakes the loop, which ends the session. Under the loop's
		// lock, so that descriptors the loop already closed (and the kernel may have given
		// to another socket) are never touched.
		l.mu.Lock()
		defer l.mu.Unlock()
		if !s.closed.Load() {
			_ = syscall.Shutdown(fa, syscall.SHUT_RDWR)
			_ = syscall.Shutdown(fb, syscall.SHUT_RDWR)
		}
	}
	sess.kill.Store(&kill)
	for _, fd := range []int{fa, fb} {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
		if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			l.end(s)
			return true
		}
	}
	if sess.killed.Load() {
		kill()
	}
	<-s.done
	return true
}

var procsMu sync.Mutex

// baseProcs is GOMAXPROCS before any loop added to it: the cores the process may use.
var baseProcs = runtime.GOMAXPROCS(0)

// loopProcs is how many Ps the running loops added; extraProcs whether they add them.
var (
	loopProcs  int
	extraProcs = true
)

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
	setProcsLocked()
}

func setProcsLocked() {
	n := baseProcs
	if extraProcs {
		n += loopProcs
	}
	runtime.GOMAXPROCS(n)
}

// SetExtraProcs turns the loops' extra Ps on (the default) or off, for the benchmark that
// compares the two.
func SetExtraProcs(on bool) {
	procsMu.Lock()
	defer procsMu.Unlock()
	extraProcs = on
	setProcsLocked()
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
		n, err := syscall.EpollWait(l.epfd, events, -1)
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
				continue
			}
			l.mu.Lock()
			h := l.halves[ev.Fd]
			l.mu.Unlock()
			if h == nil || h.sess.closed.Load() {
				continue
			}
			if ev.Events&(syscall.EPOLLIN|syscall.EPOLLHUP|syscall.EPOLLERR|syscall.EPOLLRDHUP) != 0 {
				l.readable(h)
			}
			if ev.Events&syscall.EPOLLOUT != 0 && !h.sess.closed.Load() {
				// h.fd can take more: flush what the other direction could not write.
				l.flush(h.other)
			}
		}
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
		// EOF: pass it on, and end the session once both directions are done.
		h.eof = true
		_ = syscall.Shutdown(h.peer, syscall.SHUT_WR)
		if h.other.eof {
			l.end(h.sess)
		} else {
			l.modify(h.fd, 0)
		}
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
	switch {
	case err != nil:
		l.end(h.sess)
		return false
	case len(rest) > 0:
		h.pending = append(h.pending[:0], rest...)
		l.modify(h.fd, 0)
		l.modify(h.peer, syscall.EPOLLIN|syscall.EPOLLOUT)
		return false
	}
	return true
}

// flush writes h's pending bytes to h.peer, resuming h.fd's reads when done.
func (l *evloop) flush(h *half) {
	if len(h.pending) == 0 {
		return
	}
	rest, err := writeAll(h.peer, h.pending)
	if err != nil {
		l.end(h.sess)
		return
	}
	if len(rest) > 0 {
		h.pending = append(h.pending[:0], rest...)
		return
	}
	h.pending = h.pending[:0]
	in := uint32(syscall.EPOLLIN | syscall.EPOLLRDHUP)
	if h.other.eof {
		in = 0
	}
	l.modify(h.peer, in)
	l.modify(h.fd, syscall.EPOLLIN|syscall.EPOLLRDHUP)
	l.readable(h)
}

func (l *evloop) modify(fd int, events uint32) {
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd)}
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_MOD, fd, &ev)
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
