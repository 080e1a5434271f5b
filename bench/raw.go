package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fogdb/fog/internal/devca"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/postgres"
)

// rawPair is the baseline: two PostgreSQL clusters with plain streaming replication, switched
// over and failed over the way an operator does it by hand with pg_ctl and SQL, with clients
// re-pointed the instant the new primary is up (a perfect VIP or DNS).
type rawPair struct {
	dir     string
	nodes   [2]*postgres.Cluster
	primary int
	ca      *x509.CertPool
	caPEM   []byte
	devCA   *devca.CA
	// configure writes a node's configuration, as a standby of u when u is set.
	configure func(c *postgres.Cluster, u *postgres.Upstream) error
}

func newRawPair(ctx context.Context, base string) (_ *rawPair, err error) {
	dir, err := os.MkdirTemp("", "fog-bench-raw-")
	if err != nil {
		return nil, err
	}
	bin, err := postgres.FindBinaries(ctx, "")
	if err != nil {
		return nil, err
	}
	r, err := postgres.NewRunner(bin, "postgres", slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	ca, err := devca.LoadOrCreate(dir)
	if err != nil {
		return nil, err
	}
	hosts := strings.Split(base, ",")
	p := &rawPair{dir: dir, ca: x509.NewCertPool(), devCA: ca}
	p.ca.AppendCertsFromPEM(ca.CertPEM)
	p.caPEM = ca.CertPEM
	for i := range 2 {
		p.nodes[i] = &postgres.Cluster{Dir: filepath.Join(dir, fmt.Sprint("n", i)), SocketDir: postgres.SocketDirFor(dir + fmt.Sprint(i)),
			Host: hosts[i], Port: 5432, R: r,
			// Replication by client certificate, from the other node, as Fog does it.
			Peer: &postgres.Peer{CN: devca.ReplicationCN(fmt.Sprint("raw", 1-i)), Sources: []string{"127.0.0.1", hosts[1-i]}}}
	}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	a := p.nodes[0]
	if err := a.Init(ctx, "C.UTF-8"); err != nil {
		return nil, err
	}
	certs := func(c *postgres.Cluster, standby *postgres.Upstream) error {
		crt, key, err := ca.Issue([]string{"raw"}, []net.IP{net.ParseIP(c.Host)})
		if err != nil {
			return err
		}
		fogUser := "root"
		if u, err := user.Current(); err == nil {
			fogUser = u.Username
		}
		return c.WriteConfig(postgres.Config{Name: filepath.Base(c.Dir), Timezone: "UTC", CertPEM: crt, KeyPEM: key, FogUser: fogUser, CACertPEM: ca.CertPEM, Standby: standby})
	}
	if err := certs(a, nil); err != nil {
		return nil, err
	}
	if err := a.Start(ctx); err != nil {
		return nil, err
	}
	conn, err := a.Connect(ctx, "postgres")
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	if err := postgres.EnsureAdmin(ctx, conn, "fogadmin", pgtypes.SCRAMVerifier(password), false); err != nil {
		return nil, err
	}
	if err := postgres.EnsureReplicationRole(ctx, conn); err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE app OWNER fogadmin"); err != nil {
		return nil, err
	}
	b := p.nodes[1]
	if err := r.MkdirOwned(b.Dir, 0o700); err != nil {
		return nil, err
	}
	up := p.upstream(0, 1)
	if err := b.BaseBackup(ctx, up, nil); err != nil {
		return nil, err
	}
	if err := certs(b, up); err != nil {
		return nil, err
	}
	if err := b.Start(ctx); err != nil {
		return nil, err
	}
	p.configure = certs
	return p, p.waitStreaming(ctx, 1)
}

// upstream is node from as seen by follower.
func (p *rawPair) upstream(from, follower int) *postgres.Upstream {
	crt, key, _ := p.devCA.IssueReplication(fmt.Sprint("raw", follower))
	return &postgres.Upstream{Host: p.nodes[from].Host, Port: 5432, User: postgres.ReplicationUser,
		Slot: fmt.Sprintf("raw_%d", follower), AppName: fmt.Sprintf("raw_%d", follower), CACertPEM: p.caPEM, CertPEM: crt, KeyPEM: key}
}

func (p *rawPair) addr(i int) string { return net.JoinHostPort(p.nodes[i].Host, "5432") }

func (p *rawPair) close() {
	for _, n := range p.nodes {
		_ = n.StopNow(context.Background(), true)
	}
	os.RemoveAll(p.dir)
}

func (p *rawPair) waitStreaming(ctx context.Context, i int) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if c, err := p.nodes[i].Connect(ctx, "postgres"); err == nil {
			var st string
			_ = c.QueryRow(ctx, "SELECT coalesce(max(status), '') FROM pg_stat_wal_receiver").Scan(&st)
			c.Close(ctx)
			if st == "streaming" {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("raw node %d not streaming", i)
}

// switchover is the by-hand planned switchover: CHECKPOINT, fast shutdown, wait until the
// standby has the shutdown checkpoint, pg_ctl promote. It returns when clients may use the
// new primary.
func (p *rawPair) switchover(ctx context.Context) error {
	old, nw := p.nodes[p.primary], p.nodes[1-p.primary]
	c, err := old.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	_, err = c.Exec(ctx, "CHECKPOINT")
	c.Close(ctx)
	if err != nil {
		return err
	}
	if _, err := old.R.Run(ctx, "pg_ctl", "stop", "-D", old.DataDir(), "-m", "fast"); err != nil {
		return err
	}
	ckpt, _, err := old.LatestCheckpoint(ctx)
	if err != nil {
		return err
	}
	want, _ := pgtypes.ParseLSN(ckpt)
	sc, err := nw.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	for {
		var got string
		if err := sc.QueryRow(ctx, "SELECT pg_last_wal_receive_lsn()::text").Scan(&got); err != nil {
			sc.Close(ctx)
			return err
		}
		if l, _ := pgtypes.ParseLSN(got); l > want {
			break
		}
		time.Sleep(time.Millisecond)
	}
	sc.Close(ctx)
	if _, err := nw.R.Run(ctx, "pg_ctl", "promote", "-D", nw.DataDir()); err != nil {
		return err
	}
	p.primary = 1 - p.primary
	return nil
}

// promoteNow is the by-hand forced failover after the primary died: pg_ctl promote.
func (p *rawPair) promoteNow(ctx context.Context) error {
	nw := p.nodes[1-p.primary]
	if _, err := nw.R.Run(ctx, "pg_ctl", "promote", "-D", nw.DataDir()); err != nil {
		return err
	}
	p.primary = 1 - p.primary
	return nil
}

// rejoin makes the old primary a standby of the new one (not timed): a rewind after a crash.
func (p *rawPair) rejoin(ctx context.Context, crashed bool) error {
	old, nw := 1-p.primary, p.primary
	n := p.nodes[old]
	c, err := p.nodes[nw].Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	_ = postgres.EnsureSlot(ctx, c, fmt.Sprintf("raw_%d", old))
	_, _ = c.Exec(ctx, "CHECKPOINT")
	c.Close(ctx)
	up := p.upstream(nw, old)
	if crashed {
		if err := n.CrashRecover(ctx); err != nil {
			return err
		}
		if out, err := n.Rewind(ctx, up); err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
	}
	if err := p.configure(n, up); err != nil {
		return err
	}
	if err := n.Start(ctx); err != nil {
		return err
	}
	return p.waitStreaming(ctx, old)
}

func (p *rawPair) killPrimary() error {
	pid, ok := p.nodes[p.primary].PID()
	if !ok {
		return fmt.Errorf("raw primary not running")
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}
