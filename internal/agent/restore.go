package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"

	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgbackrest"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/store"
)

// A database restored to a point in time (instance.CmdRestoreDatabase, docs/backups.md) runs
// beside the instance's worker, which keeps reconciling meanwhile: a restore takes minutes,
// a failover must not wait for it. The agent's restore runner takes one at a time. Each
// step is redone safely after a crash (its command is delivered again when the agent
// starts), and what a step completed is kept in the restore's directory,
// <restores>/<command id>/, root's:
//
//	step      does                                                   kept
//	reach     refuse a time in the future or before the oldest
//	          backup; a commit after the time if there is none yet,
//	          switch WAL, wait for that segment in the repository
//	scratch   pgbackrest restore of the one database (--delta over   marker "restored"
//	          a partial one) into pgdata, the instance's OS user's;
//	          Fog's scratch settings (no TCP, no archiving)
//	recover   start it as the instance's OS user; wait for recovery
//	          to pause at the time (the log's tail if it fails)
//	dump      pg_dump -Fd of the database, as the system role         marker "dumped"
//	          over the scratch's socket; stop the scratch
//	load      drop and create the temporary database (template0,
//	          the source's locale), a temporary login role that is a
//	          member of the owner, pg_restore as it over TLS
//	          (--no-owner --role=owner)
//	rename    write "renaming", rename the temporary database;        marker "renaming"
//	          drop the temporary role
//
// Its outcome goes into the command before the directory is removed: a failure ends it (Done,
// Error); a success marks it Restored, and the instance's worker ends it once it has published
// an observation that lists the new database, so no reader sees the operation succeed and
// the database missing. A redo
// with "renaming" kept and the temporary database gone finds the restore done; the new name
// taken before then fails the restore (ErrDatabaseExists). A failure, or a command deleted
// while it runs, drops the temporary database and role, stops the scratch cluster and
// removes the directory; a stopping agent only stops the scratch. The runner removes every
// directory whose command is neither pending nor running, when it starts and every minute.

// RestoreRequest is one restore of a database to a point in time into a new database of the
// same instance.
type RestoreRequest struct {
	// ID is the command's: it names the restore's directory, temporary database and role.
	ID string
	// Source is the database restored, as it was at Time; Database the new one, owned by
	// Owner.
	Source, Database, Owner string
	Time                    time.Time
	// Latest restores Source to the end of the WAL archived in the repository (Time zero):
	// geo-restore, from the copy of the stanza in this region.
	Latest bool
	// DropLSN and Dropped, for a source that was dropped: its drop record and the drop's
	// commit time (instance.DroppedDB).
	DropLSN string
	Dropped time.Time
	// Set, when given, is the backup restored, to its end of consistency
	// (`--type=immediate`), rather than Time: a long-term retention backup.
	Set string
	// From is the instance whose backups hold Source, when it is another instance of the
	// region than the one restored into (nil: the same): the scratch cluster is restored
	// from its repository and runs as its OS user, and its WAL is switched to reach Time.
	From Server
	// Dir is the restore's directory.
	Dir string
}

// TempName is the name of the temporary database and role of restore id: a database under
// restore is no database of the instance's yet, and is left out of its status.
func TempName(id string) string {
	h := sha256.Sum256([]byte(id))
	return fmt.Sprintf("%s%x", tempPrefix, h[:6])
}

const tempPrefix = "fog_restore_"

// isTempName reports whether name is a TempName.
var isTempName = regexp.MustCompile(`^fog_restore_[0-9a-f]{12}$`).MatchString

// Markers of the steps a restore completed, in its directory.
const (
	markerRestored = "restored"
	markerDumped   = "dumped"
	markerRenaming = "renaming"
	// markerAtDrop: the restore of a dropped database stops just before its drop record,
	// not at its time (restoreScratch).
	markerAtDrop = "at-drop"
)

// errRestoreCancelled is the cause of a restore whose command was deleted or ended by
// someone else, or whose instance is being deleted.
var errRestoreCancelled = errors.New("restore cancelled")

// commandID is what a command id may be: it names a directory.
var commandID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// restoreDir is restore id's directory.
func (a *Agent) restoreDir(id string) string { return filepath.Join(a.cfg.Backup.RestoreDir, id) }

// checkRestore refuses a restore command the agent cannot carry out for instance s, with
// what to change.
func (a *Agent) checkRestore(s instance.Spec, cmd instance.Command) error {
	switch {
	case !commandID.MatchString(cmd.ID):
		return fmt.Errorf("restore: command id %q: want letters, digits, - and _ (at most 64)", cmd.ID)
	case !a.backups(s):
		return errors.New("restore: the instance has no backups in this region")
	case cmd.SourceDatabase == "" || cmd.Database == "" || cmd.Owner == "":
		return errors.New("restore: the command names no source database, new database or owner")
	case cmd.Latest && (cmd.DropLSN != "" || !cmd.Time.IsZero()):
		return errors.New("restore: a restore to the end of the archive names no point in time and no drop")
	case cmd.Time.IsZero() && !cmd.Latest:
		return errors.New("restore: the command names no point in time")
	case cmd.Time.After(time.Now()):
		return fmt.Errorf("restore: %s is in the future", cmd.Time.UTC().Format(time.RFC3339Nano))
	case cmd.DropLSN != "" && (cmd.Dropped.IsZero() || cmd.Time.After(cmd.Dropped)):
		return errors.New("restore: a dropped database is restored to a time up to its drop")
	case cmd.BackupSet != "" && (cmd.DropLSN != "" || !pgbackrest.ValidLabel(cmd.BackupSet)):
		return fmt.Errorf("restore: backup %q: want a pgBackRest label, and no drop record", cmd.BackupSet)
	}
	if cmd.DropLSN != "" {
		if _, err := pgtypes.ParseLSN(cmd.DropLSN); err != nil {
			return fmt.Errorf("restore: drop record %q: %w", cmd.DropLSN, err)
		}
	}
	for _, n := range []string{cmd.SourceDatabase, cmd.Database} {
		if len(n) > 63 || strings.ContainsFunc(n, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return fmt.Errorf("restore: database name %q: at most 63 bytes, no control characters", n)
		}
	}
	switch cmd.SourceDatabase {
	case "template0", "template1", postgres.SystemDB:
		return fmt.Errorf("restore: %s is no user database", cmd.SourceDatabase)
	}
	if isTempName(cmd.Database) {
		return fmt.Errorf("restore: %s is a name Fog uses for databases under restore", cmd.Database)
	}
	if src, ok := a.restoreSource(s, cmd); !ok {
		return errors.New("restore: the source instance is not one of this region's")
	} else if src.Deleted || !a.backups(src) {
		return errors.New("restore: the source instance is being deleted or has no backups in this region")
	}
	return nil
}

// restoreSource is the spec of the instance whose backups restore cmd reads: s itself, or
// another instance of the region (cmd.SourceInstanceUID).
func (a *Agent) restoreSource(s instance.Spec, cmd instance.Command) (instance.Spec, bool) {
	if cmd.SourceInstanceUID == "" || cmd.SourceInstanceUID == s.UID {
		return s, true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	src, ok := a.specByUID[cmd.SourceInstanceUID]
	return src, ok
}

// submitRestore hands restore command cmd of instance s to the agent's runner, and reports
// whether it did: a command the agent refuses (checkRestore) ends as any other, with why.
func (w *worker) submitRestore(s instance.Spec, cmd instance.Command) bool {
	if s.Deleted || w.a.checkRestore(s, cmd) != nil {
		return false
	}
	req := RestoreRequest{ID: cmd.ID, Source: cmd.SourceDatabase, Database: cmd.Database, Owner: cmd.Owner,
		Time: cmd.Time.UTC(), Latest: cmd.Latest, Set: cmd.BackupSet, DropLSN: cmd.DropLSN, Dropped: cmd.Dropped.UTC(), Dir: w.a.restoreDir(cmd.ID)}
	if src, ok := w.a.restoreSource(s, cmd); ok && src.UID != s.UID {
		req.From = w.a.server(src)
	}
	if w.a.rs.submit(&restoreJob{uid: w.uid, req: req, srv: w.a.server(s)}) {
		w.log.Info("restore queued", "instance", s.Name, "command", cmd.ID, "database", cmd.Database)
	}
	return true
}

// restoreRunner runs the agent's restores one at a time (each reads a backup and writes a
// database: the machine's disk and cores are shared), in the order asked.
type restoreRunner struct {
	mu    sync.Mutex
	jobs  map[string]*restoreJob // by command id
	queue []*restoreJob
	wake  chan struct{}
}

// restoreJob is one restore.
type restoreJob struct {
	uid string
	req RestoreRequest
	srv Server
	// cancel ends a running job with a cause.
	cancel context.CancelCauseFunc
	// stopped: cancelled before it started.
	stopped bool
}

func newRestoreRunner() *restoreRunner {
	return &restoreRunner{jobs: map[string]*restoreJob{}, wake: make(chan struct{}, 1)}
}

// submit queues j unless its command has a job already.
func (r *restoreRunner) submit(j *restoreJob) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.jobs[j.req.ID]; ok {
		return false
	}
	r.jobs[j.req.ID] = j
	r.queue = append(r.queue, j)
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return true
}

// has reports whether command id has a job, queued or running.
func (r *restoreRunner) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.jobs[id]
	return ok
}

// stop cancels the jobs of instance uid (its deletion), and with wait waits until they have
// ended: a running one removes what it made first.
func (r *restoreRunner) stop(uid string, wait bool) {
	r.mu.Lock()
	var running []string
	for id, j := range r.jobs {
		if j.uid != uid {
			continue
		}
		if j.cancel == nil {
			j.stopped = true
			continue
		}
		j.cancel(errRestoreCancelled)
		running = append(running, id)
	}
	r.mu.Unlock()
	for wait && len(running) > 0 {
		time.Sleep(10 * time.Millisecond)
		running = slices.DeleteFunc(running, func(id string) bool { return !r.has(id) })
	}
}

// runRestores carries out the queued restores until ctx ends, and sweeps away the
// directories of restores that no command asks for any more when it starts and every minute.
func (a *Agent) runRestores(ctx context.Context) {
	r := a.rs
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	a.sweepRestores(ctx)
	for {
		r.mu.Lock()
		var j *restoreJob
		for len(r.queue) > 0 && j == nil {
			j, r.queue = r.queue[0], r.queue[1:]
			if j.stopped {
				delete(r.jobs, j.req.ID)
				j = nil
			}
		}
		var jctx context.Context
		if j != nil {
			jctx, j.cancel = context.WithCancelCause(ctx)
		}
		r.mu.Unlock()
		if j == nil {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
			case <-sweep.C:
				a.sweepRestores(ctx)
			}
			continue
		}
		a.runRestore(ctx, jctx, j)
		j.cancel(nil)
		r.mu.Lock()
		delete(r.jobs, j.req.ID)
		r.mu.Unlock()
		a.kickWorker(j.uid)
	}
}

// runRestore runs one restore and publishes its outcome into its command.
func (a *Agent) runRestore(ctx, jctx context.Context, j *restoreJob) {
	log := a.log.With("command", j.req.ID, "instance", j.uid, "database", j.req.Database)
	// The command may have ended since the worker read it (a job that just finished it).
	if c, ok := a.pendingCommand(ctx, j.req.ID); !ok || c.Restored {
		return
	}
	if err := a.writeRestoreJob(j); err != nil {
		a.finishRestore(ctx, j, fmt.Errorf("restore: %w", err), log)
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wctx, stopWatch := context.WithCancel(jctx)
	defer stopWatch()
	// A command deleted (or ended by someone else) cancels the restore.
	wg.Go(func() {
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
			if _, ok := a.pendingCommand(wctx, j.req.ID); !ok && wctx.Err() == nil {
				j.cancel(errRestoreCancelled)
				return
			}
		}
	})
	pub := &progress{a: a, id: j.req.ID, cancel: j.cancel}
	log.Info("restore started", "source", j.req.Source, "time", j.req.Time)
	started := time.Now()
	rctx, cancel := context.WithTimeout(jctx, a.cfg.Backup.Timeout)
	err := j.srv.RestoreDatabase(rctx, j.req, pub.report)
	if errors.Is(rctx.Err(), context.DeadlineExceeded) && jctx.Err() == nil {
		err = fmt.Errorf("not done within %s (--backup-timeout): %w", a.cfg.Backup.Timeout, err)
	}
	if err != nil {
		err = fmt.Errorf("restore: %w", err)
	}
	cancel()
	stopWatch()
	wg.Wait()
	switch {
	case ctx.Err() != nil:
		// The agent stops: the command is delivered again when it starts, and the restore
		// resumes from what its directory says is done.
		ectx, ecancel := context.WithTimeout(context.Background(), time.Minute)
		defer ecancel()
		if err := j.srv.EndRestore(ectx, j.req, false); err != nil {
			log.Warn("stop the restore's scratch cluster", "err", err)
		}
		log.Info("restore interrupted; it resumes when the agent starts again")
		return
	case errors.Is(context.Cause(jctx), errRestoreCancelled):
		log.Info("restore cancelled")
		a.discardRestore(ctx, j, log)
		return
	}
	if err == nil {
		log.Info("restore done", "took", time.Since(started).Round(time.Millisecond))
	}
	a.finishRestore(ctx, j, err, log)
}

// finishRestore publishes a restore's outcome, then removes what it left.
func (a *Agent) finishRestore(ctx context.Context, j *restoreJob, err error, log *slog.Logger) {
	if err != nil {
		log.Error("restore failed", "err", err)
	}
	_, perr := a.updateCommand(ctx, j.req.ID, func(c *instance.Command) {
		if err != nil {
			c.Done, c.Error = true, err.Error()
		} else {
			// The worker ends it, with an observation that lists the new database
			// (runRestores kicks it).
			c.Restored, c.Progress = true, 100
		}
	})
	if perr != nil {
		// Left as it is: the command is delivered again, and the restore redone from its
		// directory (a completed one is found completed).
		log.Error("publish the restore's outcome", "err", perr)
		return
	}
	a.discardRestore(ctx, j, log)
}

// discardRestore removes what a restore left (not the new database of one that completed).
// What cannot be removed now is left to the runner's sweep.
func (a *Agent) discardRestore(ctx context.Context, j *restoreJob, log *slog.Logger) {
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	if err := j.srv.EndRestore(ectx, j.req, true); err != nil {
		log.Warn("remove what the restore left; trying again later", "err", err)
	}
}

// pendingCommand reads command id, and reports whether it is there and not done.
func (a *Agent) pendingCommand(ctx context.Context, id string) (instance.Command, bool) {
	var c instance.Command
	_, err := store.Get(ctx, a.st, instance.CommandKey(a.cfg.Region, id), &c)
	return c, err == nil && !c.Done
}

// updateCommand changes command id with fn, unless it is gone or done (ok false): a
// deleted command is never written again.
func (a *Agent) updateCommand(ctx context.Context, id string, fn func(*instance.Command)) (ok bool, err error) {
	key := instance.CommandKey(a.cfg.Region, id)
	for attempt := 0; ; attempt++ {
		var c instance.Command
		rev, err := store.Get(ctx, a.st, key, &c)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if c.Done {
			return false, nil
		}
		fn(&c)
		b, err := json.Marshal(c)
		if err != nil {
			return false, err
		}
		err = a.st.Txn(ctx, []store.Cond{{Key: key, Rev: rev}}, []store.Op{{Key: key, Value: b}})
		if !errors.Is(err, store.ErrConflict) || attempt == 3 {
			return err == nil, err
		}
	}
}

// progress publishes a restore's progress on its command when it moved by a point or more,
// at most once a second unless it moved by five (the end of a step).
type progress struct {
	a      *Agent
	id     string
	cancel context.CancelCauseFunc

	mu   sync.Mutex
	last float64
	at   time.Time
}

func (p *progress) report(pct float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pct < p.last+1 || pct < p.last+5 && time.Since(p.at) < time.Second {
		return
	}
	p.last, p.at = pct, time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ok, err := p.a.updateCommand(ctx, p.id, func(c *instance.Command) { c.Progress = float64(int(pct*10)) / 10 })
	if err == nil && !ok {
		p.cancel(errRestoreCancelled)
	}
}

// restoreJobFile is what a restore's directory says of it, for the sweep: whose it is.
type restoreJobFile struct {
	InstanceUID string `json:"instanceUid"`
	Database    string `json:"database"`
	// SourceUID is the instance restored from, when another (its OS user runs the scratch).
	SourceUID string `json:"sourceUid,omitempty"`
}

// writeRestoreJob makes the restore's directory (root's, 0711: the scratch cluster's data
// directory in it is the instance's OS user's) and records in it whose restore it is.
func (a *Agent) writeRestoreJob(j *restoreJob) error {
	if err := os.MkdirAll(a.cfg.Backup.RestoreDir, 0o711); err != nil {
		return err
	}
	if err := os.Mkdir(j.req.Dir, 0o711); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	jf := restoreJobFile{InstanceUID: j.uid, Database: j.req.Database}
	if from, ok := j.req.From.(*pgServer); ok {
		jf.SourceUID = from.uid
	}
	b, err := json.Marshal(jf)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(j.req.Dir, "job.json"), b, 0o600)
}

// sweepRestores removes the directories of restores whose command is neither pending nor
// running: cancelled while the agent was down, or finished by a job that could not remove
// what it left. A pending one is left for its redelivery.
func (a *Agent) sweepRestores(ctx context.Context) {
	names, err := os.ReadDir(a.cfg.Backup.RestoreDir)
	if err != nil {
		return
	}
	var specs map[string]instance.Spec
	for _, e := range names {
		id := e.Name()
		if !e.IsDir() || !commandID.MatchString(id) || a.rs.has(id) {
			continue
		}
		if _, pending := a.pendingCommand(ctx, id); pending {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		dir := a.restoreDir(id)
		var jf restoreJobFile
		b, err := os.ReadFile(filepath.Join(dir, "job.json"))
		if err == nil {
			err = json.Unmarshal(b, &jf)
		}
		if specs == nil {
			specs = map[string]instance.Spec{}
			for _, s := range a.specs(ctx) {
				specs[s.UID] = s
			}
		}
		s, ok := specs[jf.InstanceUID]
		if err != nil || !ok || s.Deleted {
			// Its instance is gone, and with it the temporary database; the scratch was
			// stopped before the instance was deleted.
			a.log.Warn("removing the directory of a restore of no instance", "dir", dir)
			_ = os.RemoveAll(dir)
			continue
		}
		req := RestoreRequest{ID: id, Database: jf.Database, Dir: dir}
		if src, ok := specs[jf.SourceUID]; ok && jf.SourceUID != "" && jf.SourceUID != s.UID {
			req.From = a.server(src)
		}
		if err := a.server(s).EndRestore(ctx, req, true); err != nil {
			a.log.Warn("remove what a cancelled restore left; trying again later", "command", id, "err", err)
			continue
		}
		a.log.Info("removed what a cancelled restore left", "command", id, "instance", s.Name)
	}
}

// restoreJobs is how many processes pg_dump and pg_restore run each: these machines have
// two cores.
const restoreJobs = 2

// scratch is restore r's scratch cluster: in r.Dir, run by the OS user of the instance whose
// repository it is restored from (source), listening on a socket of its own only.
func (p *pgServer) scratch(r RestoreRequest) *postgres.Cluster {
	return &postgres.Cluster{Dir: r.Dir, SocketDir: postgres.SocketDirFor("restore/" + r.ID), Port: postgres.ScratchPort, R: p.source(r).R}
}

// source is the instance whose backups restore r reads: p, or r.From.
func (p *pgServer) source(r RestoreRequest) *pgServer {
	if from, ok := r.From.(*pgServer); ok && from != nil {
		return from
	}
	return p
}

// RestoreDatabase carries out restore r (the steps above), reporting progress from 0 to 100.
func (p *pgServer) RestoreDatabase(ctx context.Context, r RestoreRequest, progress func(float64)) error {
	if p.backup == nil {
		return errors.New("the instance has no backups")
	}
	sc := p.scratch(r)
	tmp := TempName(r.ID)
	// The system role's sessions last a step each: a restore takes long, and the instance
	// may restart meanwhile.
	renamed := false
	err := p.withSystem(ctx, func(sys *pgx.Conn) error {
		newThere, err := postgres.DatabaseExists(ctx, sys, r.Database)
		if err != nil {
			return err
		}
		if sc.HasMarker(markerRenaming) {
			tmpThere, err := postgres.DatabaseExists(ctx, sys, tmp)
			if err != nil {
				return err
			}
			if !tmpThere && newThere {
				renamed = true // before a crash
				return nil
			}
			if !tmpThere {
				return fmt.Errorf("the restored database %s is gone; ask again", tmp)
			}
		}
		if newThere {
			return fmt.Errorf("%w: %s; choose another name, or drop that database first", postgres.ErrDatabaseExists, r.Database)
		}
		return nil
	})
	if err != nil || renamed {
		return p.dropRestoreRole(ctx, tmp, err, progress)
	}
	if !sc.HasMarker(markerRenaming) {
		// The scratch steps read the source's repository and switch its WAL; the load is
		// into this instance.
		src := p.source(r)
		if err := src.restoreScratch(ctx, sc, r, progress); err != nil {
			return err
		}
		err := src.dumpScratch(ctx, sc, r, progress)
		if errors.Is(err, errRedoAtDrop) {
			if err := src.restoreScratch(ctx, sc, r, progress); err != nil {
				return err
			}
			err = src.dumpScratch(ctx, sc, r, progress)
		}
		if err != nil {
			return err
		}
		if err := p.withSystem(ctx, func(sys *pgx.Conn) error { return p.loadDump(ctx, sys, r, tmp, progress) }); err != nil {
			return err
		}
	}
	// Rename. Nothing of the role may be left in the database: it is dropped next.
	conn, err := p.Cluster.Connect(ctx, tmp)
	if err != nil {
		return fmt.Errorf("connect to the restored database: %w", err)
	}
	err = postgres.DropOwned(ctx, conn, tmp)
	conn.Close(context.Background())
	if err != nil {
		return err
	}
	if err := sc.WriteMarker(markerRenaming); err != nil {
		return err
	}
	err = p.withSystem(ctx, func(sys *pgx.Conn) error {
		if err := postgres.RenameDatabase(ctx, sys, tmp, r.Database); err != nil {
			if errors.Is(err, postgres.ErrDatabaseExists) {
				return fmt.Errorf("%w; choose another name, or drop that database first", err)
			}
			return err
		}
		return nil
	})
	return p.dropRestoreRole(ctx, tmp, err, progress)
}

// withSystem runs fn with a session of the instance's system role.
func (p *pgServer) withSystem(ctx context.Context, fn func(sys *pgx.Conn) error) error {
	sys, err := p.Cluster.ConnectSystem(ctx)
	if err != nil {
		return fmt.Errorf("the instance is not accepting connections: %w", err)
	}
	defer sys.Close(context.Background())
	return fn(sys)
}

// dropRestoreRole ends a restore that reached its rename (err nil): the temporary role goes.
func (p *pgServer) dropRestoreRole(ctx context.Context, role string, err error, progress func(float64)) error {
	if err != nil {
		return err
	}
	if err := p.withSystem(ctx, func(sys *pgx.Conn) error { return postgres.DropRole(ctx, sys, role) }); err != nil {
		return err
	}
	progress(100)
	return nil
}

// restoreScratch makes sure the restore can reach its time, and restores the backup into
// the scratch cluster (steps reach and scratch), unless that was done.
func (p *pgServer) restoreScratch(ctx context.Context, sc *postgres.Cluster, r RestoreRequest, progress func(float64)) error {
	if sc.HasMarker(markerRestored) {
		return nil
	}
	if r.Time.After(time.Now()) {
		return fmt.Errorf("%s is in the future", r.Time.UTC().Format(time.RFC3339Nano))
	}
	started := time.Now()
	d, err := p.backupDriver()
	if err != nil {
		return err
	}
	info, err := p.info(ctx, d, "")
	if err != nil {
		return fmt.Errorf("read the repository: %w", err)
	}
	if r.Latest {
		return p.restoreScratchLatest(ctx, sc, r, info, progress, started)
	}
	if r.Set != "" {
		return p.restoreScratchSet(ctx, sc, r, d, info, progress, started)
	}
	stop, ok := info.Earliest(0)
	if !ok {
		return errors.New("the instance has no backup yet")
	}
	// pgBackRest picks a backup whose stop time, in whole seconds, is before the target's
	// whole second (restoreBackupSet): none is before a target in the stop's second.
	earliest := stop.Add(time.Second)
	if r.Time.Before(earliest) {
		return fmt.Errorf("%s is before the earliest restore point, %s", r.Time.UTC().Format(time.RFC3339Nano), earliest.Format(time.RFC3339))
	}
	var segment string
	err = p.withSystem(ctx, func(sys *pgx.Conn) error {
		if err := p.checkScratchSpace(ctx, sys, r); err != nil {
			return err
		}
		segment, err = postgres.EnsureRestorable(ctx, sys, r.Time)
		return err
	})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, p.a.cfg.Backup.WaitArchived)
	err = d.WaitArchived(wctx, segment, 200*time.Millisecond)
	cancel()
	if err != nil {
		return fmt.Errorf("the WAL up to the restore point is not in the repository: %w", err)
	}
	p.stepDone(r, "the WAL past the restore point is archived", started)
	started = time.Now()

	sd, nonEmpty, err := p.prepareScratch(ctx, sc)
	if err != nil {
		return err
	}
	opts := pgbackrest.RestoreOptions{
		Path: sc.DataDir(), Type: "time", Target: r.Time.UTC().Format(pgbackrest.RestoreTimeLayout), TargetAction: "pause",
		Delta: nonEmpty, ArchiveOff: true,
		Progress: func(f float64) { progress(40 * f) },
	}
	if atDrop(sc, r) {
		// PostgreSQL checks a time target only at commits, and removes a dropped database's
		// files at its drop record, ahead of the drop's commit: the database as it was
		// when dropped is the one just before that record.
		opts.Type, opts.Target, opts.TargetExclusive = "lsn", r.DropLSN, true
	}
	set, ok := chooseBackup(info, r, opts.Type == "lsn")
	if !ok {
		return fmt.Errorf("no backup in the repository ends before %s", r.Time.UTC().Format(time.RFC3339Nano))
	}
	return p.restoreInto(ctx, sc, r, d, sd, opts, set.Label, started)
}

// prepareScratch makes the scratch cluster's directory and its own pgBackRest configuration:
// the instance's repository, a spool, lock and log of its own (nothing it does touches the
// instance's archiving), its data directory as pg1, and a synchronous archive-get (no
// process outlives it). It returns the scratch's driver and whether the directory held a
// restore already (a delta restore then).
func (p *pgServer) prepareScratch(ctx context.Context, sc *postgres.Cluster) (*pgbackrest.Driver, bool, error) {
	if err := sc.StopNow(ctx, true); err != nil {
		return nil, false, err
	}
	cfg, err := p.repoConfig(ctx, sc, *p.backup)
	if err != nil {
		return nil, false, err
	}
	cfg.ArchiveAsync, cfg.ArchivePushQueueMax, cfg.PG.Port = false, 0, sc.Port
	text, err := cfg.Render()
	if err != nil {
		return nil, false, err
	}
	nonEmpty, err := sc.PrepareScratch()
	if err != nil {
		return nil, false, fmt.Errorf("scratch directory: %w", err)
	}
	if _, err := sc.PrepareBackup(p.a.repoRoot(), p.backup.Stanza, text); err != nil {
		return nil, false, fmt.Errorf("scratch directory: %w", err)
	}
	sd, err := p.a.driver(sc, p.backup.Stanza)
	return sd, nonEmpty, err
}

// restoreInto restores backup set into the scratch cluster with opts, only the source's files
// when the backup has them, and configures it (step scratch).
func (p *pgServer) restoreInto(ctx context.Context, sc *postgres.Cluster, r RestoreRequest, d, sd *pgbackrest.Driver, opts pgbackrest.RestoreOptions, set string, started time.Time) error {
	opts.Set = set
	// Only the source's files are restored, when the backup has it: a database made after
	// the backup is made again by the WAL replayed, and pgBackRest refuses to include a
	// database its backup does not list.
	if in, err := p.info(ctx, d, set); err != nil {
		return fmt.Errorf("read backup %s: %w", set, err)
	} else if b, ok := in.Find(set); ok && b.HasDatabase(r.Source) {
		opts.DBInclude = []string{r.Source}
	}
	if err := sd.Restore(ctx, opts); err != nil {
		return err
	}
	if err := sc.WriteConfig(postgres.Config{Name: "fog-restore", Timezone: "UTC", FogUser: p.a.cfg.FogUser,
		GuardLibrary: p.a.cfg.GuardLibrary, Scratch: true}); err != nil {
		return fmt.Errorf("configure the scratch cluster: %w", err)
	}
	p.stepDone(r, "scratch cluster restored", started)
	return sc.WriteMarker(markerRestored)
}

// restoreScratchLatest restores the newest backup of the repository into the scratch
// cluster, to recover to the end of the WAL archived there (pgBackRest's type default):
// geo-restore reads the copy of the stanza in this region, whose source region may be gone,
// so nothing is asked of the source's server.
func (p *pgServer) restoreScratchLatest(ctx context.Context, sc *postgres.Cluster, r RestoreRequest, info *pgbackrest.Info, progress func(float64), started time.Time) error {
	var newest pgbackrest.BackupInfo
	found := false
	for _, b := range info.Backup {
		if !b.Failed() && (!found || b.Timestamp.Stop > newest.Timestamp.Stop) {
			newest, found = b, true
		}
	}
	if !found {
		return errors.New("the region's repository holds no backup of the instance yet")
	}
	d, err := p.backupDriver()
	if err != nil {
		return err
	}
	sd, nonEmpty, err := p.prepareScratch(ctx, sc)
	if err != nil {
		return err
	}
	opts := pgbackrest.RestoreOptions{Path: sc.DataDir(), Type: "default", Delta: nonEmpty, ArchiveOff: true,
		Progress: func(f float64) { progress(40 * f) }}
	return p.restoreInto(ctx, sc, r, d, sd, opts, newest.Label, started)
}

// restoreScratchSet restores backup r.Set into the scratch cluster, recovered to the
// backup's end of consistency (`--type=immediate`): a long-term retention backup, whose WAL
// the repository keeps only that far.
func (p *pgServer) restoreScratchSet(ctx context.Context, sc *postgres.Cluster, r RestoreRequest, d *pgbackrest.Driver, info *pgbackrest.Info, progress func(float64), started time.Time) error {
	if _, ok := info.Find(r.Set); !ok {
		return fmt.Errorf("backup %s is not in the repository (expired or deleted)", r.Set)
	}
	if err := p.withSystem(ctx, func(sys *pgx.Conn) error { return p.checkScratchSpace(ctx, sys, r) }); err != nil {
		return err
	}
	sd, nonEmpty, err := p.prepareScratch(ctx, sc)
	if err != nil {
		return err
	}
	opts := pgbackrest.RestoreOptions{
		Path: sc.DataDir(), Set: r.Set, Type: "immediate", TargetAction: "pause",
		Delta: nonEmpty, ArchiveOff: true,
		Progress: func(f float64) { progress(40 * f) },
	}
	if in, err := p.info(ctx, d, r.Set); err != nil {
		return fmt.Errorf("read backup %s: %w", r.Set, err)
	} else if b, ok := in.Find(r.Set); ok && b.HasDatabase(r.Source) {
		opts.DBInclude = []string{r.Source}
	} else {
		return fmt.Errorf("backup %s holds no database %s", r.Set, r.Source)
	}
	if err := sd.Restore(ctx, opts); err != nil {
		return err
	}
	if err := sc.WriteConfig(postgres.Config{Name: "fog-restore", Timezone: "UTC", FogUser: p.a.cfg.FogUser,
		GuardLibrary: p.a.cfg.GuardLibrary, Scratch: true}); err != nil {
		return fmt.Errorf("configure the scratch cluster: %w", err)
	}
	p.stepDone(r, "scratch cluster restored from backup "+r.Set, started)
	return sc.WriteMarker(markerRestored)
}

// atDrop reports whether restore r stops just before its dropped source's drop record
// rather than at its time: asked for the time of the drop, or found to be the same
// (dumpScratch).
func atDrop(sc *postgres.Cluster, r RestoreRequest) bool {
	return r.DropLSN != "" && (!r.Time.Before(r.Dropped) || sc.HasMarker(markerAtDrop))
}

// chooseBackup picks the backup restore r starts from: the newest that ends before its
// target (byLSN: the dropped source's drop record; else its time, in whole seconds, as
// pgBackRest compares them).
func chooseBackup(in *pgbackrest.Info, r RestoreRequest, byLSN bool) (pgbackrest.BackupInfo, bool) {
	var best pgbackrest.BackupInfo
	found := false
	drop, _ := pgtypes.ParseLSN(r.DropLSN)
	for _, b := range in.Backup {
		if b.Failed() {
			continue
		}
		if byLSN {
			if stop, err := pgtypes.ParseLSN(b.LSN.Stop); err != nil || stop > drop {
				continue
			}
		} else if b.Timestamp.Stop >= r.Time.Unix() {
			continue
		}
		if !found || b.Timestamp.Stop > best.Timestamp.Stop {
			best, found = b, true
		}
	}
	return best, found
}

// errRedoAtDrop: a dropped database's restore to a time before its drop found its files
// gone (restoreScratch).
var errRedoAtDrop = errors.New("the restore point reached the database's drop")

// stepDone logs the end of one of restore r's steps, and how long it took.
func (p *pgServer) stepDone(r RestoreRequest, step string, started time.Time) {
	p.a.log.Info("restore: "+step, "command", r.ID, "instance", p.uid, "took", time.Since(started).Round(time.Millisecond))
}

// checkScratchSpace refuses a restore whose scratch copy and dump would not fit: about twice
// the database's size today (its size at the time is not known before it is restored).
func (p *pgServer) checkScratchSpace(ctx context.Context, sys *pgx.Conn, r RestoreRequest) error {
	var size *int64
	if err := sys.QueryRow(ctx, `SELECT pg_catalog.pg_database_size(oid) FROM pg_catalog.pg_database
		WHERE datname OPERATOR(pg_catalog.=) $1::pg_catalog.name`, r.Source).Scan(&size); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	var fs unix.Statfs_t
	if size == nil || unix.Statfs(r.Dir, &fs) != nil {
		return nil
	}
	if free := int64(fs.Bavail) * fs.Bsize; free < 2**size {
		return fmt.Errorf("the scratch copy of %s needs about %d MiB free in %s, and %d MiB are", r.Source, 2**size>>20, filepath.Dir(r.Dir), free>>20)
	}
	return nil
}

// dumpScratch starts the scratch cluster, waits for its recovery to pause at the time, and
// dumps the database (steps recover and dump), unless that was done; then stops it.
func (p *pgServer) dumpScratch(ctx context.Context, sc *postgres.Cluster, r RestoreRequest, progress func(float64)) error {
	if sc.HasMarker(markerDumped) {
		return sc.StopNow(ctx, true)
	}
	progress(40)
	started := time.Now()
	if err := sc.Launch(ctx); err != nil {
		return fmt.Errorf("start the scratch cluster: %w; its log: %s", err, sc.LogTail(10))
	}
	wait := waitPaused
	if r.Latest {
		wait = waitRecovered
	}
	if err := wait(ctx, sc, "postgres"); err != nil {
		return err
	}
	progress(55)
	p.stepDone(r, "scratch cluster recovered to the restore point", started)
	started = time.Now()
	conn, err := sc.Connect(ctx, r.Source)
	if err != nil && r.DropLSN != "" && !atDrop(sc, r) {
		// Recovery to a time stops at the first commit after it. With none between that
		// time and a dropped database's drop in the whole instance, that commit is the
		// drop's own, whose drop record was replayed before it: the files are gone. The
		// database was then the same at the time as just before the drop record, which is
		// where the restore stops instead.
		p.a.log.Info("restore: no commit between the restore point and the database's drop; restoring it as it was at the drop, which is the same",
			"command", r.ID, "err", err)
		if err := sc.WriteMarker(markerAtDrop); err != nil {
			return err
		}
		if err := sc.RemoveMarker(markerRestored); err != nil {
			return err
		}
		if err := sc.StopNow(ctx, true); err != nil {
			return err
		}
		return errRedoAtDrop
	}
	if err != nil {
		return fmt.Errorf("connect to the scratch cluster: %w", err)
	}
	locale, err := postgres.DatabaseLocale(ctx, conn, r.Source)
	var exclude []string
	if err == nil {
		var fogs bool
		if fogs, err = postgres.FogSchemaIsFogs(ctx, conn); fogs {
			// Fog's link-status view: the instance installs its own in the new database.
			exclude = append(exclude, "fog")
		}
	}
	conn.Close(context.Background())
	if err != nil {
		return err
	}
	b, err := json.Marshal(locale)
	if err != nil {
		return err
	}
	if err := sc.WriteRootFile("locale.json", b); err != nil {
		return err
	}
	dump := filepath.Join(r.Dir, "dump")
	if err := os.RemoveAll(dump); err != nil {
		return err
	}
	if err := sc.DumpDatabase(ctx, r.Source, dump, restoreJobs, exclude...); err != nil {
		return fmt.Errorf("dump the restored database: %w", err)
	}
	if err := sc.WriteMarker(markerDumped); err != nil {
		return err
	}
	progress(75)
	p.stepDone(r, "database dumped", started)
	return sc.StopNow(ctx, true)
}

// waitPaused waits until the scratch cluster's recovery has reached its target and paused.
// A recovery that fails ends the server: its log says why.
func waitPaused(ctx context.Context, sc *postgres.Cluster, db string) error {
	return waitRecovery(ctx, sc, db, false)
}

// waitRecovered waits until the scratch cluster has replayed all the WAL the repository
// holds and ended its recovery (a restore to the end of the archive, which has no target to
// pause at).
func waitRecovered(ctx context.Context, sc *postgres.Cluster, db string) error {
	return waitRecovery(ctx, sc, db, true)
}

// waitRecovery waits for the scratch cluster's recovery to pause at its target, or with
// toEnd to end.
func waitRecovery(ctx context.Context, sc *postgres.Cluster, db string, toEnd bool) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	started := time.Now()
	for {
		if _, running := sc.PID(); !running && time.Since(started) > 2*time.Second {
			return fmt.Errorf("the scratch cluster's recovery failed: %s", sc.LogTail(8))
		}
		if conn, err := sc.Connect(ctx, db); err == nil {
			inRecovery, paused, err := postgres.RecoveryPaused(ctx, conn)
			conn.Close(context.Background())
			switch {
			case err != nil:
			case !inRecovery && toEnd:
				return nil
			case !inRecovery:
				return errors.New("the scratch cluster ended its recovery instead of pausing at the restore point")
			case paused && !toEnd:
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the scratch cluster's recovery: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// loadDump creates the temporary database and role and restores the dump into it (step
// load).
func (p *pgServer) loadDump(ctx context.Context, sys *pgx.Conn, r RestoreRequest, tmp string, progress func(float64)) error {
	sc := p.scratch(r)
	b, err := sc.ReadFile("locale.json", 1<<16)
	if err != nil {
		return err
	}
	var locale postgres.ScratchLocale
	if err := json.Unmarshal(b, &locale); err != nil {
		return err
	}
	if err := postgres.DropDatabase(ctx, sys, tmp); err != nil {
		return err
	}
	if err := postgres.CreateDatabaseFrom(ctx, sys, tmp, r.Owner, locale); err != nil {
		return err
	}
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	password := base64.RawURLEncoding.EncodeToString(secret)
	if err := postgres.EnsureLoginRole(ctx, sys, tmp, password, r.Owner, time.Now().Add(p.a.cfg.Backup.Timeout)); err != nil {
		return err
	}
	progress(78)
	started := time.Now()
	login := postgres.Login{Host: p.Cluster.Host, Port: p.Cluster.Port, User: tmp, Password: password, Database: tmp}
	if err := p.R.LoadDump(ctx, filepath.Join(r.Dir, "dump"), login, r.Owner, restoreJobs, r.Dir); err != nil {
		return fmt.Errorf("load the dump into the new database: %w", err)
	}
	progress(98)
	p.stepDone(r, "dump loaded into the new database", started)
	return nil
}

// EndRestore stops restore r's scratch cluster and, with discard, drops its temporary
// database and role (never the new database of a restore that was renamed) and removes its
// directory.
func (p *pgServer) EndRestore(ctx context.Context, r RestoreRequest, discard bool) error {
	sc := p.scratch(r)
	if err := sc.StopNow(ctx, true); err != nil {
		return err
	}
	if !discard {
		return nil
	}
	tmp := TempName(r.ID)
	err := p.withSystem(ctx, func(sys *pgx.Conn) error {
		if err := postgres.DropDatabase(ctx, sys, tmp); err != nil {
			return err
		}
		return postgres.DropRole(ctx, sys, tmp)
	})
	if err != nil {
		return err
	}
	return os.RemoveAll(r.Dir)
}
