package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel splicing: an established session's bytes move from one socket to the other inside
// the kernel, without waking the relay, as Cilium's socket-level proxy and Cloudflare's
// SOCKMAP splicing do. Both sockets of a session go into a BPF sockmap to which a stream
// verdict program is attached; for every segment that arrives on one of them the program
// finds the peer's slot (by the socket's cookie, in a hash map) and redirects the segment to
// the peer's send side. The relay's loop keeps watching the sockets only for the end of the
// session (EOF, a hang-up, an error, or its own shutdown on a route change), and reads
// whatever the program passes up (a socket it finds no peer for).
//
// It needs CAP_BPF and CAP_NET_ADMIN (root, or a service given them) and a kernel with
// CONFIG_BPF_STREAM_PARSER; without them the relay's loop moves the bytes itself.
//
// It is off unless Config.KernelSplice asks for it, because it can deliver a byte twice.
// TCP queues a retransmitted segment that overlaps bytes the socket already received (a
// spurious retransmission, sent again in one piece with the next segment) whole, and its
// readers skip the old part by sequence number; the kernel's sockmap reads whole segments
// (tcp_read_skb) and hands the program the old part again, which it then redirects or passes
// up like new bytes (TestRelayOverlappingRetransmission makes such a segment). The program
// cannot see a segment's sequence number to trim it. Through the loop, read(2) skips it.

// sockmapSlots is how many sockets can be spliced at once (two per session).
const sockmapSlots = 1 << 16

// spliceWindow is how many bytes may wait in the kernel for a socket that does not take
// them (a client that reads slowly): the kernel's redirect has no backpressure of its own,
// so the program redirects a direction only while the bytes it sent are within this of
// what the peer socket took, a figure the relay's loop raises every tick. Past it the
// program passes the direction up to the loop for good, where the socket's receive
// buffer, and so TCP, push back on the sender.
const spliceWindow = 4 << 20

// splicer is the process's sockmap, its tables and the attached program.
type splicer struct {
	sockFD   int // sockmap: slot -> socket
	slotFD   int // hash: socket cookie -> slot
	stateFD  int // array: slot -> spliceState
	creditFD int // array: slot -> the byte count up to which the program may redirect
	progFD   int
	mu       sync.Mutex
	free     []uint32
	next     uint32
}

// spliceState is what the program keeps per socket (as a source): the peer's slot, whether
// it passes up instead of redirecting (for good), and the bytes it redirected.
type spliceState struct {
	peer  uint32
	pass  uint32
	bytes uint64
}

var splicing struct {
	once sync.Once
	s    *splicer
	err  error
	off  atomic.Bool
}

// kernelSplicer returns the process's splicer, set up on first use, or why there is none.
func kernelSplicer() (*splicer, error) {
	if splicing.off.Load() {
		return nil, errors.New("turned off")
	}
	splicing.once.Do(func() { splicing.s, splicing.err = newSplicer() })
	return splicing.s, splicing.err
}

// SetKernelSplice turns kernel splicing on (the default where the kernel and privileges
// allow it) or off for sessions that start afterwards: the benchmark's A/B, and a switch for
// an operator who prefers the relay's loop.
func SetKernelSplice(on bool) { splicing.off.Store(!on) }

// KernelSplice says whether new sessions are spliced in the kernel, or why not.
func KernelSplice() (bool, string) {
	if _, err := kernelSplicer(); err != nil {
		return false, err.Error()
	}
	return true, ""
}

func bpfCall(cmd int, attr []byte) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func bpfMapCreate(typ, key, value, entries uint32) (int, error) {
	a := make([]byte, 128)
	binary.LittleEndian.PutUint32(a[0:], typ)
	binary.LittleEndian.PutUint32(a[4:], key)
	binary.LittleEndian.PutUint32(a[8:], value)
	binary.LittleEndian.PutUint32(a[12:], entries)
	return bpfCall(unix.BPF_MAP_CREATE, a)
}

// bpfMapElem updates (cmd BPF_MAP_UPDATE_ELEM), looks up or deletes an element.
func bpfMapElem(cmd int, fd int, key, value unsafe.Pointer) error {
	a := make([]byte, 128)
	binary.LittleEndian.PutUint32(a[0:], uint32(fd))
	binary.LittleEndian.PutUint64(a[8:], uint64(uintptr(key)))
	binary.LittleEndian.PutUint64(a[16:], uint64(uintptr(value)))
	_, err := bpfCall(cmd, a)
	return err
}

// insn encodes one BPF instruction.
func insn(code uint8, dst, src uint8, off int16, imm int32) []byte {
	b := make([]byte, 8)
	b[0] = code
	b[1] = dst | src<<4
	binary.LittleEndian.PutUint16(b[2:], uint16(off))
	binary.LittleEndian.PutUint32(b[4:], uint32(imm))
	return b
}

// ldMapFD is the two-instruction load of a map's address into dst.
func ldMapFD(dst uint8, fd int) []byte {
	return append(insn(unix.BPF_LD|unix.BPF_DW|unix.BPF_IMM, dst, unix.BPF_PSEUDO_MAP_FD, 0, int32(fd)), insn(0, 0, 0, 0, 0)...)
}

const (
	helperMapLookup    = 1
	helperSocketCookie = 46
	helperRedirectMap  = 52
	skPass             = 1
)

// asm is a small BPF assembler: instructions, and jumps to labels resolved at the end.
type asm struct {
	code   []byte
	labels map[string]int
	fixups map[int]string
}

func (a *asm) op(code, dst, src uint8, off int16, imm int32) {
	a.code = append(a.code, insn(code, dst, src, off, imm)...)
}

func (a *asm) jump(code, dst, src uint8, imm int32, label string) {
	a.fixups[len(a.code)/8] = label
	a.op(code, dst, src, 0, imm)
}

func (a *asm) label(name string) { a.labels[name] = len(a.code) / 8 }

func (a *asm) ldMap(dst uint8, fd int) { a.code = append(a.code, ldMapFD(dst, fd)...) }

// lookup is r0 = bpf_map_lookup_elem(map fd, fp+keyOff), jumping to label when r0 is NULL.
func (a *asm) lookup(fd int, keyOff int32, label string) {
	a.ldMap(1, fd)
	a.op(unix.BPF_ALU64|unix.BPF_MOV|unix.BPF_X, 2, 10, 0, 0)
	a.op(unix.BPF_ALU64|unix.BPF_ADD|unix.BPF_K, 2, 0, 0, keyOff)
	a.op(unix.BPF_JMP|unix.BPF_CALL, 0, 0, 0, helperMapLookup)
	a.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, 0, 0, 0, label)
}

func (a *asm) assemble() []byte {
	for at, name := range a.fixups {
		binary.LittleEndian.PutUint16(a.code[at*8+2:], uint16(int16(a.labels[name]-at-1)))
	}
	return a.code
}

// verdictProgram is, in C:
//
//	u64 c = bpf_get_socket_cookie(skb);
//	u32 *slot = bpf_map_lookup_elem(&slots, &c);
//	if (!slot) return SK_PASS;
//	u32 k = *slot;
//	struct state *st = bpf_map_lookup_elem(&states, &k);
//	u64 *credit = bpf_map_lookup_elem(&credits, &k);
//	if (!st || !credit || st->pass) return SK_PASS;
//	u64 n = st->bytes + skb->len;
//	if (n > *credit) { st->pass = 1; return SK_PASS; }
//	st->bytes = n;
//	return bpf_sk_redirect_map(skb, &socks, st->peer, 0);
func verdictProgram(s *splicer) []byte {
	const (
		alu64                                  = unix.BPF_ALU64
		r0, r1, r2, r3, r4, r6, r8, r9, r10    = 0, 1, 2, 3, 4, 6, 8, 9, 10
		call, exit, mov, movK, add, ldxW, ldxD = unix.BPF_JMP | unix.BPF_CALL, unix.BPF_JMP | unix.BPF_EXIT, alu64 | unix.BPF_MOV | unix.BPF_X, alu64 | unix.BPF_MOV | unix.BPF_K, alu64 | unix.BPF_ADD | unix.BPF_K, unix.BPF_LDX | unix.BPF_W | unix.BPF_MEM, unix.BPF_LDX | unix.BPF_DW | unix.BPF_MEM
		stxW, stxD                             = unix.BPF_STX | unix.BPF_W | unix.BPF_MEM, unix.BPF_STX | unix.BPF_DW | unix.BPF_MEM
		jeqK, jneK, jgtX                       = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JNE | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGT | unix.BPF_X
	)
	a := &asm{labels: map[string]int{}, fixups: map[int]string{}}
	a.op(mov, r6, r1, 0, 0) // r6 = skb
	a.op(call, 0, 0, 0, helperSocketCookie)
	a.op(stxD, r10, r0, -8, 0) // fp-8 = cookie
	a.lookup(s.slotFD, -8, "pass")
	a.op(ldxW, r1, r0, 0, 0)
	a.op(stxW, r10, r1, -12, 0) // fp-12 = slot
	a.lookup(s.stateFD, -12, "pass")
	a.op(mov, r8, r0, 0, 0) // r8 = state
	a.lookup(s.creditFD, -12, "pass")
	a.op(mov, r9, r0, 0, 0) // r9 = credit
	a.op(ldxW, r1, r8, 4, 0)
	a.jump(jneK, r1, 0, 0, "pass") // passing up for good
	a.op(ldxD, r2, r8, 8, 0)
	a.op(ldxW, r3, r6, 0, 0) // skb->len
	a.op(alu64|unix.BPF_ADD|unix.BPF_X, r2, r3, 0, 0)
	a.op(ldxD, r4, r9, 0, 0)
	a.jump(jgtX, r2, r4, 0, "over")
	a.op(stxD, r8, r2, 8, 0)
	a.op(ldxW, r3, r8, 0, 0) // the peer's slot
	a.op(mov, r1, r6, 0, 0)
	a.ldMap(r2, s.sockFD)
	a.op(movK, r4, 0, 0, 0)
	a.op(call, 0, 0, 0, helperRedirectMap)
	a.op(exit, 0, 0, 0, 0)
	a.label("over")
	a.op(movK, r1, 0, 0, 1)
	a.op(stxW, r8, r1, 4, 0)
	a.label("pass")
	a.op(movK, r0, 0, 0, skPass)
	a.op(exit, 0, 0, 0, 0)
	return a.assemble()
}

func newSplicer() (*splicer, error) {
	s := &splicer{sockFD: -1, slotFD: -1, stateFD: -1, creditFD: -1}
	var err error
	for _, m := range []struct {
		fd                       *int
		typ, key, value, entries uint32
	}{
		{&s.sockFD, unix.BPF_MAP_TYPE_SOCKMAP, 4, 4, sockmapSlots},
		{&s.slotFD, unix.BPF_MAP_TYPE_HASH, 8, 4, sockmapSlots},
		{&s.stateFD, unix.BPF_MAP_TYPE_ARRAY, 4, 16, sockmapSlots},
		{&s.creditFD, unix.BPF_MAP_TYPE_ARRAY, 4, 8, sockmapSlots},
	} {
		if *m.fd, err = bpfMapCreate(m.typ, m.key, m.value, m.entries); err != nil {
			s.close()
			return nil, fmt.Errorf("create the splice maps: %w", err)
		}
	}
	prog := verdictProgram(s)
	license := []byte("GPL\x00")
	logBuf := make([]byte, 16<<10)
	var progFD int
	for _, attach := range []uint32{unix.BPF_SK_SKB_VERDICT, unix.BPF_SK_SKB_STREAM_VERDICT} {
		a := make([]byte, 128)
		binary.LittleEndian.PutUint32(a[0:], unix.BPF_PROG_TYPE_SK_SKB)
		binary.LittleEndian.PutUint32(a[4:], uint32(len(prog)/8))
		binary.LittleEndian.PutUint64(a[8:], uint64(uintptr(unsafe.Pointer(&prog[0]))))
		binary.LittleEndian.PutUint64(a[16:], uint64(uintptr(unsafe.Pointer(&license[0]))))
		binary.LittleEndian.PutUint32(a[24:], 1)
		binary.LittleEndian.PutUint32(a[28:], uint32(len(logBuf)))
		binary.LittleEndian.PutUint64(a[32:], uint64(uintptr(unsafe.Pointer(&logBuf[0]))))
		copy(a[48:64], "fog_splice")
		binary.LittleEndian.PutUint32(a[68:], attach)
		progFD, err = bpfCall(unix.BPF_PROG_LOAD, a)
		if err != nil {
			continue
		}
		at := make([]byte, 128)
		binary.LittleEndian.PutUint32(at[0:], uint32(s.sockFD))
		binary.LittleEndian.PutUint32(at[4:], uint32(progFD))
		binary.LittleEndian.PutUint32(at[8:], attach)
		if _, err = bpfCall(unix.BPF_PROG_ATTACH, at); err == nil {
			break
		}
		unix.Close(progFD)
	}
	if err != nil {
		s.close()
		msg := string(logBuf[:indexByte(logBuf, 0)])
		if msg != "" {
			return nil, fmt.Errorf("load the splice program: %w (%s)", err, msg)
		}
		return nil, fmt.Errorf("load the splice program: %w", err)
	}
	s.progFD = progFD
	return s, nil
}

func (s *splicer) close() {
	for _, fd := range []int{s.sockFD, s.slotFD, s.stateFD, s.creditFD} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return len(b)
}

func (s *splicer) slot() (uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.free); n > 0 {
		k := s.free[n-1]
		s.free = s.free[:n-1]
		return k, true
	}
	if s.next >= sockmapSlots {
		return 0, false
	}
	s.next++
	return s.next - 1, true
}

func (s *splicer) release(k uint32) {
	s.mu.Lock()
	s.free = append(s.free, k)
	s.mu.Unlock()
}

// splice is one socket of a spliced session, as the source of the direction it reads.
type splice struct {
	slot   uint32
	cookie uint64
	// sent is how many bytes the socket had taken to send when it was spliced, plus what
	// the relay wrote to it itself since: what it took beyond that came from the kernel.
	sent uint64
	// credit is the byte count up to which the program may redirect what arrives on the
	// socket; seen is the redirected count at the loop's last look.
	credit, seen uint64
}

// pair splices fa and fb to each other, or returns nils when it cannot. Neither socket may
// receive anything until pair returns (the protocol guarantees it: the server has not had
// the startup packet yet, and the client waits for its answer), or a byte could arrive on
// one before the other is in the map.
func (s *splicer) pair(fa, fb int) (*splice, *splice) {
	a, ok := s.prepare(fa)
	if !ok {
		return nil, nil
	}
	b, ok := s.prepare(fb)
	if !ok {
		s.remove(a)
		return nil, nil
	}
	if s.init(a, b) != nil || s.init(b, a) != nil || s.insert(b, fb) != nil || s.insert(a, fa) != nil {
		s.remove(a)
		s.remove(b)
		return nil, nil
	}
	// Anything that reached a socket's queue before it was in the map is run through the
	// program now: setting the low-water mark makes TCP signal the data as ready.
	for _, fd := range []int{fb, fa} {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1)
	}
	return a, b
}

func (s *splicer) prepare(fd int) (*splice, bool) {
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		return nil, false
	}
	sent, ok := takenToSend(fd)
	if !ok {
		return nil, false
	}
	k, ok := s.slot()
	if !ok {
		return nil, false
	}
	return &splice{slot: k, cookie: cookie, sent: sent, credit: spliceWindow}, true
}

// init sets a's state: its peer, redirecting, nothing sent, the first window of credit.
func (s *splicer) init(a, peer *splice) error {
	st := spliceState{peer: peer.slot}
	if err := bpfMapElem(unix.BPF_MAP_UPDATE_ELEM, s.stateFD, unsafe.Pointer(&a.slot), unsafe.Pointer(&st)); err != nil {
		return err
	}
	if err := bpfMapElem(unix.BPF_MAP_UPDATE_ELEM, s.creditFD, unsafe.Pointer(&a.slot), unsafe.Pointer(&a.credit)); err != nil {
		return err
	}
	return bpfMapElem(unix.BPF_MAP_UPDATE_ELEM, s.slotFD, unsafe.Pointer(&a.cookie), unsafe.Pointer(&a.slot))
}

func (s *splicer) insert(a *splice, fd int) error {
	v := uint32(fd)
	return bpfMapElem(unix.BPF_MAP_UPDATE_ELEM, s.sockFD, unsafe.Pointer(&a.slot), unsafe.Pointer(&v))
}

// state is what the program says of a's direction.
func (s *splicer) state(a *splice) spliceState {
	var st spliceState
	_ = bpfMapElem(unix.BPF_MAP_LOOKUP_ELEM, s.stateFD, unsafe.Pointer(&a.slot), unsafe.Pointer(&st))
	return st
}

// grant lets the program redirect up to credit bytes from a.
func (s *splicer) grant(a *splice, credit uint64) {
	if bpfMapElem(unix.BPF_MAP_UPDATE_ELEM, s.creditFD, unsafe.Pointer(&a.slot), unsafe.Pointer(&credit)) == nil {
		a.credit = credit
	}
}

// remove takes a socket out of the tables; closing the socket takes it out of the sockmap
// too, but its slot is free only once it is out.
func (s *splicer) remove(a *splice) {
	_ = bpfMapElem(unix.BPF_MAP_DELETE_ELEM, s.slotFD, unsafe.Pointer(&a.cookie), nil)
	_ = bpfMapElem(unix.BPF_MAP_DELETE_ELEM, s.sockFD, unsafe.Pointer(&a.slot), nil)
	s.release(a.slot)
}

// takenToSend is how many bytes fd has taken to send: those its peer acknowledged and those
// still in its send queue.
func takenToSend(fd int) (uint64, bool) {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, false
	}
	outq, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return 0, false
	}
	return ti.Bytes_acked + uint64(outq), true
}
