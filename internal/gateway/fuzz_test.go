package gateway

import (
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// FuzzReadPacket: the gateway's first read from a client (startup, SSLRequest, GSSENCRequest
// or cancel packet) takes any bytes without a panic, and never more than the packet claims,
// nor more than PostgreSQL takes (4 + MAX_STARTUP_PACKET_LENGTH bytes); a short packet ends
// with an error, not a hang.
func FuzzReadPacket(f *testing.F) {
	f.Add(sslRequest())
	f.Add(startupPacket())
	f.Add([]byte{0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 1, 0, 0, 0, 2}) // cancel
	f.Add([]byte{0, 0, 0, 4})
	f.Add([]byte{255, 255, 255, 255, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 0, 0x4e, 0x20})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, c := net.Pipe()
		defer a.Close()
		go func() {
			_, _ = c.Write(b)
			c.Close()
		}()
		_ = a.SetReadDeadline(time.Now().Add(2 * time.Second))
		code, pkt, err := readPacket(a)
		if err != nil {
			return
		}
		if len(b) < 8 || len(pkt) != int(binary.BigEndian.Uint32(b[:4])) || len(pkt) > 4+maxStartupPacket || code != binary.BigEndian.Uint32(b[4:8]) {
			t.Fatalf("read %d bytes, code %d from %x", len(pkt), code, b)
		}
	})
}
