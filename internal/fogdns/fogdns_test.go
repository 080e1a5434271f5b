package fogdns

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

func TestServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := store.OpenBolt(t.TempDir() + "/s.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	put := func(k string, v any) {
		if err := store.Put(ctx, st, k, v); err != nil {
			t.Fatal(err)
		}
	}
	put(group.InstanceKey("s", "r", "a"), resource.ManagedInstance{Name: "a", Subscription: "s", ResourceGroup: "r", DNSZone: "z1", Host: "127.0.0.11"})
	put(group.InstanceKey("s", "r", "b"), resource.ManagedInstance{Name: "b", Subscription: "s", ResourceGroup: "r", DNSZone: "z1", Host: "127.0.0.12"})
	g := group.FailoverGroup{Name: "fg", DNSZone: "z1", Primary: 0,
		Sides:     [2]group.GroupSide{{Subscription: "s", ResourceGroup: "r", InstanceName: "a"}, {Subscription: "s", ResourceGroup: "r", InstanceName: "b"}},
		ReadWrite: group.Address{Host: "127.0.0.21"}, ReadOnly: group.Address{Host: "127.0.0.22"}}
	put(group.Key("fg"), g)
	s, err := New(Config{Suffix: "db.test", Mode: ModeDirect}, st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	pc, ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Run(ctx, pc, ln) }()
	<-s.Ready()
	addr := ln.Addr().String()
	check := func(name, want string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for {
			ips, err := Resolve(ctx, addr, name)
			if err == nil && len(ips) == 1 && ips[0].String() == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s = %v %v, want %s", name, ips, err, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	check("a.z1.db.test", "127.0.0.11")
	check("FG.z1.db.test.", "127.0.0.11")
	check("fg.secondary.z1.db.test", "127.0.0.12")
	// The epoch changes: the answer follows.
	g.Primary = 1
	put(group.Key("fg"), g)
	check("fg.z1.db.test", "127.0.0.12")
	check("fg.secondary.z1.db.test", "127.0.0.11")
	c := &dns.Client{Timeout: time.Second}
	q := new(dns.Msg)
	q.SetQuestion("other.z1.db.test.", dns.TypeA)
	if r, _, err := c.Exchange(q, addr); err != nil || r.Rcode != dns.RcodeNameError {
		t.Fatalf("unknown name: %v %v", r, err)
	}
}

type fakeWriter struct{ msg *dns.Msg }

func (w *fakeWriter) LocalAddr() net.Addr         { return &net.UDPAddr{} }
func (w *fakeWriter) RemoteAddr() net.Addr        { return &net.UDPAddr{} }
func (w *fakeWriter) WriteMsg(m *dns.Msg) error   { w.msg = m; _, err := m.Pack(); return err }
func (w *fakeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *fakeWriter) Close() error                { return nil }
func (w *fakeWriter) TsigStatus() error           { return nil }
func (w *fakeWriter) TsigTimersOnly(bool)         {}
func (w *fakeWriter) Hijack()                     {}

// FuzzServeDNS: any query is answered with a message that packs, never a panic; nothing
// outside the zone is answered.
func FuzzServeDNS(f *testing.F) {
	s, err := New(Config{Suffix: "db.test", Mode: ModeDirect}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	s.table["a.z.db.test."] = []net.IP{net.ParseIP("127.0.0.5"), net.ParseIP("fd00::5")}
	for _, q := range []struct {
		name string
		t    uint16
	}{{"a.z.db.test.", dns.TypeA}, {"db.test.", dns.TypeSOA}, {"x.db.test.", dns.TypeAAAA}, {"example.com.", dns.TypeANY}, {".", dns.TypeNS}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.t)
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if m.Unpack(b) != nil {
			return
		}
		w := &fakeWriter{}
		s.ServeDNS(w, m)
		if w.msg == nil {
			t.Fatal("no answer")
		}
		if _, err := w.msg.Pack(); err != nil {
			t.Fatalf("answer does not pack: %v", err)
		}
		if len(m.Question) == 1 && !dns.IsSubDomain("db.test.", strings.ToLower(m.Question[0].Name)) && len(w.msg.Answer) > 0 {
			t.Fatalf("answered %q outside the zone", m.Question[0].Name)
		}
	})
}
