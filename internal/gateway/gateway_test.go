package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func sslRequest() []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b[0:4], 8)
	binary.BigEndian.PutUint32(b[4:8], codeSSLRequest)
	return b
}

// TestHoldThenRoute: while no primary holds a live lease the listener holds a new
// connection (it is neither refused nor sent anywhere); once the route names a target the
// held connection goes there.
func TestHoldThenRoute(t *testing.T) {
	// A server without TLS: it answers the SSLRequest with 'N'.
	target := serveOne(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	_, addr, setRoute := relayGateway(t, Config{}, Route{Hold: true})
	c := dialRetry(t, addr)
	defer c.Close()
	if _, err := c.Write(sslRequest()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	one := make([]byte, 1)
	if n, _ := c.Read(one); n != 0 {
		t.Fatalf("got %q while the listener should hold", one[:n])
	}
	setRoute(Route{Target: target})
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, one); err != nil || one[0] != 'N' {
		t.Fatalf("after the route named a target: read %q, %v; want the server's N", one, err)
	}
}

func startupPacket() []byte {
	body := []byte("user\x00x\x00\x00")
	b := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint32(b[0:4], uint32(8+len(body)))
	binary.BigEndian.PutUint32(b[4:8], 196608)
	return append(b, body...)
}

// TestConnectionLimits: connections held waiting for a primary, and connections in all, are
// capped per client address; the one over a cap gets SQLSTATE 53300 saying which.
func TestConnectionLimits(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{MaxConnsPerClient: 5, MaxHeldPerClient: 2}, "are waiting for a primary"},
		{Config{MaxConnsPerClient: 2, MaxHeldPerClient: 5}, "per client address"},
		{Config{MaxConnsPerClient: 5, MaxHeld: 2}, "waiting for a primary through this gateway"},
	} {
		t.Run(c.want, func(t *testing.T) { testLimit(t, c.cfg, c.want) })
	}
}

func testLimit(t *testing.T, cfg Config, want string) {
	g, addr, _ := relayGateway(t, cfg, Route{Hold: true})
	dial := func() net.Conn {
		t.Helper()
		var c net.Conn
		var err error
		for range 100 {
			if c, err = net.Dial("tcp", addr); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(startupPacket()); err != nil {
			t.Fatal(err)
		}
		return c
	}
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 2 {
		held = append(held, dial())
	}
	time.Sleep(200 * time.Millisecond)
	if s := g.Stats(); s.Held != 2 {
		t.Fatalf("held = %d, want 2", s.Held)
	}
	third := dial()
	defer third.Close()
	_ = third.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, _ := io.ReadAll(third)
	if got := string(b); !strings.Contains(got, "53300") || !strings.Contains(got, want) {
		t.Errorf("the connection over the limit got %q; want SQLSTATE 53300 and %q", got, want)
	}
	if s := g.Stats(); s.Refused != 1 || s.Held != 2 {
		t.Errorf("stats after the refusal: %+v", s)
	}
}

// TestSilentConnectionsCount: connections count against the caps from their accept, before
// they send anything. With a cap filled by a relayed session and silent connections, the
// next connection is told why (SQLSTATE 53300) as soon as it sends its startup packet; a
// silent one past the gateway's bound on connections it is telling is closed at once; and
// closing a silent connection or the relayed session frees its slot.
func TestSilentConnectionsCount(t *testing.T) { bothRelays(t, testSilentConnectionsCount) }

func testSilentConnectionsCount(t *testing.T, spliced bool) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{MaxConnsPerClient: 3}, "(3 per client address)"},
		{Config{MaxConns: 3}, "through this gateway (3)"},
	} {
		t.Run(c.want, func(t *testing.T) {
			target := serveOne(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
			c.cfg.KernelSplice = spliced
			g, addr, _ := relayGateway(t, c.cfg, Route{Target: target})
			session := openSession(t, addr)
			wantSpliced(t, g, spliced)
			// The listener accepts in the order the connections were made, so these are
			// counted before any connection dialled after them.
			silent := []net.Conn{dialRetry(t, addr), dialRetry(t, addr)}
			for _, s := range silent {
				t.Cleanup(func() { s.Close() })
			}

			over := dialRetry(t, addr)
			defer over.Close()
			start := time.Now()
			if _, err := over.Write(startupPacket()); err != nil {
				t.Fatal(err)
			}
			_ = over.SetReadDeadline(time.Now().Add(10 * time.Second))
			b, _ := io.ReadAll(over)
			if got := string(b); !strings.Contains(got, "53300") || !strings.Contains(got, c.want) {
				t.Fatalf("the connection over the cap got %q after %v; want SQLSTATE 53300 and %q", got, time.Since(start), c.want)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("the connection over the cap was answered after %v; want at once", el)
			}

			// Silent connections over the cap: maxTurningAway of them wait for a first
			// packet to be told why, the one after them is closed at once.
			waitFor(t, "connections over the cap answered", func() bool { return len(g.turningAway) == 0 })
			for range maxTurningAway {
				s := dialRetry(t, addr)
				t.Cleanup(func() { s.Close() })
			}
			last := dialRetry(t, addr)
			defer last.Close()
			if el, err := closedWithin(last, 2*time.Second); err != nil {
				t.Fatalf("a silent connection past %d being answered: %v after %v; want closed at once (the answer waits %v)", maxTurningAway, err, el, turnAwayTimeout)
			}

			// Each connection that closes frees its slot: a silent one, then the session.
			silent[0].Close()
			admitted(t, addr)
			session.Close()
			admitted(t, addr)
			if s := g.Stats(); s.Refused < 2 {
				t.Errorf("refused = %d; want at least the two connections over the cap", s.Refused)
			}
		})
	}
}

// admitted waits until a new connection is routed to the server (which answers an
// SSLRequest with 'N'), not refused by the gateway (which answers 'S' to say its error in
// TLS). The connection stays open until the test ends.
func admitted(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := dialRetry(t, addr)
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(sslRequest()); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		one := make([]byte, 1)
		if _, err := io.ReadFull(c, one); err == nil && one[0] == 'N' {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("a new connection is still refused 10 s after a slot was freed (answer %q)", one)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// closedWithin reads c until the gateway closes it, or fails after d (a read timeout).
func closedWithin(c net.Conn, d time.Duration) (time.Duration, error) {
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(d))
	b, err := io.ReadAll(c)
	if err == nil && len(b) > 0 {
		err = fmt.Errorf("got %q", b)
	}
	var ne net.Error
	if errors.As(err, &ne) && !ne.Timeout() {
		err = nil // reset by the gateway: closed too
	}
	return time.Since(start), err
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for range 1000 {
		if ok() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not after 10 s", what)
}

func cancelRequest() []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint32(b[0:4], 16)
	binary.BigEndian.PutUint32(b[4:8], codeCancelRequest)
	binary.BigEndian.PutUint32(b[8:12], 4242)
	binary.BigEndian.PutUint32(b[12:16], 0xc0ffee)
	return b
}

// cancelServer is a server for cancel requests that keeps each connection for hold after
// reading the request, and then closes it, as PostgreSQL's backend for a cancel exits; it
// reports the connections it took and the most it had open at once.
func cancelServer(t *testing.T, hold time.Duration) (addr string, stats func() (total, peak int)) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var open, total, peak int
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open++
			total++
			peak = max(peak, open)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, _ = io.ReadFull(c, make([]byte, 16))
				time.Sleep(hold)
				mu.Lock()
				open--
				mu.Unlock()
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), func() (int, int) { mu.Lock(); defer mu.Unlock(); return total, peak }
}

// TestCancelFlood: a flood of CancelRequests never has more than MaxCancels connections
// open to the server at once; every cancel is either forwarded or counted as refused.
func TestCancelFlood(t *testing.T) {
	const bound, flood = 4, 40
	target, stats := cancelServer(t, 100*time.Millisecond)
	g, addr, _ := relayGateway(t, Config{MaxCancels: bound}, Route{Target: target})
	first := dialRetry(t, addr) // the listener is up
	first.Close()
	var wg sync.WaitGroup
	for range flood {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if _, err := c.Write(cancelRequest()); err != nil {
				t.Error(err)
				return
			}
			// The gateway closes once the cancel is forwarded or dropped.
			if _, err := closedWithin(c, 20*time.Second); err != nil {
				t.Errorf("cancel connection: %v", err)
			}
		})
	}
	wg.Wait()
	total, peak := stats()
	if peak > bound {
		t.Errorf("the server had %d cancel connections open at once; want at most MaxCancels = %d", peak, bound)
	}
	if refused := g.Stats().Refused; total < bound || uint64(total)+refused != flood {
		t.Errorf("cancels forwarded %d, refused %d; want at least %d forwarded and all %d accounted for", total, refused, bound, flood)
	}
}

// TestCancelCountsAgainstCaps: a CancelRequest on a connection over a cap is not forwarded.
func TestCancelCountsAgainstCaps(t *testing.T) {
	target, stats := cancelServer(t, 0)
	_, addr, _ := relayGateway(t, Config{MaxConnsPerClient: 2}, Route{Target: target})
	for range 2 {
		s := dialRetry(t, addr)
		defer s.Close()
	}
	c := dialRetry(t, addr)
	defer c.Close()
	if _, err := c.Write(cancelRequest()); err != nil {
		t.Fatal(err)
	}
	if el, err := closedWithin(c, 5*time.Second); err != nil {
		t.Fatalf("the cancel over the cap: %v after %v; want closed", err, el)
	}
	if total, _ := stats(); total != 0 {
		t.Fatalf("the server got %d cancel connections from a client over its cap; want 0", total)
	}
}

// TestInvalidStartupLength: a first packet whose length PostgreSQL refuses (less than 8,
// or more than 4 + MAX_STARTUP_PACKET_LENGTH) is closed as soon as its length word is in,
// without an answer and without waiting for the 30 s first-packet deadline, and counted as
// refused.
func TestInvalidStartupLength(t *testing.T) {
	g, addr, _ := relayGateway(t, Config{}, Route{Hold: true})
	gss := make([]byte, 8)
	binary.BigEndian.PutUint32(gss[0:4], 8)
	binary.BigEndian.PutUint32(gss[4:8], codeGSSENCRequest)
	length := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	for _, c := range []struct {
		name string
		send []byte
		want string // what the client reads before the close
	}{
		{"length 0", length(0), ""},
		{"length 4", length(4), ""},
		{"length 7", length(7), ""},
		{"length 10005", length(10005), ""},
		{"length 20000", length(20000), ""},
		{"length 0 after a GSSENCRequest", append(gss, length(0)...), "N"},
	} {
		t.Run(c.name, func(t *testing.T) {
			refused := g.Stats().Refused
			conn := dialRetry(t, addr)
			defer conn.Close()
			if _, err := conn.Write(c.send); err != nil {
				t.Fatal(err)
			}
			if c.want != "" {
				got := make([]byte, len(c.want))
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(conn, got); err != nil || string(got) != c.want {
					t.Fatalf("read %q, %v; want %q", got, err, c.want)
				}
			}
			if el, err := closedWithin(conn, 2*time.Second); err != nil {
				t.Fatalf("%v after %v; want the connection closed at once", err, el)
			}
			if s := g.Stats(); s.Refused != refused+1 {
				t.Errorf("refused = %d; want %d", s.Refused, refused+1)
			}
		})
	}
}
