package pgtypes

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"
)

// Probe connects to the PostgreSQL server at addr and asks for TLS (an SSLRequest): a server
// that answers 'S' is there and serves TLS. Nothing else is sent. The agents use it to test
// reach (at group creation, and their standbys' primaries every second), the control plane
// to probe primaries for the automatic failover policy.
func Probe(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	req := make([]byte, 8)
	binary.BigEndian.PutUint32(req[0:4], 8)
	binary.BigEndian.PutUint32(req[4:8], 80877103)
	if _, err := conn.Write(req); err != nil {
		return err
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(conn, b); err != nil {
		return fmt.Errorf("no answer to the TLS request from %s: %w", addr, err)
	}
	if b[0] != 'S' {
		return fmt.Errorf("%s does not offer TLS", addr)
	}
	return nil
}
