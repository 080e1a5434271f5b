package gateway

import (
	"encoding/binary"
	"io"
	"net"
	"strings"
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
