package pgbackrest_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/devca"
	"github.com/fogdb/fog/internal/freeport"
	"github.com/fogdb/fog/internal/pgbackrest"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/jackc/pgx/v5"
)

func freePort(t *testing.T, host string) int {
	t.Helper()
	p, err := freeport.PortOn(host)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// instance is a running PostgreSQL cluster that archives into a stanza of a posix
// repository, everything of it (data, repository, spool, locks) its own OS user's when the
// test runs as root, as docs/backups.md lays it out.
type instance struct {
	c      *postgres.Cluster
	r      *postgres.Runner
	ca     *devca.CA
	d      *pgbackrest.Driver
	cfg    pgbackrest.Config
	dir    string // root's: holds the configuration files
	fogUsr string
	// secret: the configuration holds a credential (a SAS), so it is readable by the
	// instance's group only, as the agent writes it.
	secret bool
}

func startInstance(ctx context.Context, t *testing.T) *instance {
	t.Helper()
	return startInstanceWith(ctx, t, instanceOptions{})
}

// instanceOptions change what startInstance makes.
type instanceOptions struct {
	// Stanza is the stanza's name ("s1" when empty).
	Stanza string
	// Repos returns the repositories (else a posix one under dir); their configuration
	// then holds a credential, and is written readable by the instance's group alone.
	Repos func(dir string) []pgbackrest.Repo
}

func startInstanceWith(ctx context.Context, t *testing.T, o instanceOptions) *instance {
	t.Helper()
	stanza := o.Stanza
	if stanza == "" {
		stanza = "s1"
	}
	bin, err := pgbackrest.FindBinary("")
	if err != nil {
		t.Skipf("pgBackRest is not installed (CI installs Debian's pgbackrest): %v", err)
	}
	pgbin, err := postgres.FindBinaries(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	shared, err := postgres.NewRunner(pgbin, "postgres", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	uid := "pgbackrest-test-" + filepath.Base(dir)
	r, err := shared.ForInstance(uid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shared.RemoveInstanceUser(uid) })
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	host := "127.0.0.1"
	c := &postgres.Cluster{Dir: filepath.Join(dir, "i1"), SocketDir: postgres.SocketDirFor(dir), Host: host, Port: freePort(t, host), R: r}
	if err := c.Init(ctx, "C.UTF-8"); err != nil {
		t.Fatal(err)
	}
	ca, err := devca.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The repository, spool, lock and log directories: the instance's user's alone, in a
	// directory of root's it may only pass through.
	bdir := filepath.Join(dir, "backup")
	if err := os.Mkdir(bdir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := r.EnsureTraversable(dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"repo", "spool", "lock", "log"} {
		if err := r.MkdirOwned(filepath.Join(bdir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	in := &instance{c: c, r: r, ca: ca, dir: bdir, fogUsr: me.Username}
	repos := []pgbackrest.Repo{{Path: filepath.Join(bdir, "repo"), Retention: pgbackrest.Retention{FullCount: 2}}}
	if o.Repos != nil {
		repos, in.secret = o.Repos(bdir), true
	}
	in.cfg = pgbackrest.Config{
		Stanza: stanza,
		Repos:  repos,
		PG: pgbackrest.PG{Path: c.DataDir(), SocketPath: c.SocketDir, Port: c.Port,
			User: postgres.BackupUser, Database: postgres.SystemDB},
		ArchiveAsync: true, SpoolPath: filepath.Join(bdir, "spool"), ArchivePushQueueMax: 256 << 20,
		ProcessMax: 1, CompressType: "zst", LockPath: filepath.Join(bdir, "lock"),
		LogPath: filepath.Join(bdir, "log"), StartFast: true, ArchiveTimeout: 30,
	}
	var u *pgbackrest.User
	if os.Geteuid() == 0 {
		if u, err = pgbackrest.LookupUser(r.Username); err != nil {
			t.Fatal(err)
		}
	}
	in.d = &pgbackrest.Driver{Bin: bin, Config: filepath.Join(bdir, "pgbackrest.conf"), Stanza: stanza, User: u, Timeout: 2 * time.Minute}
	in.writeConf(t, in.d.Config, in.cfg)

	if err := c.WriteConfig(in.pgConfig(t, c, &postgres.Archive{Command: in.d.ArchivePushCommand(), Timeout: time.Minute})); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err, c.LogTail(10))
	}
	t.Cleanup(func() { c.Stop(context.Background(), "immediate") })
	sys := in.system(ctx, t, "postgres")
	if err := postgres.EnsureMonitorRole(ctx, sys); err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureSystemDB(ctx, sys); err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureBackupRole(ctx, sys); err != nil {
		t.Fatal(err)
	}
	return in
}

// writeConf writes a pgBackRest configuration as Fog does: root's, readable by all when it
// holds no secret (a posix repository), else by the instance's group alone.
func (in *instance) writeConf(t *testing.T, path string, cfg pgbackrest.Config) {
	t.Helper()
	text, err := cfg.Render()
	if err != nil {
		t.Fatal(err)
	}
	if !in.secret {
		if err := os.WriteFile(path, text, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if in.d.User != nil {
		if err := f.Chown(0, int(in.d.User.GID)); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(f.Chmod(0o640), writeAll(f, text)); err != nil {
		t.Fatal(err)
	}
}

func writeAll(f *os.File, b []byte) error {
	_, err := f.Write(b)
	return err
}

func (in *instance) pgConfig(t *testing.T, c *postgres.Cluster, a *postgres.Archive) postgres.Config {
	t.Helper()
	cert, key, err := in.ca.Issue([]string{"i1.test"}, []net.IP{net.ParseIP(c.Host)})
	if err != nil {
		t.Fatal(err)
	}
	return postgres.Config{Name: "i1", Timezone: "UTC", FogUser: in.fogUsr, CertPEM: cert, KeyPEM: key, Archive: a}
}

// system connects as the system role to db of in's cluster, closed when the test ends.
func (in *instance) system(ctx context.Context, t *testing.T, db string) *pgx.Conn {
	t.Helper()
	return connect(ctx, t, in.c, db)
}

func connect(ctx context.Context, t *testing.T, c *postgres.Cluster, db string) *pgx.Conn {
	t.Helper()
	conn, err := c.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exec(ctx context.Context, t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TestPointInTimeRestoreOfOneDatabase is a database's point-in-time restore as Fog will do
// it: a full backup, more commits, a time noted, commits after it and a dropped table, a
// differential backup; then the full backup restored with --db-include of that database
// alone into a scratch data directory, recovered to the time and paused there (no new
// timeline, archiving off), started on a port and socket of its own: it has exactly the rows
// committed before the time, and the other database is not restored.
func TestPointInTimeRestoreOfOneDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	started := time.Now()
	in := startInstance(ctx, t)
	d := in.d
	if err := d.StanzaCreate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.StanzaCreate(ctx); err != nil {
		t.Fatalf("a second StanzaCreate = %v, want nil (harmless to repeat)", err)
	}
	if err := d.Check(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster, stanza and check: %v", time.Since(started).Round(time.Millisecond))

	sys := in.system(ctx, t, "postgres")
	for _, db := range []string{"app", "other"} {
		if err := postgres.CreateDatabase(ctx, sys, db, postgres.SystemUser); err != nil {
			t.Fatal(err)
		}
	}
	app := in.system(ctx, t, "app")
	exec(ctx, t, app, "CREATE TABLE public.t (id int PRIMARY KEY, phase text NOT NULL)")
	exec(ctx, t, app, "INSERT INTO public.t SELECT g, 'before the full backup' FROM generate_series(1, 100) g")
	exec(ctx, t, in.system(ctx, t, "other"), "CREATE TABLE public.o AS SELECT generate_series(1, 10) AS id")

	t0 := time.Now()
	full, err := d.Backup(ctx, pgbackrest.Full, pgbackrest.BackupOptions{Annotations: map[string]string{"fog-operation": "test"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("full backup %s: %v", full, time.Since(t0).Round(time.Millisecond))

	exec(ctx, t, app, "INSERT INTO public.t SELECT g, 'after the full backup' FROM generate_series(101, 200) g")
	var target time.Time
	if err := app.QueryRow(ctx, "SELECT pg_catalog.clock_timestamp()").Scan(&target); err != nil {
		t.Fatal(err)
	}
	// Commit timestamps have microseconds; the next commit is surely later than target.
	time.Sleep(20 * time.Millisecond)
	exec(ctx, t, app, "INSERT INTO public.t SELECT g, 'after the target' FROM generate_series(201, 300) g")
	exec(ctx, t, app, "DROP TABLE public.t")

	t0 = time.Now()
	diff, err := d.Backup(ctx, pgbackrest.Diff, pgbackrest.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("diff backup %s: %v", diff, time.Since(t0).Round(time.Millisecond))

	info, err := d.Info(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	checkInfo(ctx, t, sys, info, full, diff)
	one, err := d.Info(ctx, full)
	if err != nil {
		t.Fatal(err)
	}
	if b, ok := one.Find(full); !ok || len(one.Backup) != 1 || b.Annotation["fog-operation"] != "test" || !hasDatabase(b, "app") || !hasDatabase(b, "other") {
		t.Errorf("Info(%s) = %+v; want that backup alone, its annotation and its databases", full, one.Backup)
	}

	// The restore job's own configuration: the same repository, a spool and lock of its
	// own, no async archive-get, so nothing it does touches the live instance's queue.
	for _, sub := range []string{"restore-spool", "restore-lock"} {
		if err := in.r.MkdirOwned(filepath.Join(in.dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	rcfg := in.cfg
	rcfg.ArchiveAsync, rcfg.SpoolPath, rcfg.LockPath = false, filepath.Join(in.dir, "restore-spool"), filepath.Join(in.dir, "restore-lock")
	rd := *d
	rd.Config = filepath.Join(in.dir, "restore.conf")
	in.writeConf(t, rd.Config, rcfg)

	host := "127.0.0.1"
	scratch := &postgres.Cluster{Dir: filepath.Join(filepath.Dir(in.c.Dir), "scratch"), SocketDir: postgres.SocketDirFor(in.c.Dir + "/scratch"),
		Host: host, Port: freePort(t, host), R: in.r}
	if err := in.r.MkdirOwned(scratch.DataDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	var last float64
	t0 = time.Now()
	opts := pgbackrest.RestoreOptions{
		Path: scratch.DataDir(), Set: full, Type: "time", Target: target.UTC().Format("2006-01-02 15:04:05.999999-07"),
		TargetAction: "pause", DBInclude: []string{"app"}, ArchiveOff: true,
	}
	withProgress := opts
	withProgress.Progress = func(f float64) {
		if f < last {
			t.Errorf("restore progress went back from %v to %v", last, f)
		}
		last = f
	}
	if err := rd.Restore(ctx, withProgress); err != nil {
		t.Fatal(err)
	}
	t.Logf("restore of %s into the scratch directory: %v (progress reached %.0f%%)", full, time.Since(t0).Round(time.Millisecond), last*100)
	if last < 0.99 {
		t.Errorf("restore progress ended at %v, want 1", last)
	}
	// The recovery settings pgBackRest wrote fetch WAL with the job's configuration, not the
	// live instance's (whose spool and locks are the instance's own).
	auto, err := scratch.ReadFile("pgdata/postgresql.auto.conf", 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(auto), "--config="+rd.Config) || !strings.Contains(string(auto), "archive-get") {
		t.Errorf("postgresql.auto.conf of the restored cluster:\n%s\nwant a restore_command with --config=%s", auto, rd.Config)
	}
	// Fog's settings for the scratch cluster replace the restored ones: its own port and
	// socket, no archiving; pgBackRest's recovery settings (postgresql.auto.conf) stay.
	if err := scratch.WriteConfig(in.pgConfig(t, scratch, nil)); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	if err := scratch.Start(ctx); err != nil {
		t.Fatal(err, scratch.LogTail(20))
	}
	t.Cleanup(func() { scratch.Stop(context.Background(), "immediate") })
	sapp := connect(ctx, t, scratch, "app")
	// Recovery pauses at the target once it is reached; the server accepts reads before that.
	waitPaused(ctx, t, sapp)
	t.Logf("recovery to the target: %v", time.Since(t0).Round(time.Millisecond))

	checkRows(ctx, t, scratch, sapp)
	var archiveMode string
	if err := sapp.QueryRow(ctx, "SELECT pg_catalog.current_setting('archive_mode')").Scan(&archiveMode); err != nil || archiveMode != "off" {
		t.Errorf("the scratch cluster's archive_mode = %q, %v; want off (it must never push into the stanza)", archiveMode, err)
	}
	// The database left out of --db-include is not usable (its files are empty).
	if conn, err := scratch.Connect(ctx, "other"); err == nil {
		var m int
		err = conn.QueryRow(ctx, "SELECT count(*) FROM public.o").Scan(&m)
		conn.Close(ctx)
		if err == nil {
			t.Errorf("the excluded database was restored: %d rows", m)
		}
	}

	// A restore step that is redone after a crash restores again over what the first attempt
	// left, with --delta, and recovers to the same point.
	sapp.Close(ctx)
	if err := scratch.Stop(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	delta := opts
	delta.Delta = true
	t0 = time.Now()
	if err := rd.Restore(ctx, delta); err != nil {
		t.Fatal(err)
	}
	if err := scratch.WriteConfig(in.pgConfig(t, scratch, nil)); err != nil {
		t.Fatal(err)
	}
	if err := scratch.Start(ctx); err != nil {
		t.Fatal(err, scratch.LogTail(20))
	}
	sapp = connect(ctx, t, scratch, "app")
	waitPaused(ctx, t, sapp)
	checkRows(ctx, t, scratch, sapp)
	t.Logf("the same restore again with --delta, and its recovery: %v", time.Since(t0).Round(time.Millisecond))

	if out, err := d.Verify(ctx); err != nil {
		t.Errorf("verify: %v\n%s", err, out)
	}
	// Archived finds a file of the archive by name (the seed's check for a timeline's
	// history file), and not one that is not there.
	if in, err := d.Info(ctx, ""); err != nil || len(in.Archive) == 0 {
		t.Errorf("info: %v (%+v)", err, in)
	} else {
		if ok, err := d.Archived(ctx, in.Archive[0].Max); err != nil || !ok {
			t.Errorf("Archived(%s) = %v, %v; want true", in.Archive[0].Max, ok, err)
		}
		if ok, err := d.Archived(ctx, "00000009.history"); err != nil || ok {
			t.Errorf("Archived(00000009.history) = %v, %v; want false", ok, err)
		}
	}
	if err := d.Expire(ctx, ""); err != nil {
		t.Errorf("expire: %v", err)
	}
	t.Logf("total: %v", time.Since(started).Round(time.Millisecond))
}

func checkInfo(ctx context.Context, t *testing.T, sys *pgx.Conn, info *pgbackrest.Info, full, diff string) {
	t.Helper()
	if info.Status.Code != pgbackrest.StatusOK {
		t.Errorf("info status = %+v, want ok", info.Status)
	}
	// pg_control_system() shows the identifier as a signed bigint, pgBackRest unsigned.
	var signed int64
	if err := sys.QueryRow(ctx, "SELECT system_identifier FROM pg_catalog.pg_control_system()").Scan(&signed); err != nil {
		t.Fatal(err)
	}
	if sysid := uint64(signed); len(info.DB) != 1 || info.DB[0].SystemID != sysid {
		t.Errorf("info db = %+v, want one with system id %d", info.DB, sysid)
	}
	if len(info.Backup) != 2 {
		t.Fatalf("info has %d backups, want 2: %+v", len(info.Backup), info.Backup)
	}
	f, ok1 := info.Find(full)
	df, ok2 := info.Find(diff)
	if !ok1 || !ok2 || f.Type != pgbackrest.Full || df.Type != pgbackrest.Diff || df.Prior != full {
		t.Errorf("backups = %+v; want the full %s and the diff %s on it", info.Backup, full, diff)
	}
	for _, b := range []pgbackrest.BackupInfo{f, df} {
		if b.LSN.Start == "" || b.LSN.Stop == "" || b.Archive.Start == "" || b.Archive.Stop == "" ||
			b.Info.Size <= 0 || b.Info.Repository.Size <= 0 || b.Stop().Before(b.Start()) || b.Repo() != 1 || b.Failed() {
			t.Errorf("backup %s: %+v; want LSNs, WAL, sizes and times", b.Label, b)
		}
	}
	if latest, ok := info.Latest(0); !ok || latest.Label != diff {
		t.Errorf("Latest = %s, want %s", latest.Label, diff)
	}
	if e, ok := info.Earliest(1); !ok || !e.Equal(f.Stop()) {
		t.Errorf("Earliest = %v, want the full backup's end %v", e, f.Stop())
	}
	if len(info.Archive) != 1 || info.Archive[0].Min == "" || info.Archive[0].Max < df.Archive.Stop {
		t.Errorf("archive = %+v, want WAL through %s", info.Archive, df.Archive.Stop)
	}
}

// waitPaused waits until recovery has reached its target and paused.
func waitPaused(ctx context.Context, t *testing.T, conn *pgx.Conn) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var state string
		if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_get_wal_replay_pause_state()").Scan(&state); err != nil {
			t.Fatal(err)
		}
		if state == "paused" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("recovery did not pause at the target (state %s)", state)
		case <-tick.C:
		}
	}
}

// TestNoStanza: commands on a stanza that was never created fail with pgBackRest's code, and
// info reports it missing rather than failing.
func TestNoStanza(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bin, err := pgbackrest.FindBinary("")
	if err != nil {
		t.Skipf("pgBackRest is not installed (CI installs Debian's pgbackrest): %v", err)
	}
	dir := t.TempDir()
	cfg := pgbackrest.Config{Stanza: "nothing", Repos: []pgbackrest.Repo{{Path: filepath.Join(dir, "repo")}},
		PG: pgbackrest.PG{Path: filepath.Join(dir, "pgdata")}, LockPath: filepath.Join(dir, "lock"), SpoolPath: filepath.Join(dir, "spool")}
	text, err := cfg.Render()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "pgbackrest.conf")
	if err := os.WriteFile(conf, text, 0o600); err != nil {
		t.Fatal(err)
	}
	d := &pgbackrest.Driver{Bin: bin, Config: conf, Stanza: "nothing"}
	info, err := d.Info(ctx, "")
	if err != nil || info.Status.Code != pgbackrest.StatusMissing {
		t.Errorf("Info = %+v, %v; want status %d (missing stanza)", info, err, pgbackrest.StatusMissing)
	}
	err = d.Expire(ctx, "")
	var e *pgbackrest.Error
	if !errors.As(err, &e) || e.Code == 0 || e.Message == "" {
		t.Errorf("Expire on a missing stanza = %v, want a pgBackRest error with its code", err)
	}
}

func hasDatabase(b pgbackrest.BackupInfo, name string) bool {
	for _, d := range b.DatabaseRef {
		if d.Name == name {
			return true
		}
	}
	return false
}

// checkRows checks that the restored table has exactly the rows committed before the target.
func checkRows(ctx context.Context, t *testing.T, c *postgres.Cluster, conn *pgx.Conn) {
	t.Helper()
	var n, lo, hi, phases int
	if err := conn.QueryRow(ctx, "SELECT count(*), min(id), max(id), count(DISTINCT phase) FROM public.t").Scan(&n, &lo, &hi, &phases); err != nil {
		t.Fatalf("the restored table: %v; log: %s", err, c.LogTail(10))
	}
	if n != 200 || lo != 1 || hi != 200 || phases != 2 {
		t.Errorf("restored rows: count %d, ids %d..%d, %d phases; want 200, 1..200, 2 (exactly what was committed before the target)", n, lo, hi, phases)
	}
}
