package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/agent"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/ltr"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/store"
)

// TestLongTermRetentionKeepsABackup: a real instance with a short-term window of one day
// takes three full backups (the first with a differential one on it) with rows between them;
// the first is marked LTR. Its expiry clock moved three days ahead, the next backup's expiry
// removes the second full backup and the differential one, keeps the LTR full backup and the
// window's, drops the WAL between the LTR backup and the window but keeps the LTR backup's
// own, and pgBackRest's verify stays clean. A restore of the LTR backup has exactly its
// rows. With the clock past the LTR time, the next backup's expiry removes it too.
func TestLongTermRetentionKeepsABackup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	started := time.Now()
	uid := "b7a1c0de-0000-4000-8000-00000000017e"
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bolt, err := store.OpenBolt(filepath.Join(dir, "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	var ahead atomic.Int64 // how far the expiry clock is ahead of the wall's
	w := &restoreWorld{t: t, ctx: ctx, dir: dir, st: bolt}
	w.stop = realAgent(ctx, t, dir, bolt, []string{uid}, func(c *agent.Config) {
		c.Backup.Now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	})
	w.spec = instance.Spec{UID: uid, Name: "mi-ltr", Region: "eastus", Generation: 1, Host: "127.0.0.1", Port: freeTCPPort(t),
		Locale: "C.UTF-8", Timezone: "UTC", AdminLogin: "admin1", AdminVerifier: pgtypes.SCRAMVerifier(restorePassword), VCores: 2,
		Backup: &instance.BackupSpec{Stanza: uid, RetentionDays: 1}}
	w.sys = &postgres.Cluster{SocketDir: postgres.SocketDirFor(uid), Port: w.spec.Port}
	put := func() {
		t.Helper()
		w.spec.Generation++
		if err := store.Put(ctx, bolt, instance.SpecKey("eastus", uid), w.spec); err != nil {
			t.Fatal(err)
		}
	}
	put()
	waitStatus(ctx, t, bolt, uid, "Ready with the stanza created", func(s instance.Status) bool {
		return s.Phase == instance.PhaseReady && s.Backup != nil && s.Backup.Stanza == uid
	})
	w.exec("postgres", "CREATE DATABASE app OWNER admin1")
	w.adminExec("app", "CREATE TABLE public.t (id int PRIMARY KEY, phase text NOT NULL)")

	// backup takes backup seq of typ and returns it as listed.
	backup := func(seq int64, typ string) instance.Backup {
		t.Helper()
		w.spec.Backup.Seq, w.spec.Backup.Type = seq, typ
		put()
		st := waitStatus(ctx, t, bolt, uid, "backup "+typ, func(s instance.Status) bool {
			if s.Backup == nil || s.Backup.Seq != seq {
				return false
			}
			// The verification is reported after the backup.
			return s.Backup.Error != "" || slices.ContainsFunc(s.Backup.Backups, func(b instance.Backup) bool { return b.Seq == seq }) &&
				s.Backup.Verify != nil && s.Backup.Verify.Seq == seq
		})
		if st.Backup.Error != "" {
			t.Fatalf("backup %d: %s", seq, st.Backup.Error)
		}
		if v := st.Backup.Verify; v == nil || v.Seq != seq || v.Error != "" {
			t.Errorf("the verification after backup %d: %+v", seq, v)
		}
		i := slices.IndexFunc(st.Backup.Backups, func(b instance.Backup) bool { return b.Seq == seq })
		return st.Backup.Backups[i]
	}
	labels := func() []string {
		t.Helper()
		st := waitStatus(ctx, t, bolt, uid, "the repository read", func(s instance.Status) bool { return s.Backup != nil && !s.Backup.CheckedAt.IsZero() })
		var out []string
		for _, b := range st.Backup.Backups {
			out = append(out, b.Label)
		}
		return out
	}
	rows := func(from, to int, phase string) {
		t.Helper()
		w.adminExec("app", "INSERT INTO public.t SELECT g, '"+phase+"' FROM generate_series("+strconv.Itoa(from)+", "+strconv.Itoa(to)+") g")
	}

	rows(1, 10, "before the LTR backup")
	f1 := backup(1, instance.BackupFull)
	rows(11, 20, "after the LTR backup")
	d1 := backup(2, instance.BackupDiff)
	rows(21, 30, "before the second full backup")
	f2 := backup(3, instance.BackupFull)
	rows(31, 40, "before the third full backup")
	f3 := backup(4, instance.BackupFull)
	t.Logf("instance and four backups: %v", time.Since(started).Round(time.Millisecond))

	// Mark the first LTR for ten days; move the expiry clock three days ahead.
	w.spec.BackupKeep = []ltr.Keep{{Label: f1.Label, Until: time.Now().Add(10 * 24 * time.Hour).UTC()}}
	ahead.Store(int64(3 * 24 * time.Hour))
	d3 := backup(5, instance.BackupDiff)
	got := labels()
	want := []string{f1.Label, f3.Label, d3.Label}
	if !slices.Equal(got, want) {
		t.Fatalf("after the expiry three days on, the repository holds %v; want the LTR backup %s and the window's %s, %s (not %s, %s)",
			got, f1.Label, f3.Label, d3.Label, f2.Label, d1.Label)
	}
	// WAL: the LTR backup's own segments stay, those between it and the window's full
	// backup go.
	archive := filepath.Join(dir, "backups", "eastus", uid, "archive", uid)
	has := func(segment string) bool {
		t.Helper()
		m, err := filepath.Glob(filepath.Join(archive, "*", segment[:16], segment+"-*"))
		if err != nil {
			t.Fatal(err)
		}
		return len(m) > 0
	}
	for _, seg := range []string{f1.WALStart, f1.WALStop, f3.WALStart, f3.WALStop} {
		if !has(seg) {
			t.Errorf("WAL segment %s, which a backup kept needs, is gone", seg)
		}
	}
	for _, seg := range []string{d1.WALStart, f2.WALStart, f2.WALStop} {
		if has(seg) {
			t.Errorf("WAL segment %s, between the LTR backup and the window, is still in the repository", seg)
		}
	}

	// The LTR backup restores to exactly its rows.
	id := "ltr-restore-1"
	cmd := instance.Command{ID: id, InstanceUID: uid, Kind: instance.CmdRestoreDatabase, SourceDatabase: "app",
		Database: "app_ltr", Owner: "admin1", Time: f1.Stop.UTC(), BackupSet: f1.Label, Created: time.Now().UTC()}
	if err := store.Put(ctx, bolt, instance.CommandKey("eastus", id), cmd); err != nil {
		t.Fatal(err)
	}
	c, _, took := w.restore(id, "")
	if c.Error != "" {
		t.Fatalf("restore of the LTR backup: %+v", c)
	}
	t.Logf("restore of the LTR backup: %v", took.Round(time.Millisecond))
	var n, lo, hi int
	if err := w.conn("app_ltr").QueryRow(ctx, "SELECT count(*), min(id), max(id) FROM public.t").Scan(&n, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if n != 10 || lo != 1 || hi != 10 {
		t.Errorf("the LTR backup restored has %d rows, ids %d to %d; want the 10 committed before it", n, lo, hi)
	}
	w.checkNothingLeft(id)

	// A restore of a backup that is not there fails with why.
	id = "ltr-restore-2"
	cmd.ID, cmd.Database, cmd.BackupSet = id, "app_gone", f2.Label
	if err := store.Put(ctx, bolt, instance.CommandKey("eastus", id), cmd); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := w.restore(id, ""); c.Error == "" {
		t.Errorf("a restore of an expired backup succeeded: %+v", c)
	} else {
		t.Logf("a restore of an expired backup: %s", c.Error)
	}

	// Past its LTR time, the LTR backup goes at the next backup's expiry.
	ahead.Store(int64(11 * 24 * time.Hour))
	d4 := backup(6, instance.BackupDiff)
	got = labels()
	if slices.Contains(got, f1.Label) || !slices.Contains(got, f3.Label) || !slices.Contains(got, d4.Label) {
		t.Errorf("after the LTR time passed, the repository holds %v; want %s gone and %s with its differential backups", got, f1.Label, f3.Label)
	}
	if has(f1.WALStart) {
		t.Errorf("the expired LTR backup's WAL %s is still there", f1.WALStart)
	}
	if _, err := os.Stat(filepath.Join(dir, "backups", "eastus", uid, "backup", uid, f1.Label)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the expired LTR backup's directory: %v", err)
	}
	t.Logf("total: %v", time.Since(started).Round(time.Millisecond))
}
