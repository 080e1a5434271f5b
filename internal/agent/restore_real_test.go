package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fogdb/fog/internal/agent"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/store"
)

// restoreWorld is a real agent's instance with backups, a database app of its admin's with
// rows committed before and after a noted time, and a full backup before them.
type restoreWorld struct {
	t      *testing.T
	ctx    context.Context
	dir    string
	st     store.Store
	spec   instance.Spec
	sys    *postgres.Cluster // reaches the instance as the system role
	target time.Time
	stop   func()
}

const restorePassword = "Secret-pass-1"

func newRestoreWorld(ctx context.Context, t *testing.T, uid string, edit ...func(*agent.Config)) *restoreWorld {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bolt, err := store.OpenBolt(filepath.Join(dir, "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	w := &restoreWorld{t: t, ctx: ctx, dir: dir, st: bolt}
	w.stop = realAgent(ctx, t, dir, bolt, []string{uid}, edit...)
	w.spec = instance.Spec{UID: uid, Name: "mi-restore", Region: "eastus", Generation: 1, Host: "127.0.0.1", Port: freeTCPPort(t),
		Locale: "C.UTF-8", Timezone: "UTC", AdminLogin: "admin1", AdminVerifier: pgtypes.SCRAMVerifier(restorePassword), VCores: 2,
		Backup: &instance.BackupSpec{Stanza: uid, RetentionDays: 7}}
	w.sys = &postgres.Cluster{SocketDir: postgres.SocketDirFor(uid), Port: w.spec.Port}
	if err := store.Put(ctx, bolt, instance.SpecKey("eastus", uid), w.spec); err != nil {
		t.Fatal(err)
	}
	waitStatus(ctx, t, bolt, uid, "Ready with the stanza created", func(s instance.Status) bool {
		return s.Phase == instance.PhaseReady && s.Backup != nil && s.Backup.Stanza == uid
	})

	// The tenant's database and table, made by its admin over TLS as a client would.
	w.exec("postgres", "CREATE DATABASE app OWNER admin1")
	w.adminExec("app", "CREATE TABLE public.t (id int PRIMARY KEY, phase text NOT NULL)")
	w.adminExec("app", "INSERT INTO public.t SELECT g, 'before the backup' FROM generate_series(1, 100) g")
	// A trusted extension the admin made, and a view on it: what pg_restore, as a role that
	// is no superuser, must restore too.
	w.adminExec("app", "CREATE EXTENSION pgcrypto")
	w.adminExec("app", "CREATE VIEW public.v AS SELECT id, pg_catalog.encode(public.digest(phase, 'sha1'), 'hex') AS h FROM public.t")

	w.spec.Generation, w.spec.Backup.Seq, w.spec.Backup.Type = 2, 1, instance.BackupFull
	if err := store.Put(ctx, bolt, instance.SpecKey("eastus", uid), w.spec); err != nil {
		t.Fatal(err)
	}
	st := waitStatus(ctx, t, bolt, uid, "the full backup", func(s instance.Status) bool { return s.Backup != nil && s.Backup.Seq == 1 })
	if st.Backup.Error != "" {
		t.Fatalf("full backup: %s", st.Backup.Error)
	}

	// pgBackRest restores to a time from a backup whose stop time, in whole seconds, is
	// before the time's.
	time.Sleep(time.Until(st.Backup.Backups[0].Stop.Add(time.Second)))
	w.adminExec("app", "INSERT INTO public.t SELECT g, 'after the backup' FROM generate_series(101, 200) g")
	if err := w.conn("app").QueryRow(ctx, "SELECT pg_catalog.clock_timestamp()").Scan(&w.target); err != nil {
		t.Fatal(err)
	}
	// Commit timestamps have microseconds; the next commit is surely later than the target.
	time.Sleep(20 * time.Millisecond)
	w.adminExec("app", "INSERT INTO public.t SELECT g, 'after the target' FROM generate_series(201, 300) g")
	w.adminExec("app", "DROP TABLE public.t CASCADE")
	w.adminExec("app", "CREATE TABLE public.later AS SELECT generate_series(1, 10) AS id")
	return w
}

// conn connects to db as the system role, closed when the test ends.
func (w *restoreWorld) conn(db string) *pgx.Conn {
	w.t.Helper()
	c, err := w.sys.Connect(w.ctx, db)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func (w *restoreWorld) exec(db, sql string) {
	w.t.Helper()
	if _, err := w.conn(db).Exec(w.ctx, sql); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
}

// adminExec runs sql in db as the instance's admin, over TCP and TLS.
func (w *restoreWorld) adminExec(db, sql string) {
	w.t.Helper()
	c, err := pgx.Connect(w.ctx, fmt.Sprintf("host=%s port=%d user=admin1 password=%s dbname=%s sslmode=require", w.spec.Host, w.spec.Port, restorePassword, db))
	if err != nil {
		w.t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(w.ctx, sql); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
}

// restore issues a restore command into database (none: it was issued) and waits until it
// is done, noting the highest progress it published.
func (w *restoreWorld) restore(id, database string) (instance.Command, float64, time.Duration) {
	w.t.Helper()
	if database != "" {
		cmd := instance.Command{ID: id, InstanceUID: w.spec.UID, Kind: instance.CmdRestoreDatabase, SourceDatabase: "app",
			Database: database, Owner: "admin1", Time: w.target.UTC(), Created: time.Now().UTC()}
		if err := store.Put(w.ctx, w.st, instance.CommandKey("eastus", id), cmd); err != nil {
			w.t.Fatal(err)
		}
	}
	started := time.Now()
	var seen float64
	for {
		var c instance.Command
		if _, err := store.Get(w.ctx, w.st, instance.CommandKey("eastus", id), &c); err != nil {
			w.t.Fatal(err)
		}
		if !c.Done {
			seen = max(seen, c.Progress)
		} else {
			return c, seen, time.Since(started)
		}
		select {
		case <-w.ctx.Done():
			w.t.Fatalf("restore %s not done: %+v", id, c)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// checkNothingLeft: the restore's directory, temporary database and role are gone.
func (w *restoreWorld) checkNothingLeft(id string) {
	w.t.Helper()
	dir := filepath.Join(w.dir, "restores", "eastus", id)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := os.Stat(dir)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("the restore's directory %s is still there (%v)", dir, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The scratch cluster is stopped: the server removes its socket when it stops, and Fog
	// the socket's directory.
	if _, err := os.Stat(postgres.SocketDirFor("restore/" + id)); !errors.Is(err, os.ErrNotExist) {
		w.t.Errorf("the scratch cluster's socket directory is still there (%v): is it running?", err)
	}
	var roles, dbs []string
	c := w.conn("postgres")
	rows, err := c.Query(w.ctx, "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname LIKE 'fog\\_restore\\_%'")
	if err == nil {
		roles, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		w.t.Fatal(err)
	}
	rows, err = c.Query(w.ctx, "SELECT datname::text FROM pg_catalog.pg_database WHERE datname LIKE 'fog\\_restore\\_%'")
	if err == nil {
		dbs, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		w.t.Fatal(err)
	}
	if len(roles)+len(dbs) > 0 {
		w.t.Errorf("after restore %s: temporary roles %v and databases %v are left", id, roles, dbs)
	}
}

// checkRestored: db has exactly the rows committed before the target, owned by the admin,
// and the source database is as it was left.
func (w *restoreWorld) checkRestored(db string) {
	w.t.Helper()
	c := w.conn(db)
	var n, lo, hi int
	var after int
	if err := c.QueryRow(w.ctx, `SELECT count(*), min(id), max(id), count(*) FILTER (WHERE phase = 'after the target') FROM public.t`).Scan(&n, &lo, &hi, &after); err != nil {
		w.t.Fatal(err)
	}
	if n != 200 || lo != 1 || hi != 200 || after != 0 {
		w.t.Errorf("%s has %d rows, ids %d to %d, %d after the target; want exactly the 200 committed before it", db, n, lo, hi, after)
	}
	var dbOwner, tableOwner string
	if err := c.QueryRow(w.ctx, `SELECT pg_catalog.pg_get_userbyid(d.datdba)::text, pg_catalog.pg_get_userbyid(c.relowner)::text
		FROM pg_catalog.pg_database d, pg_catalog.pg_class c
		WHERE d.datname = pg_catalog.current_database() AND c.oid = 'public.t'::regclass`).Scan(&dbOwner, &tableOwner); err != nil {
		w.t.Fatal(err)
	}
	if dbOwner != "admin1" || tableOwner != "admin1" {
		w.t.Errorf("%s is owned by %s and its table by %s, want admin1", db, dbOwner, tableOwner)
	}
	var hashed int
	if err := c.QueryRow(w.ctx, "SELECT count(h) FROM public.v").Scan(&hashed); err != nil || hashed != 200 {
		w.t.Errorf("the view on pgcrypto in %s: %d rows, %v; want 200", db, hashed, err)
	}
	src := w.conn("app")
	var later int
	var t *string
	if err := src.QueryRow(w.ctx, "SELECT count(*), pg_catalog.to_regclass('public.t')::text FROM public.later").Scan(&later, &t); err != nil || later != 10 || t != nil {
		w.t.Errorf("the source database: %d rows in later, table t %v, %v; want it as it was left", later, t, err)
	}
}

// TestRestoreADatabaseToAPointInTime restores a real instance's database to a time between
// its writes as a new database of the same instance, through the agent's command: the new
// database has every row committed before the time and none after, belongs to the admin,
// leaves the source alone and nothing of the restore behind; a second restore into the same
// name fails with why and leaves nothing either.
func TestRestoreADatabaseToAPointInTime(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	started := time.Now()
	uid := "b7a1c0de-0000-4000-8000-000000000002"
	w := newRestoreWorld(ctx, t, uid)
	t.Logf("instance, backup and writes: %v", time.Since(started).Round(time.Millisecond))

	c, seen, took := w.restore("restore-1", "app_restored")
	if c.Error != "" || c.Progress != 100 {
		t.Fatalf("restore: %+v", c)
	}
	t.Logf("restore: %v (progress seen up to %.0f%% before done)", took.Round(time.Millisecond), seen)
	if seen <= 0 {
		t.Errorf("no progress was published while the restore ran")
	}
	w.checkRestored("app_restored")
	w.checkNothingLeft("restore-1")
	waitStatus(ctx, t, w.st, uid, "the new database listed", func(s instance.Status) bool { return hasDB(s, "app_restored") })

	c, _, took = w.restore("restore-2", "app_restored")
	if !c.Done || !strings.Contains(c.Error, "exists") {
		t.Errorf("a restore into a taken name: %+v", c)
	}
	t.Logf("a restore into a taken name failed in %v: %s", took.Round(time.Millisecond), c.Error)
	w.checkNothingLeft("restore-2")
	w.checkRestored("app_restored")

	// The name taken while the restore runs: it fails at the rename, after it made its
	// scratch cluster, dump, temporary database and role, and removes them all.
	cmd := instance.Command{ID: "restore-3", InstanceUID: uid, Kind: instance.CmdRestoreDatabase, SourceDatabase: "app",
		Database: "app_late", Owner: "admin1", Time: w.target.UTC(), Created: time.Now().UTC()}
	if err := store.Put(ctx, w.st, instance.CommandKey("eastus", cmd.ID), cmd); err != nil {
		t.Fatal(err)
	}
	c = w.waitProgress(cmd.ID, 40)
	w.adminExec("postgres", "CREATE DATABASE app_late")
	c, _, _ = w.restore(cmd.ID, "")
	if !strings.Contains(c.Error, "exists") {
		t.Errorf("a restore whose name was taken while it ran: %+v", c)
	}
	w.checkNothingLeft(cmd.ID)
}

// waitProgress waits until command id has published progress pct or more, and fails the
// test if it ends first.
func (w *restoreWorld) waitProgress(id string, pct float64) instance.Command {
	w.t.Helper()
	for {
		var c instance.Command
		if _, err := store.Get(w.ctx, w.st, instance.CommandKey("eastus", id), &c); err != nil {
			w.t.Fatal(err)
		}
		if c.Done {
			w.t.Fatalf("command %s ended before it reached %.0f%%: %+v", id, pct, c)
		}
		if c.Progress >= pct {
			return c
		}
		select {
		case <-w.ctx.Done():
			w.t.Fatalf("command %s: %+v", id, c)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestRestoreResumesAfterTheAgentStops: an agent stopped while a restore runs (its scratch
// cluster recovered, the dump or the load under way) leaves the command pending, and the
// next agent completes it from where it was.
func TestRestoreResumesAfterTheAgentStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	uid := "b7a1c0de-0000-4000-8000-000000000003"
	w := newRestoreWorld(ctx, t, uid)
	id := "restore-resumed"
	cmd := instance.Command{ID: id, InstanceUID: uid, Kind: instance.CmdRestoreDatabase, SourceDatabase: "app",
		Database: "app_restored", Owner: "admin1", Time: w.target.UTC(), Created: time.Now().UTC()}
	if err := store.Put(ctx, w.st, instance.CommandKey("eastus", id), cmd); err != nil {
		t.Fatal(err)
	}
	// Stopped once the scratch cluster has recovered to the time (its files restored and
	// marked so), while it is dumped or loaded.
	w.waitProgress(id, 55)
	w.stop()
	var c instance.Command
	if _, err := store.Get(ctx, w.st, instance.CommandKey("eastus", id), &c); err != nil || c.Done {
		t.Fatalf("after the agent stopped the command reads %+v, %v; want pending", c, err)
	}
	if _, err := os.Stat(filepath.Join(w.dir, "restores", "eastus", id, "restored")); err != nil {
		t.Fatalf("the restore's directory does not say its scratch is restored: %v", err)
	}
	t.Logf("agent stopped at %.0f%%", c.Progress)

	realAgent(ctx, t, w.dir, w.st, []string{uid})
	waitStatus(ctx, t, w.st, uid, "Ready again", func(s instance.Status) bool { return s.Phase == instance.PhaseReady })
	for !c.Done {
		select {
		case <-ctx.Done():
			t.Fatalf("the resumed restore: %+v", c)
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := store.Get(ctx, w.st, instance.CommandKey("eastus", id), &c); err != nil {
			t.Fatal(err)
		}
	}
	if c.Error != "" {
		t.Fatalf("the resumed restore failed: %s", c.Error)
	}
	w.checkRestored("app_restored")
	w.checkNothingLeft(id)
}

// TestRestoreADroppedDatabase: a database dropped with SQL is found in the instance's WAL
// (Status.Dropped: the drop record's LSN and the drop's commit time) and restored as it was
// when dropped, and as it was at a time just before the drop with no commit between: there
// the first commit after the time is the drop's own, whose record removed the files, and the
// agent restores just before the drop record instead, which is the same database.
func TestRestoreADroppedDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	uid := "b7a1c0de-0000-4000-8000-000000000004"
	w := newRestoreWorld(ctx, t, uid)
	w.adminExec("app", "INSERT INTO public.later SELECT generate_series(11, 20)")
	sys := w.conn("postgres")
	var before time.Time
	if err := sys.QueryRow(ctx, "SELECT pg_catalog.clock_timestamp()").Scan(&before); err != nil {
		t.Fatal(err)
	}
	if _, err := sys.Exec(ctx, "DROP DATABASE app WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	st := waitStatus(ctx, t, w.st, uid, "the drop found in the WAL", func(s instance.Status) bool { return len(s.Dropped) == 1 })
	d := st.Dropped[0]
	if d.Name != "app" || d.LSN == "" || d.Deleted.Before(before) || d.Deleted.After(time.Now()) || d.OID == 0 {
		t.Fatalf("the drop found: %+v (dropped after %v)", d, before)
	}
	for _, tc := range []struct {
		id, db string
		at     time.Time
	}{{"restore-at-drop", "app_at_drop", d.Deleted}, {"restore-before-drop", "app_before_drop", before}} {
		cmd := instance.Command{ID: tc.id, InstanceUID: uid, Kind: instance.CmdRestoreDatabase, SourceDatabase: "app",
			Database: tc.db, Owner: "admin1", Time: tc.at.UTC(), DropLSN: d.LSN, Dropped: d.Deleted, Created: time.Now().UTC()}
		if err := store.Put(ctx, w.st, instance.CommandKey("eastus", tc.id), cmd); err != nil {
			t.Fatal(err)
		}
		c, _, took := w.restore(tc.id, "")
		if c.Error != "" {
			t.Fatalf("%s: %s", tc.id, c.Error)
		}
		var n int
		if err := w.conn(tc.db).QueryRow(ctx, "SELECT count(*) FROM public.later").Scan(&n); err != nil || n != 20 {
			t.Errorf("%s: the restored database has %d rows (%v), want the 20 committed before the drop", tc.id, n, err)
		}
		w.checkNothingLeft(tc.id)
		t.Logf("%s took %s", tc.id, took.Round(time.Millisecond))
	}
}
