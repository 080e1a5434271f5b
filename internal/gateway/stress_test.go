package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The relay stress test: several sessions at once, each streaming a verifiable pattern both
// ways at the same time through slow, pausing readers with small socket buffers, so that the
// kernel's splice runs out of credit and hands directions to the loop in the middle of the
// stream, with bytes still queued on both sides. Every byte is checked where it arrives: a
// byte dropped, duplicated or reordered is reported with its offset and where in the stream
// the bytes that arrived there came from.

// streamWord is the 8 bytes at offset 8k of the stream seeded with seed (splitmix64).
func streamWord(seed uint64, k uint64) uint64 {
	z := seed*0x9e3779b97f4a7c15 + k + 1
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// fillStream puts the stream's bytes from offset off into p.
func fillStream(seed uint64, off int64, p []byte) {
	var w [8]byte
	for len(p) > 0 {
		k := uint64(off) / 8
		binary.LittleEndian.PutUint64(w[:], streamWord(seed, k))
		n := copy(p, w[off%8:])
		p = p[n:]
		off += int64(n)
	}
}

// stressPace is a reader's or writer's randomness: chunk sizes and pauses.
type stressPace struct {
	rnd      *rand.Rand
	maxChunk int
	pause    float64 // probability of a pause before a chunk
	maxPause time.Duration
	// long is the probability of a long pause (up to longPause): long enough for the
	// kernel's splice to run out of credit.
	long      float64
	longPause time.Duration
}

// chunk is the size of the next write or read: as often small (a TLS record's header or a
// short message) as large, so that segments of all sizes cross the relay.
func (p *stressPace) chunk() int {
	if p.rnd.IntN(2) == 0 {
		return 1 + p.rnd.IntN(min(p.maxChunk, 4<<10))
	}
	return 1 + p.rnd.IntN(p.maxChunk)
}

func (p *stressPace) maybePause() {
	switch x := p.rnd.Float64(); {
	case x < p.long:
		time.Sleep(time.Duration(p.rnd.Int64N(int64(p.longPause))))
	case x < p.long+p.pause:
		time.Sleep(time.Duration(p.rnd.Int64N(int64(p.maxPause))))
	}
}

// writeStream writes size bytes of the stream in chunks of random sizes, pausing now and then.
func writeStream(c net.Conn, seed uint64, size int64, pace *stressPace) error {
	buf := make([]byte, pace.maxChunk)
	for off := int64(0); off < size; {
		pace.maybePause()
		n := int64(pace.chunk())
		n = min(n, size-off)
		fillStream(seed, off, buf[:n])
		if _, err := c.Write(buf[:n]); err != nil {
			return fmt.Errorf("writing at offset %d: %w", off, err)
		}
		off += n
	}
	return nil
}

// readStream reads size bytes of the stream, checking each where it arrives; it stops at the
// first wrong byte and says where the bytes found there came from.
func readStream(c net.Conn, seed uint64, size int64, pace *stressPace) error {
	buf := make([]byte, pace.maxChunk)
	want := make([]byte, pace.maxChunk)
	for off := int64(0); off < size; {
		pace.maybePause()
		n := min(int64(pace.chunk()), size-off)
		k, err := c.Read(buf[:n])
		if k > 0 {
			fillStream(seed, off, want[:k])
			if i := firstDiff(buf[:k], want[:k]); i >= 0 {
				// Read a little more, to say where the bytes came from.
				got := append([]byte(nil), buf[i:k]...)
				if len(got) < 64 {
					_ = c.SetReadDeadline(time.Now().Add(time.Second))
					more := make([]byte, 64-len(got))
					m, _ := io.ReadAtLeast(c, more, len(more))
					got = append(got, more[:m]...)
				}
				return fmt.Errorf("byte at offset %d of %d is wrong: %s", off+int64(i), size, whence(seed, size, off+int64(i), got))
			}
			off += int64(k)
		}
		if err != nil {
			return fmt.Errorf("reading at offset %d of %d: %w", off, size, err)
		}
	}
	return nil
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// whence says where in the stream the bytes got, found at offset at, came from: a later
// offset means bytes were dropped, an earlier one that bytes came again or out of order.
func whence(seed uint64, size, at int64, got []byte) string {
	if len(got) < 16 {
		return fmt.Sprintf("got % x", got)
	}
	words := make(map[uint64]int64, size/8+1)
	for k := int64(0); k*8 < size; k++ {
		words[streamWord(seed, uint64(k))] = k * 8
	}
	for r := range 8 {
		if src, ok := words[binary.LittleEndian.Uint64(got[r:])]; ok {
			from := src - int64(r)
			return fmt.Sprintf("the bytes there are the stream's from offset %d (%+d bytes)", from, from-at)
		}
	}
	return fmt.Sprintf("the bytes there (% x...) are from nowhere in the stream", got[:16])
}

// stressConfig sizes a stress run.
type stressConfig struct {
	workers, sessions int   // workers run sessions one after another, all workers at once
	size              int64 // bytes each way per session
	bufSize           int   // SO_RCVBUF of the client's and the server's sockets
}

func smallBuffers(size int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		if size == 0 {
			return nil
		}
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
		})
		if err != nil {
			return err
		}
		return serr
	}
}

const stressTrailer = "ALL-READ"

// TestRelayStress: through the relay (spliced, then the loop), several sessions at once
// stream a checked pattern both ways at once, tens of MiB in all, with small socket buffers
// and readers that pause at random: every byte arrives once and in order. FOG_FAULT_MATRIX=1
// runs more and longer sessions.
func TestRelayStress(t *testing.T) { bothRelays(t, testRelayStress) }

func testRelayStress(t *testing.T, spliced bool) {
	cfg := stressConfig{workers: 4, sessions: 3, size: 6 << 20, bufSize: 32 << 10}
	if os.Getenv("FOG_FAULT_MATRIX") != "" {
		cfg = stressConfig{workers: 6, sessions: 10, size: 48 << 20, bufSize: 32 << 10}
	}
	runRelayStress(t, cfg, spliced)
}

func runRelayStress(t *testing.T, cfg stressConfig, spliced bool) {
	lc := net.ListenConfig{Control: smallBuffers(cfg.bufSize)}
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var errMu sync.Mutex
	var errs []error
	fail := func(err error) { errMu.Lock(); errs = append(errs, err); errMu.Unlock() }
	var serving sync.WaitGroup
	serving.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			serving.Go(func() {
				defer c.Close()
				if err := stressServe(c, cfg.size); err != nil {
					fail(fmt.Errorf("server: %w", err))
				}
			})
		}
	})
	t.Cleanup(func() { ln.Close(); serving.Wait() })

	g, addr, _ := relayGateway(t, Config{KernelSplice: spliced}, Route{Target: ln.Addr().String()})
	start := time.Now()
	var clients sync.WaitGroup
	for w := range cfg.workers {
		clients.Go(func() {
			for s := range cfg.sessions {
				id := uint64(w*cfg.sessions + s)
				if err := stressClient(addr, id, cfg); err != nil {
					fail(fmt.Errorf("session %d, client: %w", id, err))
					return
				}
			}
		})
	}
	if spliced {
		wantSpliced(t, g, true)
	}
	clients.Wait()
	ln.Close()
	serving.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	st := g.Stats()
	t.Logf("%d sessions, %d MiB each way each, in %v; directions passed up to the loop: %d",
		cfg.workers*cfg.sessions, cfg.size>>20, time.Since(start).Round(time.Millisecond), st.PassedUp)
}

// stressClient runs one session: it sends its id, then streams size bytes up while it checks
// size bytes coming down, then reads the server's trailer, which says the server checked the
// upload, and the EOF after it (the server shuts its side down), and closes.
func stressClient(addr string, id uint64, cfg stressConfig) error {
	d := net.Dialer{Control: smallBuffers(cfg.bufSize), Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	for range 100 {
		if c, err = d.Dial("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(120 * time.Second))
	if _, err := c.Write(sslRequest()); err != nil {
		return err
	}
	one := make([]byte, 1)
	if _, err := io.ReadFull(c, one); err != nil || one[0] != 'N' {
		return fmt.Errorf("read %q, %v; want the server's N", one, err)
	}
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], id)
	if _, err := c.Write(hdr[:]); err != nil {
		return err
	}
	rnd := rand.New(rand.NewPCG(id, 1))
	up := &stressPace{rnd: rand.New(rand.NewPCG(id, 2)), maxChunk: 256 << 10, pause: 0.02, maxPause: 5 * time.Millisecond}
	down := &stressPace{rnd: rand.New(rand.NewPCG(id, 3)), maxChunk: 64 << 10, pause: 0.01 + 0.05*rnd.Float64(), maxPause: 30 * time.Millisecond, long: 0.01 * rnd.Float64(), longPause: 300 * time.Millisecond}
	wrote := make(chan error, 1)
	go func() { wrote <- writeStream(c, 2*id, cfg.size, up) }()
	if err := readStream(c, 2*id+1, cfg.size, down); err != nil {
		return fmt.Errorf("down: %w", err)
	}
	if err := <-wrote; err != nil {
		return fmt.Errorf("up: %w", err)
	}
	tr := make([]byte, len(stressTrailer)+1)
	n, err := io.ReadAtLeast(c, tr, len(stressTrailer))
	if err != nil || string(tr[:n]) != stressTrailer {
		return fmt.Errorf("after the download the client read %q, %v; want %q", tr[:n], err, stressTrailer)
	}
	if n, err := c.Read(tr); n != 0 || !errors.Is(err, io.EOF) {
		return fmt.Errorf("after the trailer the client read %d bytes, %v; want EOF", n, err)
	}
	return nil
}

// stressServe is the server's side of a session.
func stressServe(c net.Conn, size int64) error {
	_ = c.SetDeadline(time.Now().Add(120 * time.Second))
	ssl := make([]byte, 8)
	if _, err := io.ReadFull(c, ssl); err != nil {
		return err
	}
	if _, err := c.Write([]byte{'N'}); err != nil {
		return err
	}
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return err
	}
	id := binary.LittleEndian.Uint64(hdr[:])
	rnd := rand.New(rand.NewPCG(id, 4))
	down := &stressPace{rnd: rand.New(rand.NewPCG(id, 5)), maxChunk: 256 << 10, pause: 0.02, maxPause: 5 * time.Millisecond}
	up := &stressPace{rnd: rand.New(rand.NewPCG(id, 6)), maxChunk: 64 << 10, pause: 0.01 + 0.05*rnd.Float64(), maxPause: 30 * time.Millisecond, long: 0.01 * rnd.Float64(), longPause: 300 * time.Millisecond}
	wrote := make(chan error, 1)
	go func() { wrote <- writeStream(c, 2*id+1, size, down) }()
	if err := readStream(c, 2*id, size, up); err != nil {
		return fmt.Errorf("session %d, up: %w", id, err)
	}
	if err := <-wrote; err != nil {
		return fmt.Errorf("session %d, down: %w", id, err)
	}
	if _, err := c.Write([]byte(stressTrailer)); err != nil {
		return err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	// The client closes once it has the trailer and the EOF: nothing more may come.
	var one [1]byte
	if n, err := c.Read(one[:]); n != 0 || !errors.Is(err, io.EOF) {
		return fmt.Errorf("session %d: after the upload the server read %d bytes (%q), %v; want EOF", id, n, one[:n], err)
	}
	return nil
}
