package gateway

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fogdb/fog/internal/devca"
	"github.com/fogdb/fog/internal/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend answers one SSLRequest with 'N' per connection, like a server without TLS.
func backend(t *testing.T) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 8)
				if _, err := io.ReadFull(c, buf); err == nil {
					_, _ = c.Write([]byte{'N'})
				}
				_, _ = io.Copy(io.Discard, c)
			})
		}
	})
	return ln.Addr().String(), func() { ln.Close(); wg.Wait() }
}

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
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ca, err := devca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	target, stopBackend := backend(t)
	defer stopBackend()
	probe, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := probe.Addr().String()
	probe.Close()

	var mu sync.Mutex
	route := Route{Hold: true}
	src := func(context.Context) ([]Listener, error) {
		mu.Lock()
		defer mu.Unlock()
		return []Listener{{Addr: addr, Names: []string{"fg.zone.test"}, Route: route}}, nil
	}
	g := New(Config{HoldTimeout: 10 * time.Second, Resync: 10 * time.Millisecond}, st, src, ca, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()

	var c net.Conn
	for i := 0; i < 100; i++ {
		if c, err = net.Dial("tcp", addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(sslRequest()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	one := make([]byte, 1)
	if n, _ := c.Read(one); n != 0 {
		t.Fatalf("got %q while the listener should hold", one[:n])
	}
	mu.Lock()
	route = Route{Target: target}
	mu.Unlock()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, one); err != nil || one[0] != 'N' {
		t.Fatalf("after the route named a target: read %q, %v; want the server's N", one, err)
	}
}
