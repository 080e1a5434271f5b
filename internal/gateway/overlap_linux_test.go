package gateway

import (
	"encoding/binary"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tcpSeqs reads a connected socket's next sequence numbers to send and to receive (TCP_REPAIR,
// which needs CAP_NET_ADMIN), and the timestamp it would send now.
func tcpSeqs(t *testing.T, c net.Conn) (snd, rcv, tsval uint32) {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	_ = rc.Control(func(s uintptr) {
		fd := int(s)
		if serr = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, 1); serr != nil {
			return
		}
		defer unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF_NO_WP)
		var v int
		if serr = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, 2); serr != nil {
			return
		}
		if v, serr = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ); serr != nil {
			return
		}
		snd = uint32(v)
		if serr = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, 1); serr != nil {
			return
		}
		if v, serr = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ); serr != nil {
			return
		}
		rcv = uint32(v)
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, 0)
		if v, serr = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_TIMESTAMP); serr != nil {
			return
		}
		tsval = uint32(v)
	})
	if serr != nil {
		t.Skipf("TCP_REPAIR: %v", serr)
	}
	return snd, rcv, tsval
}

func csum16(b []byte, sum uint32) uint32 {
	for len(b) > 1 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

// injectSegment sends a TCP segment from src to dst (IPv4 loopback addresses) carrying
// payload at seq, as the sender of src would.
func injectSegment(t *testing.T, src, dst *net.TCPAddr, seq, ack, tsval uint32, payload []byte) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		t.Skipf("raw socket: %v", err)
	}
	defer unix.Close(fd)
	tcp := make([]byte, 32+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], uint16(src.Port))
	binary.BigEndian.PutUint16(tcp[2:], uint16(dst.Port))
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], ack)
	tcp[12] = 8 << 4 // 32-byte header
	tcp[13] = 0x18   // PSH, ACK
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	copy(tcp[20:], []byte{1, 1, 8, 10})
	binary.BigEndian.PutUint32(tcp[24:], tsval)
	binary.BigEndian.PutUint32(tcp[28:], 0)
	copy(tcp[32:], payload)
	pseudo := make([]byte, 12)
	copy(pseudo[0:], src.IP.To4())
	copy(pseudo[4:], dst.IP.To4())
	pseudo[9] = unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(tcp)))
	sum := csum16(tcp, csum16(pseudo, 0))
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(tcp[16:], ^uint16(sum))
	ip := make([]byte, 20+len(tcp))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[6] = 0x40 // DF
	ip[8] = 64
	ip[9] = unix.IPPROTO_TCP
	copy(ip[12:], src.IP.To4())
	copy(ip[16:], dst.IP.To4())
	copy(ip[20:], tcp)
	var to unix.SockaddrInet4
	copy(to.Addr[:], dst.IP.To4())
	if err := unix.Sendto(fd, ip, 0, &to); err != nil {
		t.Fatalf("inject: %v", err)
	}
}

// TestRelayOverlappingRetransmission: a retransmitted segment that starts before what the
// relay's socket already received and ends after it (TCP queues such a segment whole, and
// its reader skips the old part by sequence number) brings each byte to the server once.
// The relay in user space, the default, does; the kernel's splice hands its program the
// whole segment and sends the old part again, which is why it is off unless asked for: the
// spliced case only says what this kernel does.
func TestRelayOverlappingRetransmission(t *testing.T) {
	bothRelays(t, func(t *testing.T, spliced bool) {
		got, want := overlappingRetransmission(t, spliced)
		i := firstDiff(got[:min(len(got), len(want))], want[:min(len(got), len(want))])
		switch {
		case i < 0 && len(got) == len(want):
			if spliced {
				t.Log("this kernel's splice delivered an overlapping retransmission once")
			}
		case spliced:
			t.Logf("this kernel's splice delivered %d bytes for %d sent (first wrong at %d): the reason Config.KernelSplice is off by default", len(got), len(want), i)
		default:
			t.Fatalf("the server got %d bytes for %d sent; first wrong at %d", len(got), len(want), i)
		}
	})
}

// overlappingRetransmission sends bytes through a session, then a segment as the client's
// TCP would retransmit it, overlapping the last bytes sent and carrying new ones, then the
// rest of the stream; it returns what the server read and what was sent.
func overlappingRetransmission(t *testing.T, spliced bool) (got, want []byte) {
	const first, old, fresh, rest = 4096, 1000, 100, 4096
	read := make(chan []byte, 1)
	target := serveOne(t, func(c net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, first+fresh+rest+old)
		n, _ := io.ReadAtLeast(c, b, first+fresh+rest)
		// Anything more that comes within a moment is a duplicate.
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		m, _ := io.ReadAtLeast(c, b[n:], 1)
		read <- b[:n+m]
	})
	g, addr, _ := relayGateway(t, Config{KernelSplice: spliced}, Route{Target: target})
	c := openSession(t, addr)
	wantSpliced(t, g, spliced)
	stream := make([]byte, first+fresh+rest)
	fillStream(7, 0, stream)
	if _, err := c.Write(stream[:first]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // delivered and acknowledged
	snd, rcv, ts := tcpSeqs(t, c)
	injectSegment(t, c.LocalAddr().(*net.TCPAddr), c.RemoteAddr().(*net.TCPAddr), snd-old, rcv, ts, stream[first-old:first+fresh])
	time.Sleep(100 * time.Millisecond)
	// The client's TCP sends the new bytes again itself (the relay's socket drops them as
	// old), and the rest.
	if _, err := c.Write(stream[first:]); err != nil {
		t.Fatal(err)
	}
	return <-read, stream
}
