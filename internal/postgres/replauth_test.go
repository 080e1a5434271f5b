package postgres

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fogdb/fog/internal/devca"
)

// TestReplicationByCertificate: a standby seeds and streams with the client certificate
// Fog's CA signed for it, and nothing else gets in: not its certificate from another
// address, not another instance's certificate from its address, not a password, not a
// plain connection.
func TestReplicationByCertificate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, r := testRunner(ctx, t)
	dir := t.TempDir()
	ca, err := devca.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	const host = "127.0.0.1"
	a := &Cluster{Dir: dir + "/a", SocketDir: SocketDirFor(dir + "a"), Host: host, Port: freePort(t, host), R: r,
		Peer: &Peer{CN: devca.ReplicationCN("uid-b"), Sources: []string{"127.0.0.1"}}}
	b := &Cluster{Dir: dir + "/b", SocketDir: SocketDirFor(dir + "b"), Host: host, Port: freePort(t, host), R: r,
		Peer: &Peer{CN: devca.ReplicationCN("uid-a"), Sources: []string{"127.0.0.1"}}}
	config := func(c *Cluster, up *Upstream) {
		crt, key, err := ca.Issue([]string{"n"}, []net.IP{net.ParseIP(host)})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WriteConfig(Config{Name: filepath.Base(c.Dir), Timezone: "UTC", CertPEM: crt, KeyPEM: key, FogUser: "root", CACertPEM: ca.CertPEM, Standby: up}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Init(ctx, "C.UTF-8"); err != nil {
		t.Fatal(err)
	}
	config(a, nil)
	if err := a.Start(ctx); err != nil {
		t.Fatal(err, a.LogTail(5))
	}
	t.Cleanup(func() { a.StopNow(context.Background(), true); b.StopNow(context.Background(), true) })
	sys, err := a.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close(ctx)
	if err := EnsureReplicationRole(ctx, sys); err != nil {
		t.Fatal(err)
	}
	if err := r.MkdirOwned(b.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	crtB, keyB, _ := ca.IssueReplication("uid-b")
	up := &Upstream{Host: host, Port: a.Port, User: ReplicationUser, Slot: "slot_b", AppName: "b", CACertPEM: ca.CertPEM, CertPEM: crtB, KeyPEM: keyB}
	if err := b.BaseBackup(ctx, up, nil); err != nil {
		t.Fatal(err)
	}
	config(b, up)
	if err := b.Start(ctx); err != nil {
		t.Fatal(err, b.LogTail(5))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		_ = sys.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'b' AND state = 'streaming'").Scan(&n)
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby does not stream: %s", b.LogTail(10))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(b.Dir, "replication.pgpass")); err == nil {
		t.Error("a password file exists")
	}
	var noPassword bool
	if err := sys.QueryRow(ctx, "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = $1", ReplicationUser).Scan(&noPassword); err != nil || !noPassword {
		t.Errorf("the replication role has a password (%v)", err)
	}

	// Try to get in as the replication role in other ways.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	crtC, keyC, _ := ca.IssueReplication("uid-c")
	try := func(what, from string, crt, key []byte, password string, db string, replication bool) error {
		cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=%s connect_timeout=5", host, a.Port, ReplicationUser, db))
		if err != nil {
			t.Fatal(err)
		}
		tc := &tls.Config{RootCAs: pool, ServerName: host}
		if crt != nil {
			pair, err := tls.X509KeyPair(crt, key)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		cfg.TLSConfig, cfg.Fallbacks, cfg.Password = tc, nil, password
		if from != "" {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
			cfg.DialFunc = d.DialContext
		}
		if replication {
			cfg.RuntimeParams["replication"] = "true"
		}
		conn, err := pgconn.ConnectConfig(ctx, cfg)
		if err == nil {
			conn.Close(ctx)
		}
		return err
	}
	if err := try("the partner", "127.0.0.1", crtB, keyB, "", "postgres", true); err != nil {
		t.Fatalf("the partner's replication connection: %v", err)
	}
	if err := try("the partner, pg_rewind's way", "127.0.0.1", crtB, keyB, "", "postgres", false); err != nil {
		t.Fatalf("the partner's connection to postgres: %v", err)
	}
	for _, c := range []struct {
		what, from string
		crt, key   []byte
		password   string
		db         string
		want       string
	}{
		{"the partner's certificate from another address", "127.0.0.2", crtB, keyB, "", "postgres", "no pg_hba.conf entry"},
		{"another instance's certificate", "127.0.0.1", crtC, keyC, "", "postgres", "certificate authentication failed"},
		{"a password", "127.0.0.1", nil, nil, "anything", "postgres", "certificate"},
		{"the partner's certificate to a user database", "127.0.0.1", crtB, keyB, "", "template1", "rejects connection"},
	} {
		err := try(c.what, c.from, c.crt, c.key, c.password, c.db, c.db == "postgres")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.what, err, c.want)
		}
	}
	// The CA's certificate for a server, presented by a client, is refused as well: it is not
	// a client certificate.
	srvCrt, srvKey, _ := ca.Issue([]string{devca.ReplicationCN("uid-b")}, nil)
	if err := try("a server certificate", "127.0.0.1", srvCrt, srvKey, "", "postgres", true); err == nil {
		t.Error("a server certificate named like the partner was accepted")
	}
}

// TestHBAIsNarrow: replication only from the peer's addresses with its certificate; clients
// only from where the instance's address can be reached; Fog's roles never from the network.
func TestHBAIsNarrow(t *testing.T) {
	peer := &Peer{CN: "repl.b", Sources: []string{"10.1.0.7", "127.0.0.1", "fd00::7"}}
	for _, c := range []struct {
		host, want string
		not        []string
	}{
		{"127.0.10.3", "hostssl all          all          127.0.0.0/8", []string{"0.0.0.0/0      scram", "::/0           scram"}},
		{"10.1.0.5", "hostssl all          all          0.0.0.0/0", []string{"127.0.0.0/8", "::/0           scram"}},
		{"fd00::5", "hostssl all          all          ::/0", []string{"0.0.0.0/0      scram"}},
	} {
		h := hbaConf(false, peer, c.host)
		if !strings.Contains(h, c.want) {
			t.Errorf("%s: no %q in\n%s", c.host, c.want, h)
		}
		for _, n := range c.not {
			if strings.Contains(h, n) {
				t.Errorf("%s: %q in\n%s", c.host, n, h)
			}
		}
		for _, line := range []string{
			"hostssl replication  fog_replication  10.1.0.7/32    cert map=fogrepl",
			"hostssl postgres     fog_replication  127.0.0.1/32   cert map=fogrepl",
			"hostssl replication  fog_replication  fd00::7/128    cert map=fogrepl",
		} {
			if !strings.Contains(h, line) {
				t.Errorf("%s: no %q in\n%s", c.host, line, h)
			}
		}
		if strings.Contains(h, "scram-sha-256") && strings.Index(h, "fog_replication 0.0.0.0/0 reject") > strings.Index(h, "scram-sha-256") {
			t.Errorf("the replication role is not refused before the client lines:\n%s", h)
		}
	}
	if h := hbaConf(false, nil, "127.0.0.5"); strings.Contains(h, "cert") || strings.Contains(h, "hostssl replication") {
		t.Errorf("an instance without a peer admits replication:\n%s", h)
	}
	if h := hbaConf(true, peer, "127.0.0.5"); strings.Contains(h, "scram") || !strings.Contains(h, "127.0.0.0/8    reject") || !strings.Contains(h, "cert map=fogrepl") {
		t.Errorf("drained:\n%s", h)
	}
}
