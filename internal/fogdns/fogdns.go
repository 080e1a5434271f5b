// Package fogdns is Fog's authoritative DNS server for the names it hands out: every
// instance's fullyQualifiedDomainName and every failover group's read-write and read-only
// listener names, under the deployment's DNS suffix. It answers only for that zone (no
// recursion: anything else is REFUSED), over UDP and TCP, from a table rebuilt from the store
// on every change to groups and instances, so an answer changes the moment a failover changes
// the group's epoch.
//
// Listener names resolve in one of two modes. In gateway mode they resolve to the listener
// addresses of Fog's gateway, which relays to the current primary (or secondary). In direct
// mode the read-write name resolves to the current primary's own address and the read-only
// name to the secondary's, with a short TTL, as Azure's listener CNAMEs do: applications reach
// PostgreSQL without a relay, and a client still holding an old answer reaches only the fenced
// old primary, which refuses writes.
package fogdns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// Modes of the listener names.
const (
	ModeGateway = "gateway"
	ModeDirect  = "direct"
)

// Server answers for one zone.
type Server struct {
	cfg  Config
	st   store.Store
	log  *slog.Logger
	zone string

	mu     sync.RWMutex
	table  map[string][]net.IP
	serial uint32
	ready  chan struct{}
	once   sync.Once
}

// New returns a server for cfg over st.
func New(cfg Config, st store.Store, log *slog.Logger) (*Server, error) {
	switch cfg.Mode {
	case "":
		cfg.Mode = ModeGateway
	case ModeGateway, ModeDirect:
	default:
		return nil, fmt.Errorf("DNS mode %q: use %s or %s", cfg.Mode, ModeGateway, ModeDirect)
	}
	if strings.Trim(cfg.Suffix, ".") == "" {
		return nil, errors.New("DNS server: no zone (DNS suffix)")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.NSAddr == nil {
		cfg.NSAddr = net.IPv4(127, 0, 0, 1)
	}
	return &Server{cfg: cfg, st: st, log: log, zone: dns.Fqdn(strings.ToLower(cfg.Suffix)), table: map[string][]net.IP{},
		serial: uint32(time.Now().Unix()), ready: make(chan struct{})}, nil
}

// Mode is the listener names' mode.
func (s *Server) Mode() string { return s.cfg.Mode }

// Run serves DNS on pc (UDP) and ln (TCP) until ctx ends, following the store.
func (s *Server) Run(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes := make(chan struct{}, 1)
	for _, prefix := range []string{group.Prefix, "mi/"} {
		ch := s.st.Watch(ctx, prefix)
		go func() {
			for range ch {
				select {
				case changes <- struct{}{}:
				default:
				}
			}
		}()
	}
	go func() {
		for {
			if err := s.rebuild(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("DNS table", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-changes:
			}
		}
	}()
	udp := &dns.Server{PacketConn: pc, Handler: s}
	tcp := &dns.Server{Listener: ln, Handler: s, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	errs := make(chan error, 2)
	go func() { errs <- udp.ActivateAndServe() }()
	go func() { errs <- tcp.ActivateAndServe() }()
	select {
	case <-ctx.Done():
	case err := <-errs:
		cancel()
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
		return err
	}
	_ = udp.Shutdown()
	_ = tcp.Shutdown()
	return nil
}

// Ready is closed once the first table is built.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// rebuild reads every instance and group and makes the name table.
func (s *Server) rebuild(ctx context.Context) error {
	insts, err := store.List[resource.ManagedInstance](ctx, s.st, "mi/")
	if err != nil {
		return err
	}
	groups, err := store.List[group.FailoverGroup](ctx, s.st, group.Prefix)
	if err != nil {
		return err
	}
	t := map[string][]net.IP{}
	add := func(name, host string) {
		if ip := net.ParseIP(host); ip != nil && name != "" {
			k := dns.Fqdn(strings.ToLower(name))
			t[k] = append(t[k], ip)
		}
	}
	byKey := map[string]resource.ManagedInstance{}
	for _, m := range insts {
		if m.DNSZone == "" {
			continue
		}
		add(m.Name+"."+m.DNSZone+"."+s.cfg.Suffix, m.Host)
		byKey[group.InstanceKey(m.Subscription, m.ResourceGroup, m.Name)] = m
	}
	for _, g := range groups {
		if g.Deleting {
			continue
		}
		rw, ro := group.ListenerNames(g.Name, g.DNSZone, s.cfg.Suffix)
		prim, sec := g.Primary, g.Secondary()
		if s.cfg.Mode == ModeDirect {
			add(rw, byKey[g.Sides[prim].InstanceKey()].Host)
			add(ro, byKey[g.Sides[sec].InstanceKey()].Host)
			continue
		}
		// The gateway of the primary's region relays read-write connections, the
		// secondary's region's relays read-only ones.
		prw, _ := g.Listeners(prim)
		_, sro := g.Listeners(sec)
		add(rw, prw.Host)
		add(ro, sro.Host)
	}
	s.mu.Lock()
	changed := !sameTable(s.table, t)
	if changed {
		s.table = t
		s.serial = uint32(time.Now().Unix())
	}
	s.mu.Unlock()
	s.once.Do(func() { close(s.ready) })
	if changed {
		s.log.Debug("DNS table rebuilt", "names", len(t))
	}
	return nil
}

func sameTable(a, b map[string][]net.IP) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || len(v) != len(w) {
			return false
		}
		for i := range v {
			if !v[i].Equal(w[i]) {
				return false
			}
		}
	}
	return true
}

// Lookup returns the addresses of name as the server answers them (for tests and tools).
func (s *Server) Lookup(name string) []net.IP {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]net.IP(nil), s.table[dns.Fqdn(strings.ToLower(name))]...)
}

func (s *Server) soa() dns.RR {
	s.mu.RLock()
	serial := s.serial
	s.mu.RUnlock()
	ttl := uint32(s.cfg.TTL / time.Second)
	return &dns.SOA{Hdr: dns.RR_Header{Name: s.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns: "ns1." + s.zone, Mbox: "hostmaster." + s.zone, Serial: serial,
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: ttl}
}

// ServeDNS answers one query.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = false
	defer func() { _ = w.WriteMsg(m) }()
	if r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 {
		m.Rcode = dns.RcodeNotImplemented
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY || !dns.IsSubDomain(s.zone, name) {
		// Not Fog's zone: no recursion, no referral.
		m.Rcode = dns.RcodeRefused
		return
	}
	m.Authoritative = true
	ttl := uint32(s.cfg.TTL / time.Second)
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	var ips []net.IP
	known := false
	switch name {
	case s.zone:
		known = true
		switch q.Qtype {
		case dns.TypeSOA, dns.TypeANY:
			m.Answer = append(m.Answer, s.soa())
		}
		switch q.Qtype {
		case dns.TypeNS, dns.TypeANY:
			m.Answer = append(m.Answer, &dns.NS{Hdr: hdr(dns.TypeNS), Ns: "ns1." + s.zone})
		}
	case "ns1." + s.zone:
		known, ips = true, []net.IP{s.cfg.NSAddr}
	default:
		s.mu.RLock()
		ips, known = s.table[name]
		s.mu.RUnlock()
	}
	if !known {
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, s.soa())
		return
	}
	for _, ip := range ips {
		if v4 := ip.To4(); v4 != nil && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY) {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: v4})
		} else if v4 == nil && (q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY) {
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: ip})
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, s.soa()) // NODATA
	}
}

// Listen opens the UDP and TCP sockets of addr.
func Listen(addr string) (net.PacketConn, net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	// The same port for UDP (TCP's, when addr asked for any port).
	pc, err := net.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	return pc, ln, nil
}

// Resolve asks the server at addr for name's A records (a client for tests and tools).
func Resolve(ctx context.Context, addr, name string) ([]net.IP, error) {
	c := &dns.Client{Timeout: 3 * time.Second}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeA)
	r, _, err := c.ExchangeContext(ctx, q, addr)
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("%s: %s", name, dns.RcodeToString[r.Rcode])
	}
	var out []net.IP
	for _, a := range r.Answer {
		if rec, ok := a.(*dns.A); ok {
			out = append(out, rec.A)
		}
	}
	if len(out) == 0 {
		return nil, errors.New(name + ": no address")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}
