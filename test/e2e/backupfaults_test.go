package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fogdb/fog/internal/engine"
	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/pgbackrest"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// A backup fault: at a chosen moment, kill -9 one of the processes a backup, WAL archiving
// or a restore depends on.
type backupFault struct {
	// kind is what runs when the victim dies: "backup" (a full backup the test asks for),
	// "archive" (the async archiver pushing a burst of WAL), or "restore" (a point-in-time
	// restore through the API).
	kind string
	// victim is "fog" (the leader server), "agent" (the instance's region's agent), "push"
	// (pgBackRest's async archive-push process), "pushall" (it and the archive_command
	// waiting for it) or "backup" (the running pgbackrest backup). A restore's victim is
	// always the agent. Kind "all" kills every one in one window (below).
	victim string
	// at is the moment: for a backup "start" (its process just appeared), "copy" (part of
	// the data copied) or "wal" (copied, waiting for its last WAL in the repository); for a
	// restore the step the agent dies in: "scratch" (pgbackrest restore), "recover" (the
	// scratch cluster replaying WAL), "dump" (pg_dump running), "load" (pg_restore
	// running).
	at string
	// taken, for a restore: while the agent is down, the new database's name is taken, so
	// the restore must fail when it resumes and leave nothing behind.
	taken bool
}

func (f backupFault) String() string {
	s := fmt.Sprintf("%s_kill_%s", f.kind, strings.ReplaceAll(f.victim, "+", "_"))
	if f.at != "" {
		s += "_at_" + f.at
	}
	if f.taken {
		s += "_name_taken"
	}
	return s
}

// backupFaultScenarios: by default one of each kind; FOG_FAULT_MATRIX=1 runs every victim at
// every moment.
func backupFaultScenarios() []backupFault {
	if os.Getenv(faultMatrixEnv) == "" {
		// Every victim once, in one fault window (a killed async archive-push alone stalls
		// archiving for a minute: the matrix has it), and a restore.
		return []backupFault{
			{kind: "all", victim: "pushall+fog+agent+backup", at: "copy"},
			{kind: "restore", victim: "agent", at: "dump"},
		}
	}
	var out []backupFault
	for _, v := range []string{"push", "pushall", "fog", "agent"} {
		out = append(out, backupFault{kind: "archive", victim: v})
	}
	for _, v := range []string{"fog", "agent", "backup", "push", "pushall"} {
		for _, at := range []string{"start", "copy", "wal"} {
			out = append(out, backupFault{kind: "backup", victim: v, at: at})
		}
	}
	out = append(out, backupFault{kind: "all", victim: "pushall+fog+agent+backup", at: "copy"})
	for _, at := range []string{"scratch", "recover", "dump", "load"} {
		out = append(out, backupFault{kind: "restore", victim: "agent", at: at})
		out = append(out, backupFault{kind: "restore", victim: "agent", at: at, taken: true})
	}
	return out
}

// TestBackupFaults kills, with SIGKILL, the leader fog server, the agent, pgBackRest's async
// archive-push process and a running `pgbackrest backup` while a writer commits rows and
// notes which were acknowledged, on separate server and agent processes. After each fault
// and the restart of what died: pgBackRest's check and verify pass for the stanza, the
// archive has every segment from the oldest backup's first to the last archived, Fog reports
// no gap, the next backup succeeds, and a point-in-time restore through the API to a time
// inside the fault window has exactly the acknowledged rows committed before it. A restore
// whose agent is killed mid-way either completes after the restart with the right rows or
// fails (its new name taken meanwhile), and leaves no temporary database, no scratch
// cluster and no restore directory, the instance's other databases untouched. Set
// FOG_FAULT_MATRIX=1 for every victim at every moment; by default one of each kind runs.
func TestBackupFaults(t *testing.T) {
	if _, err := exec.LookPath("pgbackrest"); err != nil {
		t.Skip("pgBackRest is not installed (CI installs Debian's pgbackrest)")
	}
	started := time.Now()
	h := newBackupHarness(t)
	t.Logf("deployment, instance, data and first full backup: %s", time.Since(started).Round(time.Millisecond))
	for _, sc := range backupFaultScenarios() {
		ok := t.Run(sc.String(), func(t *testing.T) {
			began := time.Now()
			h.t = t
			switch sc.kind {
			case "archive":
				h.archiveFault(sc)
			case "backup":
				h.backupFault(sc)
			case "restore":
				h.restoreFault(sc)
			case "all":
				h.allFault()
			}
			t.Logf("%s: %s", sc, time.Since(began).Round(time.Millisecond))
		})
		if !ok {
			break // later scenarios start from this one's state
		}
	}
}

// backupHarness is one instance of a separate-process deployment, with a writer committing
// to its database shop all along.
type backupHarness struct {
	t      *testing.T
	d      *deployment
	st     store.Store
	eng    *engine.Engine
	inst   map[string]any
	rg     string
	name   string
	uid    string
	region string
	// dir is the instance's directory (pgdata, pgbackrest.conf); repo its stanza's
	// repository; restores the region's restore directory.
	dir, repo, restores string
	drv                 *pgbackrest.Driver
	w                   *ackWriter
	restored            int // restores made, to name the next one
}

func newBackupHarness(t *testing.T) *backupHarness {
	d := startDeploymentWith(t, 2, nil, nil)
	st, err := store.OpenEtcd(context.Background(), store.EtcdConfig{Endpoints: d.etcd.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := &backupHarness{t: t, d: d, st: st, rg: "rg-bf", name: "bf1", region: "eastus",
		eng: engine.New(engine.Config{}, st, lease.NewObserver(lease.DefaultTTL, nil), slog.New(slog.DiscardHandler))}
	h.inst = d.f.createInstance(h.rg, h.name, h.region, nil)
	var m resource.ManagedInstance
	if _, err := store.Get(context.Background(), st, group.InstanceKey(sub, h.rg, h.name), &m); err != nil {
		t.Fatal(err)
	}
	h.uid = m.UID
	regionDir := filepath.Join(d.root, "regions", h.region)
	h.dir = filepath.Join(regionDir, "instances", h.uid)
	h.repo = filepath.Join(regionDir, "backups", h.region, m.Stanza())
	h.restores = filepath.Join(regionDir, "restores", h.region)
	fi, err := os.Stat(filepath.Join(h.dir, "pgdata"))
	if err != nil {
		t.Fatal(err)
	}
	h.drv = &pgbackrest.Driver{Config: filepath.Join(h.dir, "pgbackrest.conf"), Stanza: m.Stanza()}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != 0 {
		u, err := user.LookupId(strconv.Itoa(int(uid)))
		if err != nil {
			t.Fatal(err)
		}
		if h.drv.User, err = pgbackrest.LookupUser(u.Username); err != nil {
			t.Fatal(err)
		}
	}
	if keep := os.Getenv("FOG_E2E_KEEP_LOGS"); keep != "" {
		// PostgreSQL's and pgBackRest's logs of the instance, for a failure's why.
		t.Cleanup(func() {
			for _, dir := range []string{h.dir, filepath.Join(h.dir, "pgbackrest", "log")} {
				files, _ := os.ReadDir(dir)
				for _, f := range files {
					if !strings.HasSuffix(f.Name(), ".log") {
						continue
					}
					if b, err := os.ReadFile(filepath.Join(dir, f.Name())); err == nil {
						_ = os.MkdirAll(keep, 0o755)
						_ = os.WriteFile(filepath.Join(keep, f.Name()), b, 0o644)
					}
				}
			}
		})
	}
	eventually(t, time.Minute, "the instance's stanza", func() bool {
		st := h.status()
		return st.Backup != nil && st.Backup.Stanza == m.Stanza()
	})

	// shop: the writer's table and a filler that makes a restore's dump and load take a
	// moment; bulk: enough data that a full backup runs long enough to be killed mid-way.
	h.d.f.mustSucceed(h.d.f.call("PUT", miPath(h.rg, h.name)+"/databases/shop", map[string]any{}))
	h.d.f.mustSucceed(h.d.f.call("PUT", miPath(h.rg, h.name)+"/databases/bulk", map[string]any{}))
	shop := mustConnect(t, d.f.info.CACert, h.inst, "shop")
	bulk := mustConnect(t, d.f.info.CACert, h.inst, "bulk")
	for _, q := range []struct {
		c   *pgx.Conn
		sql string
	}{
		{shop, "CREATE TABLE acks (id bigint PRIMARY KEY)"},
		{shop, "CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 200000) g"},
		{bulk, "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS v FROM generate_series(1, 2000000) g"},
	} {
		if _, err := q.c.Exec(context.Background(), q.sql); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	h.w = startAckWriter(t, d.f.info.CACert, h.inst)
	if err := h.backup("full", true); err != nil {
		t.Fatalf("the first full backup: %v", err)
	}
	// A restore can reach times from the second after the backup's end on (pgBackRest
	// counts whole seconds): every fault window below must be after it.
	eventually(t, time.Minute, "the first backup in the status", func() bool { return len(h.status().Backup.Backups) > 0 })
	stop := h.status().Backup.Backups[0].Stop
	time.Sleep(time.Until(stop.Truncate(time.Second).Add(2 * time.Second)))
	return h
}

// status is the instance's observed state.
func (h *backupHarness) status() instance.Status {
	h.t.Helper()
	var st instance.Status
	if _, err := store.Get(context.Background(), h.st, instance.StatusKey(h.region, h.uid), &st); err != nil && !errors.Is(err, store.ErrNotFound) {
		h.t.Fatal(err)
	}
	return st
}

// askBackup asks the instance's agent for a backup of typ as the schedule does (one
// transaction with the desired state), and returns its sequence number.
func (h *backupHarness) askBackup(typ string) int64 {
	h.t.Helper()
	for attempt := 0; ; attempt++ {
		var m resource.ManagedInstance
		key := group.InstanceKey(sub, h.rg, h.name)
		rev, err := store.Get(context.Background(), h.st, key, &m)
		if err != nil {
			h.t.Fatal(err)
		}
		seq := m.BackupSeq
		if st := h.status(); st.Backup != nil {
			seq = max(seq, st.Backup.Seq)
		}
		seq++
		err = h.eng.AskBackup(context.Background(), key, rev, seq, typ, time.Now())
		if err == nil {
			return seq
		}
		if attempt == 20 {
			h.t.Fatalf("ask for a %s backup: %v", typ, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitBackup waits until the agent reports backup seq done, and returns its error.
func (h *backupHarness) waitBackup(seq int64, within time.Duration) error {
	h.t.Helper()
	var b *instance.BackupStatus
	eventually(h.t, within, fmt.Sprintf("backup %d to end", seq), func() bool {
		b = h.status().Backup
		return b != nil && b.Seq >= seq && b.Running == 0
	})
	if b.Error != "" {
		return errors.New(b.Error)
	}
	return nil
}

// backup asks for a backup and, with wait, waits for it.
func (h *backupHarness) backup(typ string, wait bool) error {
	seq := h.askBackup(typ)
	if !wait {
		return nil
	}
	return h.waitBackup(seq, 2*time.Minute)
}

// ackWriter commits rows to shop.acks one at a time and notes, for each id, when it was
// sent and when (if) its commit was acknowledged.
type ackWriter struct {
	mu   sync.Mutex
	sent map[int64]time.Time
	ack  map[int64]time.Time
	errs int
}

func startAckWriter(t *testing.T, ca string, inst map[string]any) *ackWriter {
	w := &ackWriter{sent: map[int64]time.Time{}, ack: map[int64]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		var conn *pgx.Conn
		defer func() {
			if conn != nil {
				conn.Close(context.Background())
			}
		}()
		for id := int64(1); ctx.Err() == nil; id++ {
			if conn == nil {
				c, err := connect(t, ca, inst, "fogadmin", password, "shop")
				if err != nil {
					sleepCtx(ctx, 50*time.Millisecond)
					continue
				}
				conn = c
			}
			w.mu.Lock()
			w.sent[id] = time.Now()
			w.mu.Unlock()
			qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := conn.Exec(qctx, "INSERT INTO acks VALUES ($1)", id)
			qcancel()
			at := time.Now()
			w.mu.Lock()
			if err == nil {
				w.ack[id] = at
			} else {
				w.errs++
			}
			w.mu.Unlock()
			if err != nil {
				conn.Close(context.Background())
				conn = nil
			}
			sleepCtx(ctx, 5*time.Millisecond)
		}
	}()
	return w
}

// checkRows checks that ids, a restore's rows to time at, are exactly the acknowledged ones
// committed before at: every id acknowledged before at, none sent after at (an id sent before
// and acknowledged after it may be either).
func (w *ackWriter) checkRows(t *testing.T, ids []int64, at time.Time) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	have := map[int64]bool{}
	for _, id := range ids {
		have[id] = true
	}
	var missing, extra []int64
	before := 0
	for id, a := range w.ack {
		if a.Before(at) {
			before++
			if !have[id] {
				missing = append(missing, id)
			}
		}
	}
	for id := range have {
		if s, ok := w.sent[id]; !ok || s.After(at) {
			extra = append(extra, id)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("restore to %s: %d rows; %d acknowledged before it missing (first %v), %d sent after it present (first %v)",
			at.Format(time.StampMicro), len(ids), len(missing), first(missing, 5), len(extra), first(extra, 5))
	} else {
		t.Logf("restore to %s: %d rows, every one acknowledged before it (%d) and none sent after it", at.Format(time.StampMicro), len(ids), before)
	}
}

func first(s []int64, n int) []int64 { return s[:min(n, len(s))] }

// restore restores shop as it was at the time at through the API, as a new database, and
// checks its rows.
func (h *backupHarness) restore(at time.Time) {
	h.t.Helper()
	h.restored++
	name := fmt.Sprintf("shop_r%d", h.restored)
	r := h.startRestore(name, at)
	if st := h.d.f.wait(r); st["status"] != "Succeeded" {
		h.t.Fatalf("restore to %s: %v", at.Format(time.StampMicro), st)
	}
	h.checkRestored(name, at)
}

func (h *backupHarness) startRestore(name string, at time.Time) response {
	h.t.Helper()
	dbPath := miPath(h.rg, h.name) + "/databases/"
	r := h.d.f.call("PUT", dbPath+name, map[string]any{"properties": map[string]any{
		"createMode": "PointInTimeRestore", "sourceDatabaseId": dbPath + "shop", "restorePointInTime": at.UTC().Format(time.RFC3339Nano)}})
	if r.Status != http.StatusAccepted {
		h.t.Fatalf("restore to %s = %d %s", at.Format(time.StampMicro), r.Status, r.Body)
	}
	return r
}

func (h *backupHarness) checkRestored(name string, at time.Time) {
	h.t.Helper()
	c := mustConnect(h.t, h.d.f.info.CACert, h.inst, name)
	rows, err := c.Query(context.Background(), "SELECT id FROM acks")
	if err != nil {
		h.t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		h.t.Fatal(err)
	}
	h.w.checkRows(h.t, ids, at)
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM filler").Scan(&n); err != nil || n != 200000 {
		h.t.Errorf("the restored filler has %d rows (%v), want 200000", n, err)
	}
	c.Close(context.Background())
}

// windowTime is a time inside a fault window: now, to the microsecond PostgreSQL keeps,
// with commits acknowledged on both sides of it.
func windowTime() time.Time {
	time.Sleep(20 * time.Millisecond)
	at := time.Now().Truncate(time.Microsecond)
	time.Sleep(20 * time.Millisecond)
	return at
}

// afterFault checks what every fault must leave: pgBackRest's check and verify pass, the
// archive has no gap from the oldest backup to the last archived segment and Fog reports
// none, the next backup succeeds, and a restore to at (inside the fault window) has exactly
// the rows acknowledged before it.
func (h *backupHarness) afterFault(at time.Time) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	h.waitArchiving(ctx)
	began := time.Now()
	if err := h.drv.Check(ctx); err != nil {
		h.t.Errorf("pgbackrest check after the fault: %v", err)
	}
	h.t.Logf("pgbackrest check: %s", time.Since(began).Round(time.Millisecond))
	h.checkArchive(ctx)
	if err := h.backup("diff", true); err != nil {
		h.t.Errorf("the next backup after the fault: %v", err)
	}
	began = time.Now()
	if out, err := h.drv.Verify(ctx); err != nil {
		h.t.Errorf("pgbackrest verify after the fault: %v\n%s", err, tail(out, 20))
	}
	h.t.Logf("pgbackrest verify: %s", time.Since(began).Round(time.Millisecond))
	if b := h.status().Backup; b != nil && b.Archive.Gap {
		h.t.Errorf("Fog reports a gap in the archive: %s", b.Archive.Error)
	}
	h.restore(at)
}

// waitArchiving waits until PostgreSQL has archived every segment before the current one. A
// killed async archive-push stalls archiving for up to pgBackRest's archive-timeout (60 s):
// the archive_command that forked it waits that long for a status it never writes, fails,
// and PostgreSQL calls it again.
func (h *backupHarness) waitArchiving(ctx context.Context) {
	h.t.Helper()
	c := mustConnect(h.t, h.d.f.info.CACert, h.inst, "shop")
	defer c.Close(context.Background())
	var cur string
	if err := c.QueryRow(ctx, "SELECT pg_walfile_name(pg_current_wal_lsn())").Scan(&cur); err != nil {
		h.t.Fatal(err)
	}
	_, want, _ := segmentNo(cur)
	began := time.Now()
	eventually(h.t, 3*time.Minute, "archiving to reach segment "+cur, func() bool {
		var last *string
		if err := c.QueryRow(ctx, "SELECT last_archived_wal FROM pg_stat_archiver").Scan(&last); err != nil || last == nil {
			return false
		}
		_, n, ok := segmentNo(*last)
		return ok && n+1 >= want
	})
	if d := time.Since(began); d > 5*time.Second {
		h.t.Logf("archiving caught up with %s after %s", cur, d.Round(time.Millisecond))
	}
}

// segmentName is a 16 MiB WAL segment's name: timeline, then log and segment numbers.
var segmentName = regexp.MustCompile(`^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$`)

// segmentNo is a segment's position in its timeline (16 MiB segments: 256 per log).
func segmentNo(name string) (tli string, n uint64, ok bool) {
	m := segmentName.FindStringSubmatch(name)
	if m == nil {
		return "", 0, false
	}
	log, _ := strconv.ParseUint(m[2], 16, 32)
	seg, _ := strconv.ParseUint(m[3], 16, 32)
	return m[1], log<<8 | seg, true
}

// checkArchive checks that the repository holds every WAL segment from the oldest backup's
// first to the last one PostgreSQL archived (read after check, which switched and archived
// one).
func (h *backupHarness) checkArchive(ctx context.Context) {
	h.t.Helper()
	info, err := h.drv.Info(ctx, "")
	if err != nil {
		h.t.Fatal(err)
	}
	if len(info.Backup) == 0 {
		h.t.Fatal("the repository has no backup")
	}
	oldest := info.Backup[0].Archive.Start
	c := mustConnect(h.t, h.d.f.info.CACert, h.inst, "shop")
	defer c.Close(context.Background())
	var last string
	if err := c.QueryRow(ctx, "SELECT last_archived_wal FROM pg_stat_archiver").Scan(&last); err != nil {
		h.t.Fatal(err)
	}
	tli, from, _ := segmentNo(oldest)
	ltli, to, ok := segmentNo(last)
	if !ok || ltli != tli {
		h.t.Fatalf("last archived segment %q, oldest backup's first %s: want one timeline", last, oldest)
	}
	have := map[uint64]bool{}
	_ = filepath.WalkDir(filepath.Join(h.repo, "archive"), func(path string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		seg, _, _ := strings.Cut(e.Name(), "-")
		if t, n, ok := segmentNo(seg); ok && t == tli && !strings.Contains(e.Name(), ".partial") {
			have[n] = true
		}
		return nil
	})
	var gaps []string
	for n := from; n <= to; n++ {
		if !have[n] {
			gaps = append(gaps, fmt.Sprintf("%s%08X%08X", tli, n>>8, n&0xFF))
		}
	}
	if len(gaps) > 0 {
		h.t.Errorf("the archive lacks %d segments between %s and %s: %v", len(gaps), oldest, last, first2(gaps, 5))
	} else {
		h.t.Logf("the archive holds every segment from %s to %s (%d)", oldest, last, to-from+1)
	}
}

func first2(s []string, n int) []string { return s[:min(n, len(s))] }

// pgbackrestProcs returns the pids of pgBackRest processes of the configuration conf whose
// command (the argument that names it) is cmd.
func pgbackrestProcs(conf, cmd string) []int {
	var out []int
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(b, []byte("--config="+conf+"\x00")) {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if !strings.HasSuffix(args[0], "pgbackrest") || !slices.Contains(args, cmd) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		out = append(out, pid)
	}
	return out
}

// programsUnder returns the pids of program (its executable's base name) whose command line
// mentions dir.
func programsUnder(program, dir string) []int {
	var out []int
	for _, pid := range processesUnder(dir) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		arg0, _, _ := strings.Cut(string(b), "\x00")
		if filepath.Base(arg0) == program {
			out = append(out, pid)
		}
	}
	return out
}

func killAll(t *testing.T, what string, pids []int) {
	t.Helper()
	for _, pid := range pids {
		t.Logf("kill -9 %s (pid %d)", what, pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// waitFor polls ok every 5ms for at most within.
func waitFor(within time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if ok() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// killVictim kills the scenario's victim and returns a function that starts again what died.
func (h *backupHarness) killVictim(victim string) func() {
	h.t.Helper()
	switch victim {
	case "fog":
		lead := h.d.leader()
		h.t.Logf("kill -9 the leader server %d", lead)
		h.d.servers[lead].kill9()
		h.d.use(1 - lead)
		return func() {
			h.d.servers[lead].start()
			h.d.servers[lead].waitLog("Fog API: ", 30*time.Second)
		}
	case "agent":
		h.t.Log("kill -9 the agent")
		h.d.agents[h.region].kill9()
		return func() {
			h.d.restartAgent(h.region)
			h.d.agents[h.region].waitLog("Fog agent of "+h.region, 30*time.Second)
		}
	case "push":
		pids := pgbackrestProcs(h.drv.Config, "archive-push:async")
		if len(pids) == 0 {
			h.t.Log("no async archive-push process is running; nothing to kill")
		}
		killAll(h.t, "the async archive-push", pids)
		return func() {}
	case "pushall":
		// The async process and the archive_command waiting for it: PostgreSQL's archiver
		// sees its command killed by a signal, restarts and calls it again at once.
		pids := append(pgbackrestProcs(h.drv.Config, "archive-push:async"), pgbackrestProcs(h.drv.Config, "archive-push")...)
		if len(pids) == 0 {
			h.t.Log("no archive-push process is running; nothing to kill")
		}
		killAll(h.t, "archive-push", pids)
		return func() {}
	case "backup":
		pids := pgbackrestProcs(h.drv.Config, "backup")
		if len(pids) == 0 {
			h.t.Log("no pgbackrest backup is running; nothing to kill")
		}
		killAll(h.t, "pgbackrest backup", pids)
		return func() {}
	}
	h.t.Fatalf("unknown victim %s", victim)
	return nil
}

// burst writes WAL in the background (a few segments' worth), for the archiver to push.
func (h *backupHarness) burst() chan error {
	done := make(chan error, 1)
	c, err := connect(h.t, h.d.f.info.CACert, h.inst, "fogadmin", password, "bulk")
	if err != nil {
		h.t.Fatal(err)
	}
	go func() {
		defer c.Close(context.Background())
		_, err := c.Exec(context.Background(), "UPDATE big SET v = v WHERE id <= 300000")
		done <- err
	}()
	return done
}

// archiveFault kills the victim while the async archiver pushes a burst of WAL.
func (h *backupHarness) archiveFault(sc backupFault) {
	t := h.t
	done := h.burst()
	if !waitFor(30*time.Second, func() bool { return len(pgbackrestProcs(h.drv.Config, "archive-push:async")) > 0 }) {
		t.Fatal("no async archive-push process within 30s of a burst of WAL")
	}
	restart := h.killVictim(sc.victim)
	at := windowTime()
	restart()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.afterFault(at)
}

// backupFault kills the victim during a full backup, at the scenario's moment.
func (h *backupHarness) backupFault(sc backupFault) {
	t := h.t
	seq := h.askBackup("full")
	var done chan error
	if sc.victim == "push" {
		done = h.burst() // WAL for the archiver to push while the backup runs
	}
	running := func() bool { return len(pgbackrestProcs(h.drv.Config, "backup")) > 0 }
	if !waitFor(60*time.Second, running) {
		t.Fatal("no pgbackrest backup within 60s of asking for one")
	}
	switch sc.at {
	case "copy":
		// Part of the data is in the repository.
		if !waitFor(60*time.Second, func() bool { return h.copied() > 32<<20 || !running() }) || !running() {
			t.Log("the backup ended before 32 MiB were copied")
		}
	case "wal":
		// Copied: the agent waits for the backup's last segment in the repository.
		if !waitFor(2*time.Minute, func() bool { return !running() }) {
			t.Fatal("the backup did not end within 2 minutes")
		}
	}
	t.Logf("backup in progress, %d MiB copied", h.copied()>>20)
	restart := h.killVictim(sc.victim)
	at := windowTime()
	restart()
	if done != nil {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	err := h.waitBackup(seq, 3*time.Minute)
	t.Logf("the backup asked before the fault ended: %v", err)
	if err != nil && sc.victim != "backup" && sc.victim != "agent" {
		t.Errorf("the backup failed when %s was killed during it: %v", sc.victim, err)
	}
	h.afterFault(at)
}

// allFault kills every victim in one window: during a full backup, with a burst of WAL to
// archive, part of the data copied, archive-push (the async process and the archive_command
// waiting for it), the leader server and the agent die; both come back, the agent runs the
// backup again (pgBackRest resumes it), and that pgbackrest backup is killed mid-way.
func (h *backupHarness) allFault() {
	t := h.t
	seq := h.askBackup("full")
	done := h.burst()
	running := func() bool { return len(pgbackrestProcs(h.drv.Config, "backup")) > 0 }
	if !waitFor(60*time.Second, running) {
		t.Fatal("no pgbackrest backup within 60s of asking for one")
	}
	if !waitFor(60*time.Second, func() bool { return h.copied() > 24<<20 || !running() }) || !running() {
		t.Log("the backup ended before 24 MiB were copied")
	}
	t.Logf("backup in progress, %d MiB copied", h.copied()>>20)
	var restarts []func()
	for _, v := range []string{"pushall", "fog", "agent"} {
		restarts = append(restarts, h.killVictim(v))
	}
	if !waitFor(5*time.Second, func() bool { return !running() }) {
		t.Errorf("pgbackrest backup still runs 5s after the agent that ran it was killed")
	}
	at := windowTime()
	for _, r := range restarts {
		r()
	}
	// The restarted agent runs the backup again: kill it once it copied some more.
	if waitFor(60*time.Second, running) {
		from := h.copied()
		waitFor(30*time.Second, func() bool { return h.copied() > from+8<<20 || !running() })
		h.killVictim("backup")
	} else {
		t.Log("the restarted agent ran no pgbackrest backup")
	}
	err := h.waitBackup(seq, 3*time.Minute)
	t.Logf("the backup asked before the fault ended: %v", err)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.afterFault(at)
}

// copied is how much of a backup in progress is in the repository: the files of the newest
// backup directory that has no final manifest yet.
func (h *backupHarness) copied() int64 {
	dirs, _ := filepath.Glob(filepath.Join(h.repo, "backup", "*", "2*"))
	var n int64
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "backup.manifest")); err == nil {
			continue
		}
		_ = filepath.WalkDir(d, func(_ string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				if fi, err := e.Info(); err == nil {
					n += fi.Size()
				}
			}
			return nil
		})
	}
	return n
}

// restoreFault kills the agent while a restore is at the scenario's step, starts it again,
// and checks that the restore either completes with the right rows, or fails and leaves
// nothing behind; the instance's other databases are untouched either way.
func (h *backupHarness) restoreFault(sc backupFault) {
	t := h.t
	at := windowTime()
	before := h.databases()
	shopRows := h.count("shop", "filler")
	bulkRows := h.count("bulk", "big")
	h.restored++
	name := fmt.Sprintf("shop_r%d", h.restored)
	r := h.startRestore(name, at)
	var reached bool
	switch sc.at {
	case "scratch":
		reached = waitFor(2*time.Minute, func() bool { return len(programsUnder("pgbackrest", h.restores)) > 0 })
	case "recover":
		reached = waitFor(2*time.Minute, func() bool { return len(programsUnder("postgres", h.restores)) > 0 })
	case "dump":
		reached = waitFor(2*time.Minute, func() bool { return len(programsUnder("pg_dump", h.restores)) > 0 })
	case "load":
		reached = waitFor(2*time.Minute, func() bool { return len(programsUnder("pg_restore", h.restores)) > 0 })
	}
	if !reached {
		t.Logf("the restore was never seen at %s", sc.at)
	}
	restart := h.killVictim("agent")
	if sc.taken {
		// The restore's name is taken while its agent is down: the restore must fail when
		// it resumes.
		c := mustConnect(t, h.d.f.info.CACert, h.inst, "shop")
		if _, err := c.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
			t.Fatal(err)
		}
		c.Close(context.Background())
	}
	time.Sleep(200 * time.Millisecond)
	restart()
	st := h.d.f.wait(r)
	t.Logf("the restore killed at %s ended %v %v", sc.at, st["status"], st["error"])
	switch {
	case sc.taken && st["status"] == "Succeeded":
		t.Errorf("a restore whose name was taken while its agent was down succeeded")
	case !sc.taken && st["status"] != "Succeeded":
		t.Errorf("a restore killed at %s ended %v, want Succeeded after the agent's restart", sc.at, st)
	case st["status"] == "Succeeded":
		h.checkRestored(name, at)
	}
	// Nothing half-made: no temporary database, no scratch cluster, no restore directory.
	eventually(t, 90*time.Second, "the restore's leftovers to go", func() bool {
		left := slices.DeleteFunc(h.databases(), func(n string) bool { return !strings.HasPrefix(n, "fog_restore_") })
		entries, _ := os.ReadDir(h.restores)
		return len(left) == 0 && len(entries) == 0 && len(processesUnder(h.restores)) == 0
	})
	after := slices.DeleteFunc(h.databases(), func(n string) bool { return n == name })
	if !slices.Equal(before, after) {
		t.Errorf("the instance's databases were %v before the restore, %v after it (the new one aside)", before, after)
	}
	if n := h.count("shop", "filler"); n != shopRows {
		t.Errorf("shop.filler has %d rows after the restore, %d before", n, shopRows)
	}
	if n := h.count("bulk", "big"); n != bulkRows {
		t.Errorf("bulk.big has %d rows after the restore, %d before", n, bulkRows)
	}
}

// databases lists the instance's databases, sorted.
func (h *backupHarness) databases() []string {
	h.t.Helper()
	c := mustConnect(h.t, h.d.f.info.CACert, h.inst, "shop")
	defer c.Close(context.Background())
	rows, err := c.Query(context.Background(), "SELECT datname::text FROM pg_database ORDER BY 1")
	if err != nil {
		h.t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		h.t.Fatal(err)
	}
	return names
}

func (h *backupHarness) count(db, table string) int {
	h.t.Helper()
	c := mustConnect(h.t, h.d.f.info.CACert, h.inst, db)
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}
