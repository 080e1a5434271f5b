package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestListenerLargeTransfers: results and uploads far larger than the relay's buffers and the
// sockets' send buffers cross the listener whole, in both directions (the event loop's
// partial writes and pauses), on several sessions at once.
func TestListenerLargeTransfers(t *testing.T) {
	f := startFog(t, "")
	p := newPair(t, f, "big")
	p.create(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	errs := make(chan error, 3)
	for i := range 3 {
		go func() {
			c, err := p.listenerConn(ctx, p.rw, "postgres", p.rwFQDN)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(ctx)
			var n int
			if err := c.QueryRow(ctx, "SELECT length(repeat(md5('x'), 1000000) || $1::text)", strings.Repeat("y", 8<<20+i)).Scan(&n); err != nil {
				errs <- err
				return
			}
			if n != 32000000+8<<20+i {
				errs <- &mismatch{n}
				return
			}
			var s string
			if err := c.QueryRow(ctx, "SELECT repeat('z', 24000000)").Scan(&s); err != nil {
				errs <- err
				return
			}
			if len(s) != 24000000 || strings.Trim(s, "z") != "" {
				errs <- &mismatch{len(s)}
				return
			}
			errs <- nil
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

type mismatch struct{ n int }

func (m *mismatch) Error() string { return fmt.Sprintf("wrong length through the listener: %d", m.n) }
