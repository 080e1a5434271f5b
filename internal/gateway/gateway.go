// Package gateway serves the failover-group listeners: PostgreSQL-protocol endpoints that
// route each new connection to the right instance (the read-write listener to the primary of
// the group's current epoch, the read-only listener to the secondary) and hold new
// connections while a failover switches the primary.
//
// TLS is end to end: the gateway answers the client's SSLRequest by passing it to the chosen
// server and then relays bytes, so SCRAM (with channel binding) and the server certificate,
// which names the listeners, work unchanged. The gateway only reads the first packet.
package gateway

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fogdb/fog/internal/store"
)

// Protocol codes of the first packet (PostgreSQL's protocol.html, "Message Formats").
const (
	codeSSLRequest    = 80877103
	codeGSSENCRequest = 80877104
	codeCancelRequest = 80877102
)

// Route is where a listener sends new connections.
type Route struct {
	// Target is host:port of the server; empty with Hold or Refuse.
	Target string
	// Hold makes new connections wait (a failover is switching the primary).
	Hold bool
	// Refuse is the error new connections get.
	Refuse string
	// Fallback is tried when Target does not accept the connection (the read-only listener
	// with readOnlyEndpoint.failoverPolicy Enabled falls back to the primary).
	Fallback string
}

// Listener is one listener the gateway should serve.
type Listener struct {
	Addr  string
	Names []string // DNS names, for the gateway's own certificate
	Route Route
}

// Source computes the listeners and their routes from the store.
type Source func(ctx context.Context) ([]Listener, error)

// Issuer signs server certificates.
type Issuer interface {
	Issue(dnsNames []string, ips []net.IP) (certPEM, keyPEM []byte, err error)
}

// A cancel request costs the server a process: PostgreSQL forks a backend for each
// connection and only then reads its first packet (ProcessStartupPacket, in
// src/backend/tcop/backend_startup.c; postmaster.c before PostgreSQL 17), so a flood of
// cancels forwarded one for one would be a flood of forks. The gateway forwards at most
// MaxCancels at once, each within cancelTimeout (dial, write and the server's close); a
// cancel that finds no slot within cancelTimeout is dropped, which a client must expect
// anyway: a cancel "might or might not have any effect" (protocol.html, "Canceling
// Requests in Progress").
const cancelTimeout = 2 * time.Second

// firstPacketTimeout bounds the wait for a client's first packet (PostgreSQL's
// authentication_timeout, 60 s by default, covers this and authentication).
const firstPacketTimeout = 30 * time.Second

// A connection over a cap is still told why, as PostgreSQL tells one over max_connections:
// its dead-end backend reads the startup packet and then answers "sorry, too many clients
// already" (ProcessStartupPacket in postmaster.c up to PostgreSQL 16), and poolers and
// drivers show the reason. That takes a goroutine and a read of the first packet, so at most
// maxTurningAway connections are answered at once, each given turnAwayTimeout to send its
// first packet; beyond that a connection over a cap is closed as soon as it is accepted.
const (
	maxTurningAway  = 64
	turnAwayTimeout = 5 * time.Second
)

// Gateway serves listeners.
type Gateway struct {
	cfg    Config
	st     store.Store
	source Source
	ca     Issuer
	log    *slog.Logger
	// loops relay established sessions (nil: the goroutine relay).
	loops atomic.Pointer[loopSet]

	mu        sync.Mutex
	listeners map[string]*listener

	active, held              atomic.Int64
	connections, refusedCount atomic.Uint64

	// per client address: connections open and held (under mu)
	perClient map[string]*clientCount
	open      int

	// cancels holds a token per cancel request being forwarded; turningAway one per
	// connection over a cap being told why.
	cancels, turningAway chan struct{}
}

type clientCount struct{ conns, held int }

// admit counts a new connection from addr, or says which limit it would pass.
func (g *Gateway) admit(addr string, held bool) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perClient == nil {
		g.perClient = map[string]*clientCount{}
	}
	c := g.perClient[addr]
	if c == nil {
		c = &clientCount{}
		g.perClient[addr] = c
	}
	if held {
		switch {
		case g.held.Load() >= int64(g.cfg.MaxHeld):
			return fmt.Sprintf("too many connections are waiting for a primary through this gateway (%d); retry when the failover has finished", g.cfg.MaxHeld)
		case c.held >= g.cfg.MaxHeldPerClient:
			return fmt.Sprintf("too many connections from %s are waiting for a primary (%d); retry when the failover has finished", addr, g.cfg.MaxHeldPerClient)
		}
		c.held++
		g.held.Add(1)
		return ""
	}
	switch {
	case g.open >= g.cfg.MaxConns:
		return fmt.Sprintf("too many connections through this gateway (%d); close idle ones or use a connection pool", g.cfg.MaxConns)
	case c.conns >= g.cfg.MaxConnsPerClient:
		return fmt.Sprintf("too many connections from %s through this gateway (%d per client address); close idle ones or use a connection pool", addr, g.cfg.MaxConnsPerClient)
	}
	c.conns++
	g.open++
	return ""
}

// release undoes admit.
func (g *Gateway) release(addr string, held bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.perClient[addr]
	if c == nil {
		return
	}
	if held {
		c.held--
		g.held.Add(-1)
	} else {
		c.conns--
		g.open--
	}
	if c.conns == 0 && c.held == 0 {
		delete(g.perClient, addr)
	}
}

// Stats are the gateway's connection counts: sessions relaying now, connections waiting for
// a route or a server now, and totals of connections taken (every accepted connection) and
// refused (over a cap, no route or server, a first packet of an invalid length, a cancel
// request not forwarded).
type Stats struct {
	Active, Held         int64
	Connections, Refused uint64
	// Spliced are the active sessions whose bytes the kernel moves (a BPF sockmap);
	// PassedUp counts the directions of such sessions handed back to the relay's loop
	// because the receiving side fell a window behind.
	Spliced  int64
	PassedUp uint64
}

// Stats returns the gateway's connection counts.
func (g *Gateway) Stats() Stats {
	return Stats{Active: g.active.Load(), Held: g.held.Load(), Connections: g.connections.Load(), Refused: g.refusedCount.Load(), Spliced: g.loops.Load().splicedNow(), PassedUp: g.loops.Load().passedUpCount()}
}

// New returns a gateway.
func New(cfg Config, st store.Store, source Source, ca Issuer, log *slog.Logger) *Gateway {
	_ = cfg.Validate() // fills defaults; it finds nothing to refuse
	return &Gateway{cfg: cfg, st: st, source: source, ca: ca, log: log, listeners: map[string]*listener{},
		cancels: make(chan struct{}, cfg.MaxCancels), turningAway: make(chan struct{}, maxTurningAway)}
}

// Run serves until ctx ends and every connection has been closed.
func (g *Gateway) Run(ctx context.Context) error {
	loops := newLoopSet(g.cfg.KernelSplice)
	g.loops.Store(loops)
	defer loops.stop()
	if ok, why := KernelSplice(); !g.cfg.KernelSplice {
		g.log.Info("listeners relay established sessions in user space")
	} else if ok {
		g.log.Warn("listeners splice established sessions in the kernel (BPF sockmap): a retransmitted segment that overlaps bytes already received reaches the other side twice")
	} else {
		g.log.Info("listeners relay established sessions in user space", "kernelSplice", why)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan struct{}, 1)
	for _, p := range g.cfg.WatchPrefixes {
		ch := g.st.Watch(wctx, p)
		wg.Go(func() {
			for range ch {
				select {
				case events <- struct{}{}:
				default:
				}
			}
		})
	}
	tick := time.NewTicker(g.cfg.Resync)
	defer tick.Stop()
	for {
		g.sync(ctx, &wg)
		select {
		case <-ctx.Done():
			g.mu.Lock()
			for _, l := range g.listeners {
				l.close()
			}
			g.mu.Unlock()
			return nil
		case <-events:
		case <-tick.C:
		}
	}
}

// Routes returns the current route of every listener (for tests and status).
func (g *Gateway) Routes() map[string]Route {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[string]Route{}
	for a, l := range g.listeners {
		out[a] = l.current()
	}
	return out
}

func (g *Gateway) sync(ctx context.Context, wg *sync.WaitGroup) {
	want, err := g.source(ctx)
	if err != nil {
		if ctx.Err() == nil {
			g.log.Error("compute listener routes", "err", err)
		}
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := map[string]bool{}
	for _, w := range want {
		seen[w.Addr] = true
		l, ok := g.listeners[w.Addr]
		if !ok {
			var err error
			l, err = g.listen(w)
			if err != nil {
				g.log.Error("open listener", "addr", w.Addr, "err", err)
				continue
			}
			g.listeners[w.Addr] = l
			wg.Go(func() { l.accept(ctx, wg) })
		}
		l.setRoute(w.Route)
	}
	for a, l := range g.listeners {
		if !seen[a] {
			l.close()
			delete(g.listeners, a)
		}
	}
}

func (g *Gateway) listen(w Listener) (*listener, error) {
	host, _, _ := net.SplitHostPort(w.Addr)
	crt, key, err := g.ca.Issue(w.Names, []net.IP{net.ParseIP(host)})
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", w.Addr)
	if err != nil {
		return nil, err
	}
	g.log.Info("listener open", "addr", w.Addr, "names", w.Names)
	return &listener{g: g, addr: w.Addr, ln: ln, changed: make(chan struct{}), conns: map[*session]bool{},
		tlsConf: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}, nil
}

type listener struct {
	g       *Gateway
	addr    string
	ln      net.Listener
	tlsConf *tls.Config

	mu      sync.Mutex
	route   Route
	changed chan struct{} // closed and replaced on every route change
	conns   map[*session]bool
	closed  bool
}

type session struct {
	client, server net.Conn
	target         string
	// kill ends a session an event loop relays; killed records that end was called.
	kill   atomic.Pointer[func()]
	killed atomic.Bool
}

// end ends the session: its connections, and its relay on an event loop.
func (s *session) end() {
	s.killed.Store(true)
	s.client.Close()
	if s.server != nil {
		s.server.Close()
	}
	if k := s.kill.Load(); k != nil {
		(*k)()
	}
}

func (l *listener) current() Route {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.route
}

// setRoute changes the route. Sessions to a server that is no longer the target are closed:
// after a failover nobody may keep writing to the old primary through the listener.
func (l *listener) setRoute(r Route) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r == l.route {
		return
	}
	if r.Target != l.route.Target || r.Fallback != l.route.Fallback {
		for s := range l.conns {
			if s.target != r.Target && s.target != r.Fallback {
				s.end()
			}
		}
	}
	l.g.log.Debug("route", "listener", l.addr, "target", r.Target, "hold", r.Hold, "refuse", r.Refuse)
	l.route = r
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *listener) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	l.ln.Close()
	for s := range l.conns {
		s.end()
	}
}

// accept counts every connection against the caps as it is accepted: one counted only once
// its first packet arrived would let a client hold any number of silent connections (each
// with a goroutine and a descriptor) for the first packet's timeout.
func (l *listener) accept(ctx context.Context, wg *sync.WaitGroup) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.g.connections.Add(1)
		addr, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
		if why := l.g.admit(addr, false); why != "" {
			select {
			case l.g.turningAway <- struct{}{}:
				wg.Go(func() {
					defer func() { <-l.g.turningAway }()
					l.turnAway(ctx, conn, why)
				})
			default:
				l.g.refusedCount.Add(1)
				conn.Close()
			}
			continue
		}
		wg.Go(func() {
			defer l.g.release(addr, false)
			l.serve(ctx, conn, addr)
		})
	}
}

// turnAway answers a connection over a cap with SQLSTATE 53300 (too_many_connections)
// once it has sent its first packet, which says whether the answer goes inside TLS. A
// cancel request gets no answer, as from PostgreSQL, and is not forwarded.
func (l *listener) turnAway(ctx context.Context, client net.Conn, why string) {
	defer client.Close()
	stop := context.AfterFunc(ctx, func() { client.Close() })
	defer stop()
	_ = client.SetReadDeadline(time.Now().Add(turnAwayTimeout))
	code, _, err := readFirst(client)
	if err != nil || code == codeCancelRequest {
		l.g.refusedCount.Add(1)
		return
	}
	l.refuseWith(client, code, "53300", why)
}

// waitRoute returns the route for a new connection, waiting while it holds.
func (l *listener) waitRoute(ctx context.Context) (Route, error) {
	deadline := time.NewTimer(l.g.cfg.HoldTimeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		r, ch := l.route, l.changed
		l.mu.Unlock()
		if !r.Hold {
			return r, nil
		}
		select {
		case <-ch:
		case <-deadline.C:
			return r, fmt.Errorf("no primary after waiting %s for the failover to finish; retry", l.g.cfg.HoldTimeout)
		case <-ctx.Done():
			return r, ctx.Err()
		}
	}
}

// maxStartupPacket is PostgreSQL's MAX_STARTUP_PACKET_LENGTH (src/include/libpq/pqcomm.h):
// the most bytes of a first packet after its length word.
const maxStartupPacket = 10000

// errPacketLength is a first packet whose length PostgreSQL refuses.
var errPacketLength = errors.New("gateway: invalid length of startup packet")

// readPacket reads a first packet (a startup packet, SSLRequest, GSSENCRequest or
// CancelRequest). Its length is checked as soon as the length word is in, as
// ProcessStartupPacket does (src/backend/tcop/backend_startup.c; postmaster.c before
// PostgreSQL 17): the length counts itself and must leave room for the 4-byte code, and at
// most MAX_STARTUP_PACKET_LENGTH bytes may follow it. Waiting for the rest of a packet that
// cannot be valid would hold the connection until the read deadline.
func readPacket(c net.Conn) (uint32, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 8 || n > 4+maxStartupPacket {
		return 0, nil, fmt.Errorf("%w: %d", errPacketLength, n)
	}
	pkt := make([]byte, n)
	copy(pkt, hdr[:])
	if _, err := io.ReadFull(c, pkt[4:]); err != nil {
		return 0, nil, err
	}
	return binary.BigEndian.Uint32(pkt[4:8]), pkt, nil
}

// readFirst reads the client's first packet, answering a GSSENCRequest with 'N' (the
// gateway cannot pass GSSAPI encryption through) and reading the packet that follows it.
func readFirst(c net.Conn) (uint32, []byte, error) {
	code, pkt, err := readPacket(c)
	if err != nil || code != codeGSSENCRequest {
		return code, pkt, err
	}
	if _, err := c.Write([]byte{'N'}); err != nil {
		return 0, nil, err
	}
	return readPacket(c)
}

// serve serves a connection from addr, already counted against the caps.
func (l *listener) serve(ctx context.Context, client net.Conn, addr string) {
	defer client.Close()
	_ = client.SetReadDeadline(time.Now().Add(firstPacketTimeout))
	stop := context.AfterFunc(ctx, func() { client.Close() })
	code, pkt, err := readFirst(client)
	stop()
	if err != nil {
		if errors.Is(err, errPacketLength) {
			// Closed without an answer: PostgreSQL only logs "invalid length of startup
			// packet" (a COMMERROR, which goes to the server's log and not the client).
			l.g.refusedCount.Add(1)
		}
		return
	}
	_ = client.SetReadDeadline(time.Time{})
	if code == codeCancelRequest {
		l.forwardCancel(ctx, pkt)
		return
	}
	if why := l.g.admit(addr, true); why != "" {
		l.refuseWith(client, code, "53300", why)
		return
	}
	server, target, err := l.dial(ctx)
	l.g.release(addr, true)
	if err != nil {
		l.refuse(client, code, err.Error())
		return
	}
	s := &session{client: client, server: server, target: target}
	if !l.track(s, true) {
		server.Close()
		return
	}
	defer l.track(s, false)
	defer server.Close()
	l.g.active.Add(1)
	defer l.g.active.Add(-1)
	if !l.g.loops.Load().relay(s, pkt) {
		if _, err := server.Write(pkt); err != nil {
			return
		}
		relay(client, server)
	}
}

// forwardCancel passes a CancelRequest to the server the listener routes to now: the
// session it cancels is on that server unless a failover closed it. The client gets no
// answer either way, as from PostgreSQL.
func (l *listener) forwardCancel(ctx context.Context, pkt []byte) {
	r := l.current()
	if r.Target == "" {
		return
	}
	wait := time.NewTimer(cancelTimeout)
	defer wait.Stop()
	select {
	case l.g.cancels <- struct{}{}:
		defer func() { <-l.g.cancels }()
	case <-wait.C:
		l.g.refusedCount.Add(1)
		return
	case <-ctx.Done():
		return
	}
	deadline := time.Now().Add(cancelTimeout)
	d := net.Dialer{Deadline: deadline}
	s, err := d.DialContext(ctx, "tcp", r.Target)
	if err != nil {
		return
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	_ = s.SetDeadline(deadline)
	if _, err := s.Write(pkt); err != nil {
		return
	}
	// The slot is held until the server closes: its backend reads the request, signals the
	// session's backend and exits, so the bound is on the server's processes for cancels,
	// not just on the gateway's dials.
	_, _ = io.Copy(io.Discard, s)
}

// dial connects a new session to the route's server. A server that does not accept the
// connection (its primary was fenced, and the failover that replaces it has not reached
// the listener yet) is tried again on every route change and every 200 ms, until the hold
// timeout: a client waits for the failover, as during a switch, rather than fail at once.
func (l *listener) dial(ctx context.Context) (net.Conn, string, error) {
	deadline := time.Now().Add(l.g.cfg.HoldTimeout)
	for {
		r, err := l.waitRoute(ctx)
		if err == nil && r.Refuse != "" {
			err = errors.New(r.Refuse)
		}
		if err != nil {
			return nil, "", err
		}
		l.mu.Lock()
		changed := l.changed
		l.mu.Unlock()
		target := r.Target
		server, err := net.DialTimeout("tcp", target, 5*time.Second)
		if err != nil && r.Fallback != "" {
			target = r.Fallback
			server, err = net.DialTimeout("tcp", target, 5*time.Second)
		}
		if err == nil {
			return server, target, nil
		}
		if time.Now().After(deadline) {
			return nil, "", fmt.Errorf("the server behind this listener (%s) is not reachable: %v", target, err)
		}
		select {
		case <-changed:
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return nil, "", ctx.Err()
		}
	}
}

// track adds or removes a session; adding fails when the route moved on meanwhile.
func (l *listener) track(s *session, add bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !add {
		delete(l.conns, s)
		return true
	}
	if l.closed || (l.route.Target != s.target && l.route.Fallback != s.target) {
		return false
	}
	l.conns[s] = true
	return true
}

func relay(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		// A plain read/write loop: the protocol's messages are small and latency-bound, and
		// io.Copy's splice path costs two more system calls per message through a pipe.
		buf := make([]byte, 32<<10)
		_, _ = io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	a.Close()
	b.Close()
	<-done
}

// refuse tells the client why it cannot connect, as a FATAL ErrorResponse with SQLSTATE
// 57P03 (cannot_connect_now), which poolers and drivers treat as retryable. A client that
// asked for TLS gets the error inside TLS with the gateway's own certificate, because pgx and
// others report only "server refused TLS" for an error answer to SSLRequest.
func (l *listener) refuse(client net.Conn, code uint32, msg string) {
	l.refuseWith(client, code, "57P03", msg)
}

// refuseWith answers with a FATAL error of the given SQLSTATE.
func (l *listener) refuseWith(client net.Conn, code uint32, sqlstate, msg string) {
	l.g.refusedCount.Add(1)
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	var w io.Writer = client
	if code == codeSSLRequest {
		if _, err := client.Write([]byte{'S'}); err != nil {
			return
		}
		tc := tls.Server(client, l.tlsConf)
		if err := tc.Handshake(); err != nil {
			return
		}
		if _, _, err := readPacket(tc); err != nil {
			return
		}
		w = tc
		defer tc.Close()
	}
	_, _ = w.Write(errorResponse(sqlstate, msg))
}

func errorResponse(sqlstate, msg string) []byte {
	body := []byte{}
	for _, f := range []struct {
		t byte
		v string
	}{{'S', "FATAL"}, {'V', "FATAL"}, {'C', sqlstate}, {'M', msg}} {
		body = append(body, f.t)
		body = append(body, f.v...)
		body = append(body, 0)
	}
	body = append(body, 0)
	out := []byte{'E', 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(len(body)+4))
	return append(out, body...)
}

// Addr joins host and port.
func Addr(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
