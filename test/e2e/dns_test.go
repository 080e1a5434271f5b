package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fogdb/fog/internal/fogdns"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/server"
)

// TestDNS: Fog's DNS server answers every name it hands out, in both modes; after a planned
// failover the read-write name answers the new primary at once; psql connects with the
// listener name (libpq's host for TLS verification, hostaddr from Fog's DNS server: the test
// does not change the machine's resolver); in direct mode a client that kept the old answer
// reaches only the old primary, which refuses its write.
func TestDNS(t *testing.T) {
	for _, mode := range []string{fogdns.ModeDirect, fogdns.ModeGateway} {
		t.Run(mode, func(t *testing.T) { testDNS(t, mode) })
	}
}

func testDNS(t *testing.T, mode string) {
	f := startFog(t, "", func(c *server.Config) { c.DNS.Listen, c.DNS.Mode = "127.0.0.1:0", mode })
	if f.dns == "" {
		t.Fatal("no DNS server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	resolve := func(name string) []string {
		t.Helper()
		ips, err := fogdns.Resolve(ctx, f.dns, name)
		if err != nil {
			t.Fatalf("resolve %s: %v", name, err)
		}
		var out []string
		for _, ip := range ips {
			out = append(out, ip.String())
		}
		return out
	}
	p := newPair(t, f, "dns"+mode[:3])
	g := p.create(t, nil)
	secView := p.get(t, "rg-s", "westus")
	primHost, secHost := props(p.prim)["host"].(string), props(p.sec)["host"].(string)
	for _, inst := range []map[string]any{p.prim, p.sec} {
		if got := resolve(props(inst)["fullyQualifiedDomainName"].(string)); len(got) != 1 || got[0] != props(inst)["host"] {
			t.Errorf("%s = %v, want %v", props(inst)["fullyQualifiedDomainName"], got, props(inst)["host"])
		}
	}
	listener := func(view map[string]any, kind string) (string, string) {
		l := props(view)["listeners"].(map[string]any)[kind].(map[string]any)
		return l["host"].(string), fmt.Sprint(l["port"])
	}
	rwName := props(g)["readWriteEndpoint"].(map[string]any)["fullyQualifiedDomainName"]
	if rwName == nil {
		rwName = p.rwFQDN
	}
	rwFQDN := fmt.Sprint(rwName)
	roFQDN := p.name + ".secondary." + strings.TrimPrefix(rwFQDN, p.name+".")
	wantRW, wantRO := primHost, secHost
	rwPort := fmt.Sprint(props(p.prim)["port"])
	if mode == fogdns.ModeGateway {
		wantRW, rwPort = listener(g, "readWrite")
		wantRO, _ = listener(secView, "readOnly")
	}
	if got := resolve(rwFQDN); len(got) != 1 || got[0] != wantRW {
		t.Fatalf("%s (%s) = %v, want %s", rwFQDN, mode, got, wantRW)
	}
	if got := resolve(roFQDN); len(got) != 1 || got[0] != wantRO {
		t.Fatalf("%s (%s) = %v, want %s", roFQDN, mode, got, wantRO)
	}

	// The zone: SOA and NS at the apex, NXDOMAIN for a name it does not have, REFUSED outside
	// it (no recursion), and the same over TCP.
	zone := strings.SplitN(rwFQDN, ".", 3)[2]
	ask := func(netw, name string, qtype uint16) *dns.Msg {
		t.Helper()
		c := &dns.Client{Net: netw, Timeout: 3 * time.Second}
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), qtype)
		q.RecursionDesired = true
		r, _, err := c.ExchangeContext(ctx, q, f.dns)
		if err != nil {
			t.Fatalf("%s %s %s: %v", netw, name, dns.TypeToString[qtype], err)
		}
		return r
	}
	if r := ask("udp", zone, dns.TypeSOA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !r.Authoritative || r.RecursionAvailable {
		t.Errorf("SOA %s: %v", zone, r)
	}
	if r := ask("tcp", zone, dns.TypeNS); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("NS %s over TCP: %v", zone, r)
	}
	if r := ask("udp", "nothing-here."+zone, dns.TypeA); r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
		t.Errorf("an unknown name: %v", r)
	}
	if r := ask("udp", "example.com", dns.TypeA); r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
		t.Errorf("a name outside the zone: %v", r)
	}
	if r := ask("tcp", rwFQDN, dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].Header().Ttl > 30 {
		t.Errorf("%s over TCP: %v", rwFQDN, r)
	}

	// libpq with the name: host for verify-full, hostaddr from Fog's DNS.
	bin, err := postgres.FindBinaries(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	psql := func(host, addr, port, sql string) (string, error) {
		conn := fmt.Sprintf("host=%s hostaddr=%s port=%s user=fogadmin dbname=postgres sslmode=verify-full sslrootcert=%s connect_timeout=10",
			host, addr, port, filepath.Join(f.dataDir, "ca.crt"))
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "psql"), conn, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+password)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := psql(rwFQDN, resolve(rwFQDN)[0], rwPort, "CREATE TABLE IF NOT EXISTS dns_t (v text); INSERT INTO dns_t VALUES ('before'); SELECT pg_is_in_recovery()"); err != nil || out != "f" {
		t.Fatalf("psql to %s: %q %v", rwFQDN, out, err)
	}

	// A planned failover: the name follows at once.
	oldAnswer := resolve(rwFQDN)[0]
	f.mustSucceed(f.call("POST", groupPath("rg-s", "westus", p.name)+"/failover", nil))
	wantRW = secHost
	if mode == fogdns.ModeGateway {
		wantRW, rwPort = listener(p.get(t, "rg-s", "westus"), "readWrite")
	}
	start := time.Now()
	for {
		got := resolve(rwFQDN)
		if len(got) == 1 && got[0] == wantRW {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("%s = %v a second after the failover, want %s", rwFQDN, got, wantRW)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("%s mode: the read-write name answered the new primary %v after the failover succeeded", mode, time.Since(start).Round(time.Millisecond))
	if out, err := psql(rwFQDN, resolve(rwFQDN)[0], rwPort, "INSERT INTO dns_t VALUES ('after'); SELECT count(*) FROM dns_t"); err != nil || out != "2" {
		t.Fatalf("psql to %s after the failover: %q %v", rwFQDN, out, err)
	}
	if mode == fogdns.ModeDirect {
		// A client that cached the old answer reaches the old primary: its write is refused.
		out, err := psql(rwFQDN, oldAnswer, rwPort, "INSERT INTO dns_t VALUES ('stale')")
		if err == nil {
			t.Fatalf("a write through the stale answer %s succeeded: %q", oldAnswer, out)
		}
		if !strings.Contains(out, "read-only transaction") && !strings.Contains(out, "fenced") && !strings.Contains(out, "Connection refused") &&
			!strings.Contains(out, "rejects connection") && !strings.Contains(out, "shutting down") && !strings.Contains(out, "starting up") {
			t.Errorf("the stale write failed with %q, not with a refusal", out)
		}
		t.Logf("a write through the stale answer: %s", out)
		if out, err := psql(rwFQDN, resolve(rwFQDN)[0], rwPort, "SELECT count(*) FROM dns_t WHERE v = 'stale'"); err != nil || out != "0" {
			t.Errorf("the stale write landed: %q %v", out, err)
		}
	}
}
