package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func groupPath(rg, loc, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Sql/locations/%s/instanceFailoverGroups/%s", sub, rg, loc, name)
}

func groupBody(primaryID, partnerID, partnerRegion string, rw map[string]any) map[string]any {
	if rw == nil {
		rw = map[string]any{"failoverPolicy": "Manual"}
	}
	return map[string]any{"properties": map[string]any{
		"readWriteEndpoint":    rw,
		"readOnlyEndpoint":     map[string]any{"failoverPolicy": "Disabled"},
		"partnerRegions":       []any{map[string]any{"location": partnerRegion}},
		"managedInstancePairs": []any{map[string]any{"primaryManagedInstanceId": primaryID, "partnerManagedInstanceId": partnerID}},
	}}
}

// pair is a primary (eastus, rg-p) and a secondary (westus, rg-s) in one DNS zone.
type pair struct {
	f          *fog
	name       string
	prim, sec  map[string]any
	rw, ro     string // listener host:port
	rwFQDN     string
	listenerIP [2]string
	idBase     int64 // first id the next writer uses
}

func newPair(t *testing.T, f *fog, name string) *pair {
	t.Helper()
	prim := f.createInstance("rg-p", name+"-p", "eastus", nil)
	sec := f.createInstance("rg-s", name+"-s", "westus", map[string]any{"dnsZonePartner": prim["id"]})
	return &pair{f: f, name: name, prim: prim, sec: sec}
}

// create makes the group and waits until it replicates.
func (p *pair) create(t *testing.T, rw map[string]any) map[string]any {
	t.Helper()
	r := p.f.call("PUT", groupPath("rg-p", "eastus", p.name), groupBody(p.prim["id"].(string), p.sec["id"].(string), "westus", rw))
	p.f.mustSucceed(r)
	g := p.get(t, "rg-p", "eastus")
	l := props(g)["listeners"].(map[string]any)
	rwl, rol := l["readWrite"].(map[string]any), l["readOnly"].(map[string]any)
	p.rw = net.JoinHostPort(rwl["host"].(string), fmt.Sprint(rwl["port"]))
	p.ro = net.JoinHostPort(rol["host"].(string), fmt.Sprint(rol["port"]))
	p.rwFQDN = rwl["fullyQualifiedDomainName"].(string)
	return g
}

func (p *pair) get(t *testing.T, rg, loc string) map[string]any {
	t.Helper()
	r := p.f.call("GET", groupPath(rg, loc, p.name), nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET group at %s/%s = %d %s", rg, loc, r.Status, r.Body)
	}
	return r.json(t)
}

// primaryRG and friends name the sides by role right now.
func (p *pair) sideOf(t *testing.T, role string) (rg, loc string) {
	t.Helper()
	if props(p.get(t, "rg-p", "eastus"))["replicationRole"] == role {
		return "rg-p", "eastus"
	}
	return "rg-s", "westus"
}

// waitState waits until GET on the primary side shows state.
func (p *pair) waitState(t *testing.T, state string, within time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		// A store coming back (etcd regaining its quorum) answers 503 for a moment: that is
		// not yet, not a failure.
		if r := p.f.call("GET", groupPath("rg-p", "eastus", p.name), nil); r.Status == http.StatusServiceUnavailable {
			if time.Now().After(deadline) {
				t.Fatalf("GET group = 503 %s after %s, want %s", r.Body, within, state)
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		rg, loc := p.sideOf(t, "Primary")
		g := p.get(t, rg, loc)
		if props(g)["replicationState"] == state {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicationState = %v after %s, want %s", props(g)["replicationState"], within, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// listenerConn connects as the admin through a listener, verifying the server certificate
// against the listener's name (as a client resolving the name would).
func (p *pair) listenerConn(ctx context.Context, addr, db string, serverName string) (*pgx.Conn, error) {
	host, port, _ := net.SplitHostPort(addr)
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=fogadmin dbname=%s sslmode=verify-full connect_timeout=40", host, port, db))
	if err != nil {
		return nil, err
	}
	cfg.Password = password
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(p.f.info.CACert))
	if serverName == "" {
		serverName = host
	}
	cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: serverName}
	return pgx.ConnectConfig(ctx, cfg)
}

// connectionError reports whether err is what a client sees when its session or connection
// attempt is cut by a failover: a closed or reset connection, or the server's
// administrator-shutdown message. Anything else (a write refused by a standby, say) is a bug.
func connectionError(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, net.ErrClosed) || pgconn.SafeToRetry(err) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"conn closed", "connection reset", "broken pipe", "unexpected EOF", "EOF", "failed to connect", "connection refused", "server closed"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// secondaryArchives writes a WAL segment's worth on the primary and waits until the
// secondary, which archives what it receives (archive_mode=always), has archived it into its
// region's copy of the group's stanza without a failure. Without pgBackRest nothing archives.
func (p *pair) secondaryArchives(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("pgbackrest"); err != nil {
		return
	}
	ctx := context.Background()
	c, err := p.listenerConn(ctx, p.rw, "app", p.rwFQDN)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	s := mustConnect(t, p.f.info.CACert, p.sec, "postgres")
	archived := func() (n, failed int64, lastFailed string) {
		_ = s.QueryRow(ctx, "SELECT archived_count, failed_count, coalesce(last_failed_wal, '') FROM pg_stat_archiver").Scan(&n, &failed, &lastFailed)
		return n, failed, lastFailed
	}
	before, _, _ := archived()
	// About 20 MB of WAL: more than one segment, so the secondary completes one.
	if _, err := c.Exec(ctx, "CREATE TABLE IF NOT EXISTS wal_filler (b text); INSERT INTO wal_filler SELECT repeat('x', 1000) FROM generate_series(1, 20000); DROP TABLE wal_filler"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, failed, last := archived()
		if n > before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the secondary archived nothing in 60 s after a segment's worth of WAL (%d failures, the last %q)", failed, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
