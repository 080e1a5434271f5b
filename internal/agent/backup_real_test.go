package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/agent"
	"github.com/fogdb/fog/internal/devca"
	"github.com/fogdb/fog/internal/freeport"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgbackrest"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/store"
)

// realAgent runs an agent of region eastus over real PostgreSQL and pgBackRest, in dir,
// until the test ends or stop is called (which returns once it has stopped, its instances
// stopped with it). When the test ends the OS users of instances uids are removed (only
// those: other tests on the machine may have instances of their own).
func realAgent(ctx context.Context, t *testing.T, dir string, st store.Store, uids []string, edit ...func(*agent.Config)) (stop func()) {
	t.Helper()
	if _, err := pgbackrest.FindBinary(""); err != nil {
		t.Skipf("pgBackRest is not installed (CI installs Debian's pgbackrest): %v", err)
	}
	bin, err := postgres.FindBinaries(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var out io.Writer = io.Discard
	if testing.Verbose() {
		out = os.Stderr
	}
	if w, ok := agentLogs.Load(t); ok {
		out = io.MultiWriter(out, w.(io.Writer))
	}
	log := slog.New(slog.NewTextHandler(out, nil))
	r, err := postgres.NewRunner(bin, "postgres", log)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := devca.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.Config{Region: "eastus", Dir: filepath.Join(dir, "instances"), FogUser: me.Username,
		Resync: 500 * time.Millisecond, Observe: 500 * time.Millisecond, StopOnExit: true,
		Record: instance.AgentRecord{AddressFirst: "127.0.0.1", AddressLast: "127.0.0.1", Port: 5432}}
	for _, e := range edit {
		e(&cfg)
	}
	a, err := agent.New(cfg, st, r, ca, log)
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = a.Run(actx); close(done) }()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(func() {
		stop()
		for _, uid := range uids {
			r.RemoveInstanceUser(uid)
		}
	})
	return stop
}

// agentLogs holds, by test, a writer that gets a copy of what realAgent's agent logs.
var agentLogs sync.Map

func freeTCPPort(t *testing.T) int {
	t.Helper()
	p, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitStatus polls instance uid's status until ok holds for it.
func waitStatus(ctx context.Context, t *testing.T, st store.Store, uid string, what string, ok func(instance.Status) bool) instance.Status {
	t.Helper()
	var s instance.Status
	for {
		// A fresh value each time: JSON leaves what the new status omits as it was.
		s = instance.Status{}
		_, err := store.Get(ctx, st, instance.StatusKey("eastus", uid), &s)
		if err == nil && ok(s) {
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: last status phase %s error %q (backup %+v)", what, s.Phase, s.Error, derefBackup(s.Backup))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestBackupsOfARealInstance: an instance whose spec has backups archives its WAL into the
// region's repository with archive_mode=always, its stanza is created there, and a backup the
// spec asks for is taken once, published with its size and WAL range, and not taken again
// when the agent asks after it is done; each is followed by pgBackRest's verify, which finds
// a file that rotted in the repository; the files are laid out as docs/backups.md says.
// backupWorld is a real agent and one instance with backups, Ready with its stanza.
func backupWorld(ctx context.Context, t *testing.T, edit ...func(*agent.Config)) (dir string, bolt store.Store, spec instance.Spec) {
	t.Helper()
	dir = t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := store.OpenBolt(filepath.Join(dir, "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	uid := "b7a1c0de-0000-4000-8000-000000000001"
	realAgent(ctx, t, dir, b, []string{uid}, edit...)
	spec = instance.Spec{UID: uid, Name: "mi-backup", Region: "eastus", Generation: 1, Host: "127.0.0.1", Port: freeTCPPort(t),
		Locale: "C.UTF-8", Timezone: "UTC", AdminLogin: "admin1", AdminVerifier: pgtypes.SCRAMVerifier("Secret-pass-1"), VCores: 2,
		Backup: &instance.BackupSpec{Stanza: uid, RetentionDays: 7}}
	if err := store.Put(ctx, b, instance.SpecKey("eastus", uid), spec); err != nil {
		t.Fatal(err)
	}
	return dir, b, spec
}

// askBackup writes spec with backup seq of typ asked for.
func askBackup(ctx context.Context, t *testing.T, bolt store.Store, spec *instance.Spec, seq int64, typ string) {
	t.Helper()
	spec.Generation++
	spec.Backup.Seq, spec.Backup.Type = seq, typ
	if err := store.Put(ctx, bolt, instance.SpecKey("eastus", spec.UID), *spec); err != nil {
		t.Fatal(err)
	}
}

func TestBackupsOfARealInstance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir, bolt, spec := backupWorld(ctx, t)
	uid := spec.UID
	st := waitStatus(ctx, t, bolt, uid, "Ready with the stanza created", func(s instance.Status) bool {
		return s.Phase == instance.PhaseReady && s.Backup != nil && s.Backup.Stanza == uid
	})
	if st.Backup.Health != instance.BackupHealthy {
		t.Errorf("backup health %q (%s), want Healthy", st.Backup.Health, st.Backup.Error)
	}

	// The first backup: a full one.
	askBackup(ctx, t, bolt, &spec, 1, instance.BackupFull)
	st = waitStatus(ctx, t, bolt, uid, "backup 1 done", func(s instance.Status) bool { return s.Backup != nil && s.Backup.Seq == 1 })
	if st.Backup.Error != "" || len(st.Backup.Backups) != 1 {
		t.Fatalf("after backup 1: error %q, backups %+v", st.Backup.Error, st.Backup.Backups)
	}
	b := st.Backup.Backups[0]
	if b.Type != instance.BackupFull || b.Seq != 1 || b.Size <= 0 || b.WALStop == "" || b.Stop.Before(b.Start) {
		t.Errorf("backup 1 reads %+v", b)
	}
	// Archiving: the backup's last segment, at least, was archived, with archive_mode=always.
	st = waitStatus(ctx, t, bolt, uid, "the archiver to report a segment", func(s instance.Status) bool {
		return s.Backup.Archive.LastArchivedWAL != ""
	})
	if st.Backup.Archive.Error != "" {
		t.Errorf("archive error: %s", st.Backup.Archive.Error)
	}

	// A differential one.
	askBackup(ctx, t, bolt, &spec, 2, instance.BackupDiff)
	st = waitStatus(ctx, t, bolt, uid, "backup 2 done and verified", func(s instance.Status) bool {
		return s.Backup != nil && s.Backup.Seq == 2 && (s.Backup.Error != "" || s.Backup.Verify != nil && s.Backup.Verify.Seq == 2)
	})
	if st.Backup.Error != "" || len(st.Backup.Backups) != 2 || st.Backup.Backups[1].Type != instance.BackupDiff || st.Backup.Backups[1].Seq != 2 {
		t.Fatalf("after backup 2: error %q, backups %+v", st.Backup.Error, st.Backup.Backups)
	}
	if v := st.Backup.Verify; v == nil || v.Seq != 2 || v.Error != "" {
		t.Fatalf("backup 2's verification: %+v", v)
	}

	// A file of the full backup rots in the repository: the next backup, which only builds on
	// the full one's manifest, succeeds, and its verification finds the file.
	rotten := filepath.Join(dir, "backups", "eastus", uid, "backup", uid, b.Label, "pg_data", "PG_VERSION.zst")
	if err := os.WriteFile(rotten, []byte("not what was backed up"), 0o600); err != nil {
		t.Fatal(err)
	}
	askBackup(ctx, t, bolt, &spec, 3, instance.BackupDiff)
	st = waitStatus(ctx, t, bolt, uid, "backup 3 done and verified", func(s instance.Status) bool {
		return s.Backup != nil && s.Backup.Seq == 3 && (s.Backup.Error != "" || s.Backup.Verify != nil && s.Backup.Verify.Seq == 3)
	})
	if v := st.Backup.Verify; st.Backup.Error != "" || v == nil || v.Seq != 3 || v.Error == "" || st.Backup.Health != instance.BackupDegraded {
		t.Fatalf("after a file rotted: error %q, verify %+v, health %s", st.Backup.Error, v, st.Backup.Health)
	}
	t.Logf("verification found: %s", st.Backup.Verify.Error)

	// The layout: the repository root is root's and passable only; the stanza's directory is
	// the instance's user's alone; the configuration is root's, readable by the instance's
	// group only.
	repo := filepath.Join(dir, "backups", "eastus")
	checkMode(t, repo, 0o711)
	checkMode(t, filepath.Join(repo, uid), 0o700)
	checkMode(t, filepath.Join(dir, "instances", uid, "pgbackrest.conf"), 0o640)
	conf, err := os.ReadFile(filepath.Join(dir, "instances", uid, "pgbackrest.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"repo1-path=" + filepath.Join(repo, uid), "archive-async=y", "lock-path=" + filepath.Join(dir, "instances", uid, "pgbackrest", "lock")} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("pgbackrest.conf lacks %q:\n%s", want, conf)
		}
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s: mode %o, want %o", path, fi.Mode().Perm(), want)
	}
}

// TestArchiveGapWhenTheRepositoryIsDown: a repository that refuses WAL never stops the
// instance nor fills its disk: past the queue's bound pgBackRest drops WAL and tells
// PostgreSQL it was archived; the status reports the gap (Degraded, the dropped segment)
// until a backup taken once the repository is back closes it.
func TestArchiveGapWhenTheRepositoryIsDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir, bolt, spec := backupWorld(ctx, t, func(c *agent.Config) { c.Backup.QueueMax = 64 << 20 })
	waitStatus(ctx, t, bolt, spec.UID, "Ready with the stanza created", func(s instance.Status) bool {
		return s.Phase == instance.PhaseReady && s.Backup != nil && s.Backup.Stanza == spec.UID
	})
	askBackup(ctx, t, bolt, &spec, 1, instance.BackupFull)
	// Done and verified: the verification, reported after the backup, must not run into the
	// repository closed below.
	waitStatus(ctx, t, bolt, spec.UID, "backup 1 done and verified", func(s instance.Status) bool {
		return s.Backup.Seq == 1 && s.Backup.Error == "" && s.Backup.Verify != nil && s.Backup.Verify.Seq == 1
	})

	// The repository stops taking WAL: its stanza directory is closed to the instance's user.
	stanzaDir := filepath.Join(dir, "backups", "eastus", spec.UID)
	if err := os.Chmod(stanzaDir, 0); err != nil {
		t.Fatal(err)
	}
	c := &postgres.Cluster{Dir: filepath.Join(dir, "instances", spec.UID), SocketDir: postgres.SocketDirFor(spec.UID), Host: spec.Host, Port: spec.Port}
	bin, _ := postgres.FindBinaries(ctx, "")
	c.R, _ = postgres.NewRunner(bin, "postgres", slog.New(slog.DiscardHandler))
	sys, err := c.ConnectSystem(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close(context.Background())
	if _, err := sys.Exec(ctx, "CREATE TABLE public.filler (b pg_catalog.bytea)"); err != nil {
		t.Fatal(err)
	}
	// Six switched segments with data in each: more WAL waiting than the queue's 64 MiB.
	for i := range 8 {
		if _, err := sys.Exec(ctx, "INSERT INTO public.filler SELECT pg_catalog.decode(pg_catalog.repeat('ab', 1000), 'hex') FROM pg_catalog.generate_series(1, 100)"); err != nil {
			t.Fatal(i, err)
		}
		if _, err := sys.Exec(ctx, "SELECT pg_catalog.pg_switch_wal()"); err != nil {
			t.Fatal(err)
		}
	}
	st := waitStatus(ctx, t, bolt, spec.UID, "the gap reported", func(s instance.Status) bool { return s.Backup.Archive.Gap })
	if st.Backup.Health != instance.BackupDegraded || st.Backup.Archive.DroppedWAL == "" || !strings.Contains(st.Backup.Archive.Error, "dropped") {
		t.Errorf("with the gap the status reads %+v", st.Backup)
	}
	// Writes go on: the instance never stopped.
	if _, err := sys.Exec(ctx, "INSERT INTO public.filler VALUES ('x')"); err != nil {
		t.Errorf("a write while the repository is down: %v", err)
	}

	// Back: the next backup closes the gap.
	if err := os.Chmod(stanzaDir, 0o700); err != nil {
		t.Fatal(err)
	}
	askBackup(ctx, t, bolt, &spec, 2, instance.BackupDiff)
	st = waitStatus(ctx, t, bolt, spec.UID, "the gap closed by backup 2, verified", func(s instance.Status) bool {
		return s.Backup.Seq == 2 && !s.Backup.Archive.Gap && (s.Backup.Error != "" || s.Backup.Verify != nil && s.Backup.Verify.Seq == 2)
	})
	if st.Backup.Error != "" || st.Backup.Health != instance.BackupHealthy {
		t.Errorf("after backup 2 the status reads %+v", st.Backup)
	}
}

func derefBackup(b *instance.BackupStatus) any {
	if b == nil {
		return nil
	}
	return *b
}

// TestAnotherSystemsStanzaIsSetAside: a stanza's directory in the region's repository that
// is not this instance's to continue is set aside, never given to it nor deleted: one owned
// by another instance's OS user (a member of an earlier group of the stanza's name), and one
// of its own that holds another system's history (pgBackRest's [028]: a group deleted and
// created again seeds its secondary afresh). Each time the instance then archives and backs
// up into a stanza of its own.
func TestAnotherSystemsStanzaIsSetAside(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: each instance runs as an OS user of its own only when fog is root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bolt, err := store.OpenBolt(filepath.Join(dir, "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	a, b := "5e7a51de-0000-4000-8000-00000000000a", "5e7a51de-0000-4000-8000-00000000000b"
	realAgent(ctx, t, dir, bolt, []string{a, b})
	repo := filepath.Join(dir, "backups", "eastus")
	specs := map[string]*instance.Spec{}
	for _, uid := range []string{a, b} {
		specs[uid] = &instance.Spec{UID: uid, Name: "mi-" + uid[len(uid)-1:], Region: "eastus", Generation: 1, Host: "127.0.0.1", Port: freeTCPPort(t),
			Locale: "C.UTF-8", Timezone: "UTC", AdminLogin: "admin1", AdminVerifier: pgtypes.SCRAMVerifier("Secret-pass-1"), VCores: 2,
			Backup: &instance.BackupSpec{Stanza: uid, RetentionDays: 7}}
	}
	// use gives instance uid stanza, and waits until it runs with it.
	use := func(uid, stanza string) instance.Status {
		t.Helper()
		s := specs[uid]
		s.Generation++
		s.Backup.Stanza = stanza
		if err := store.Put(ctx, bolt, instance.SpecKey("eastus", uid), *s); err != nil {
			t.Fatal(err)
		}
		return waitStatus(ctx, t, bolt, uid, uid+" Ready with stanza "+stanza, func(st instance.Status) bool {
			return st.Phase == instance.PhaseReady && st.Backup != nil && st.Backup.Stanza == stanza && st.Backup.CheckedAt.After(time.Time{})
		})
	}
	use(a, a)
	use(b, b)
	aside := func() []string {
		m, _ := filepath.Glob(filepath.Join(repo, a+".aside-*"))
		return m
	}
	owner := func(path string) uint32 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Uid
	}

	// A leaves stanza a (as a group's former secondary does); B takes the name.
	use(a, a+"-1")
	userA := owner(filepath.Join(repo, a+"-1"))
	st := use(b, a)
	if st.Backup.Health != instance.BackupHealthy {
		t.Errorf("B on A's old stanza: %+v", *st.Backup)
	}
	set := aside()
	if len(set) != 1 || owner(set[0]) != userA || owner(filepath.Join(repo, a)) == userA {
		t.Fatalf("set aside %v (A's user %d); want A's directory set aside, still A's, and a new one B's", set, userA)
	}
	if _, err := os.Stat(filepath.Join(set[0], "archive", a, "archive.info")); err != nil {
		t.Errorf("A's history set aside is not intact: %v", err)
	}

	// B's own stanza directory made to hold another system's history (A's): B's
	// stanza-create says [028]; the directory is set aside, and B starts a new one.
	use(b, b)
	for _, f := range []string{"archive/%s/archive.info", "archive/%s/archive.info.copy", "backup/%s/backup.info", "backup/%s/backup.info.copy"} {
		from, to := filepath.Join(repo, a+"-1", fmt.Sprintf(f, a+"-1")), filepath.Join(repo, a, fmt.Sprintf(f, a))
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(to, int(owner(filepath.Join(repo, a))), -1); err != nil {
			t.Fatal(err)
		}
	}
	use(b, a)
	if set = aside(); len(set) != 2 {
		t.Fatalf("set aside %v, want two", set)
	}
	// B's new copy is B's system's: a backup into it works.
	s := specs[b]
	askBackup(ctx, t, bolt, s, 1, instance.BackupFull)
	st = waitStatus(ctx, t, bolt, b, "B's backup 1 done", func(st instance.Status) bool { return st.Backup != nil && st.Backup.Seq == 1 })
	if st.Backup.Error != "" || len(st.Backup.Backups) != 1 {
		t.Errorf("B's backup into its new stanza: %+v", *st.Backup)
	}
}
