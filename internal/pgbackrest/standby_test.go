package pgbackrest_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/devca"
	"github.com/fogdb/fog/internal/pgbackrest"
	"github.com/fogdb/fog/internal/postgres"
)

// member is one side of a failover group for the standby-backup test: its cluster, its OS
// user and the directory of its region's repository, spool and locks (its user's alone).
type member struct {
	uid  string
	c    *postgres.Cluster
	r    *postgres.Runner
	u    *pgbackrest.User
	bdir string
}

func (m *member) local() pgbackrest.PG {
	return pgbackrest.PG{Path: m.c.DataDir(), SocketPath: m.c.SocketDir, Port: m.c.Port, User: postgres.BackupUser, Database: postgres.SystemDB}
}

// config is a configuration of m's region: its repository, spool and lock, and pg1 local.
func (m *member) config() pgbackrest.Config {
	return pgbackrest.Config{
		Stanza:       "group1",
		Repos:        []pgbackrest.Repo{{Path: filepath.Join(m.bdir, "repo"), Retention: pgbackrest.Retention{FullCount: 2}}},
		PG:           m.local(),
		ArchiveAsync: true, SpoolPath: filepath.Join(m.bdir, "spool"), LockPath: filepath.Join(m.bdir, "lock"),
		ProcessMax: 1, CompressType: "lz4", StartFast: true, ArchiveTimeout: 30,
	}
}

// write writes a configuration of m's, root's and readable by all (no secret in it).
func (m *member) write(t *testing.T, name string, cfg pgbackrest.Config) *pgbackrest.Driver {
	t.Helper()
	text, err := cfg.Render()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(m.bdir, name)
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	bin, _ := pgbackrest.FindBinary("")
	return &pgbackrest.Driver{Bin: bin, Config: path, Stanza: cfg.Stanza, User: m.u, Timeout: 2 * time.Minute}
}

// TestBackupFromTheStandby is the group's backup in the standby's region (docs/backups.md):
// the standby archives what it receives into its own region's repository (archive_mode =
// always), and a backup copies the standby's files into it while the primary only starts and
// stops the backup, through the pgBackRest TLS server its member runs as its own OS user. The
// server admits the partner's replication identity for the group's stanza and no other.
func TestBackupFromTheStandby(t *testing.T) {
	if _, err := pgbackrest.FindBinary(""); err != nil {
		t.Skipf("pgBackRest is not installed (CI installs Debian's pgbackrest): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	started := time.Now()
	pgbin, err := postgres.FindBinaries(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	shared, err := postgres.NewRunner(pgbin, "postgres", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca, err := devca.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	const host = "127.0.0.1"
	mk := func(name string) *member {
		m := &member{uid: "pgbackrest-standby-" + name + "-" + filepath.Base(dir)}
		if m.r, err = shared.ForInstance(m.uid); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { shared.RemoveInstanceUser(m.uid) })
		if os.Geteuid() == 0 {
			if m.u, err = pgbackrest.LookupUser(m.r.Username); err != nil {
				t.Fatal(err)
			}
		}
		m.c = &postgres.Cluster{Dir: filepath.Join(dir, name), SocketDir: postgres.SocketDirFor(dir + name), Host: host, Port: freePort(t, host), R: m.r}
		m.bdir = filepath.Join(dir, "backup-"+name)
		if err := os.Mkdir(m.bdir, 0o711); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"repo", "spool", "lock", "tls"} {
			if err := m.r.MkdirOwned(filepath.Join(m.bdir, d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		return m
	}
	a, b := mk("a"), mk("b")
	if err := a.r.EnsureTraversable(dir); err != nil {
		t.Fatal(err)
	}
	a.c.Peer = &postgres.Peer{CN: devca.ReplicationCN(b.uid), Sources: []string{host}}
	pgConfig := func(m *member, up *postgres.Upstream, archive *postgres.Archive) postgres.Config {
		crt, key, err := ca.Issue([]string{"localhost"}, []net.IP{net.ParseIP(host)})
		if err != nil {
			t.Fatal(err)
		}
		return postgres.Config{Name: filepath.Base(m.c.Dir), Timezone: "UTC", CertPEM: crt, KeyPEM: key, FogUser: me.Username,
			CACertPEM: ca.CertPEM, Standby: up, Archive: archive}
	}

	// The primary, archiving into its region's repository.
	aArchive := a.write(t, "archive.conf", a.config())
	if err := a.c.Init(ctx, "C.UTF-8"); err != nil {
		t.Fatal(err)
	}
	if err := a.c.WriteConfig(pgConfig(a, nil, &postgres.Archive{Command: aArchive.ArchivePushCommand(), Timeout: time.Minute})); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Start(ctx); err != nil {
		t.Fatal(err, a.c.LogTail(10))
	}
	t.Cleanup(func() { a.c.StopNow(context.Background(), true); b.c.StopNow(context.Background(), true) })
	sys := connect(ctx, t, a.c, "postgres")
	if err := postgres.EnsureReplicationRole(ctx, sys); err != nil {
		t.Fatal(err)
	}
	if err := postgres.EnsureMonitorRole(ctx, sys); err != nil {
		t.Fatal(err)
	}
	if err := a.c.EnsureSystemDB(ctx, sys); err != nil {
		t.Fatal(err)
	}
	if err := a.c.EnsureBackupRole(ctx, sys); err != nil {
		t.Fatal(err)
	}
	if err := aArchive.StanzaCreate(ctx); err != nil {
		t.Fatal(err)
	}

	// The standby, seeded from it, archiving what it receives into its own region's.
	bArchive := b.write(t, "archive.conf", b.config())
	if err := b.r.MkdirOwned(b.c.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	crtB, keyB, err := ca.IssueReplication(b.uid)
	if err != nil {
		t.Fatal(err)
	}
	up := &postgres.Upstream{Host: host, Port: a.c.Port, User: postgres.ReplicationUser, Slot: "slot_b", AppName: "b",
		CACertPEM: ca.CertPEM, CertPEM: crtB, KeyPEM: keyB}
	if err := postgres.EnsureSlot(ctx, sys, up.Slot); err != nil {
		t.Fatal(err)
	}
	if err := b.c.BaseBackup(ctx, up, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.c.WriteConfig(pgConfig(b, up, &postgres.Archive{Command: bArchive.ArchivePushCommand(), Always: true, Timeout: time.Minute})); err != nil {
		t.Fatal(err)
	}
	if err := b.c.Start(ctx); err != nil {
		t.Fatal(err, b.c.LogTail(10))
	}
	t.Logf("primary and standby: %v", time.Since(started).Round(time.Millisecond))

	// The primary's member runs the TLS server, admitting the partner's replication identity
	// for the group's stanza. Its certificate names the host by a DNS name: pgBackRest 2.45
	// does not match IP addresses.
	srvCrt, srvKey, err := ca.Issue([]string{"localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"server.crt": srvCrt, "server.key": srvKey} {
		path := filepath.Join(a.bdir, "tls", name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := a.r.Chown(path); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t, host)
	scfg := a.config()
	scfg.Server = &pgbackrest.Server{Address: host, Port: port, CAFile: a.c.CAFile(),
		CertFile: filepath.Join(a.bdir, "tls", "server.crt"), KeyFile: filepath.Join(a.bdir, "tls", "server.key"),
		Auth: map[string][]string{devca.ReplicationCN(b.uid): {"group1"}}}
	server := a.write(t, "server.conf", scfg)
	sctx, stop := context.WithCancel(ctx)
	cmd := server.ServerCommand(sctx)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stop(); _ = cmd.Wait() }()

	// The standby's region: pg1 the primary through its server, pg2 the local standby.
	bcfg := b.config()
	bcfg.ArchiveAsync = false
	bcfg.PG = a.local()
	bcfg.PG.Remote = &pgbackrest.Remote{Host: "localhost", Port: port, CAFile: b.c.CAFile(),
		CertFile: b.c.ReplicationCertFile(), KeyFile: b.c.ReplicationKeyFile(), Config: server.Config}
	standby := b.local()
	bcfg.Standby, bcfg.BackupStandby = &standby, true
	backup := b.write(t, "backup.conf", bcfg)
	if err := waitListening(ctx, net.JoinHostPort(host, strconv.Itoa(port))); err != nil {
		t.Fatal(err)
	}
	if err := backup.StanzaCreate(ctx); err != nil {
		t.Fatal(err)
	}
	app := connect(ctx, t, a.c, "postgres")
	exec(ctx, t, app, "CREATE TABLE public.g AS SELECT generate_series(1, 1000) AS id")
	t0 := time.Now()
	label, err := backup.Backup(ctx, pgbackrest.Full, pgbackrest.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("full backup %s of the standby into its region's repository: %v", label, time.Since(t0).Round(time.Millisecond))
	info, err := bArchive.Info(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	bi, ok := info.Find(label)
	if !ok || bi.Type != pgbackrest.Full || len(info.Archive) != 1 || info.Archive[0].Max < bi.Archive.Stop {
		t.Errorf("the standby's region's repository: backups %+v, archive %+v; want %s with its WAL", info.Backup, info.Archive, label)
	}

	// Another instance's identity, signed by the same CA, is refused by the primary's server.
	crtC, keyC, err := ca.IssueReplication("another-instance")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"other.crt": crtC, "other.key": keyC} {
		path := filepath.Join(b.bdir, "tls", name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := b.r.Chown(path); err != nil {
			t.Fatal(err)
		}
	}
	ocfg := bcfg
	remote := *bcfg.PG.Remote
	remote.CertFile, remote.KeyFile = filepath.Join(b.bdir, "tls", "other.crt"), filepath.Join(b.bdir, "tls", "other.key")
	ocfg.PG.Remote = &remote
	other := b.write(t, "other.conf", ocfg)
	// pgBackRest reports the refused connection to pg1 as no primary found (056).
	if _, err := other.Backup(ctx, pgbackrest.Full, pgbackrest.BackupOptions{}); !pgbackrest.IsCode(err, pgbackrest.CodeDBConnect) {
		t.Errorf("a backup through the primary's server with another instance's certificate = %v, want error %d", err, pgbackrest.CodeDBConnect)
	}
	t.Logf("total: %v", time.Since(started).Round(time.Millisecond))
}

// waitListening waits until something accepts connections on addr.
func waitListening(ctx context.Context, addr string) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return err
		case <-tick.C:
		}
	}
}
