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
	"github.com/jackc/pgx/v5"
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
		ProcessMax: 1, CompressType: "zst", StartFast: true, ArchiveTimeout: 30,
		// Both members archive with archive_mode=always, whatever their role, so that a
		// promotion needs no restart; pgBackRest's archive check refuses that mode.
		NoArchiveCheck: true,
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
// Then a failover: the promoted standby archives its new timeline into the same stanza, its
// next backup is a differential one on the full backup taken while it was a standby, and that
// backup restores the rows of both timelines.
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
	if err := a.c.WriteConfig(pgConfig(a, nil, &postgres.Archive{Command: aArchive.ArchivePushCommand(), Always: true, Timeout: time.Minute})); err != nil {
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
	var waited bool
	defer func() {
		stop()
		if !waited {
			_ = cmd.Wait()
		}
	}()

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
	info, err := bArchive.Info(ctx, label)
	if err != nil {
		t.Fatal(err)
	}
	bi, _ := info.Find(label)
	if err := bArchive.WaitArchived(ctx, bi.Archive.Stop, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Logf("full backup %s of the standby into its region's repository, with its WAL: %v", label, time.Since(t0).Round(time.Millisecond))
	if info, err = bArchive.Info(ctx, ""); err != nil {
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

	// Failover: the primary stops, the standby is promoted (timeline 2) and keeps archiving
	// into its region's repository with the configuration it had.
	exec(ctx, t, app, "INSERT INTO public.g SELECT generate_series(1001, 2000)")
	var flushed string
	if err := app.QueryRow(ctx, "SELECT pg_catalog.pg_current_wal_flush_lsn()::text").Scan(&flushed); err != nil {
		t.Fatal(err)
	}
	bsys := connect(ctx, t, b.c, "postgres")
	waitReplayed(ctx, t, bsys, flushed)
	stop()
	_, waited = cmd.Wait(), true
	if err := a.c.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	if err := postgres.Promote(ctx, bsys); err != nil {
		t.Fatal(err)
	}
	waitPromoted(ctx, t, bsys)
	// As Fog's promotion does: pg_control names the new timeline only after a checkpoint,
	// and pgBackRest refuses a backup while the two differ (058).
	if err := postgres.Checkpoint(ctx, bsys); err != nil {
		t.Fatal(err)
	}
	exec(ctx, t, bsys, "INSERT INTO public.g SELECT generate_series(2001, 3000)")
	t0 = time.Now()
	diff, err := bArchive.Backup(ctx, pgbackrest.Diff, pgbackrest.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info, err = bArchive.Info(ctx, diff); err != nil {
		t.Fatal(err)
	}
	if d, ok := info.Find(diff); ok {
		if err := bArchive.WaitArchived(ctx, d.Archive.Stop, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("after the failover, diff backup %s of the new primary, with its WAL: %v", diff, time.Since(t0).Round(time.Millisecond))
	if info, err = bArchive.Info(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if d, ok := info.Find(diff); !ok || d.Type != pgbackrest.Diff || d.Prior != label {
		t.Errorf("backups after the failover: %+v; want the diff %s on the full %s", info.Backup, diff, label)
	}
	if len(info.Archive) != 1 || info.Archive[0].Max[:8] != "00000002" {
		t.Errorf("archive after the failover: %+v; want timeline 2's WAL in the same stanza", info.Archive)
	}

	// That backup restores, to its end, the rows of both timelines.
	scratch := &postgres.Cluster{Dir: filepath.Join(dir, "scratch"), SocketDir: postgres.SocketDirFor(dir + "scratch"), Host: host, Port: freePort(t, host), R: b.r}
	if err := b.r.MkdirOwned(scratch.DataDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	rcfg := b.config()
	rcfg.ArchiveAsync = false
	for _, sub := range []string{"restore-spool", "restore-lock"} {
		if err := b.r.MkdirOwned(filepath.Join(b.bdir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	rcfg.SpoolPath, rcfg.LockPath = filepath.Join(b.bdir, "restore-spool"), filepath.Join(b.bdir, "restore-lock")
	restore := b.write(t, "restore.conf", rcfg)
	if err := restore.Restore(ctx, pgbackrest.RestoreOptions{Path: scratch.DataDir(), Set: diff, Type: "immediate",
		TargetAction: "pause", ArchiveOff: true}); err != nil {
		t.Fatal(err)
	}
	if err := scratch.WriteConfig(pgConfig(&member{c: scratch}, nil, nil)); err != nil {
		t.Fatal(err)
	}
	if err := scratch.Start(ctx); err != nil {
		t.Fatal(err, scratch.LogTail(20))
	}
	t.Cleanup(func() { scratch.StopNow(context.Background(), true) })
	sc := connect(ctx, t, scratch, "postgres")
	waitPaused(ctx, t, sc)
	var n, hi int
	if err := sc.QueryRow(ctx, "SELECT count(*), max(id) FROM public.g").Scan(&n, &hi); err != nil || n != 3000 || hi != 3000 {
		t.Errorf("restored from the diff after the failover: %d rows, max %d, %v; want 3000 (both timelines)", n, hi, err)
	}
	t.Logf("total: %v", time.Since(started).Round(time.Millisecond))
}

// waitReplayed waits until the standby has replayed WAL up to lsn.
func waitReplayed(ctx context.Context, t *testing.T, conn *pgx.Conn, lsn string) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var done bool
		if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_last_wal_replay_lsn() OPERATOR(pg_catalog.>=) $1::pg_catalog.pg_lsn", lsn).Scan(&done); err != nil {
			t.Fatal(err)
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the standby did not replay up to %s", lsn)
		case <-tick.C:
		}
	}
}

// waitPromoted waits until the server is out of recovery.
func waitPromoted(ctx context.Context, t *testing.T, conn *pgx.Conn) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var inRecovery bool
		if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_is_in_recovery()").Scan(&inRecovery); err != nil {
			t.Fatal(err)
		}
		if !inRecovery {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the standby was not promoted")
		case <-tick.C:
		}
	}
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
