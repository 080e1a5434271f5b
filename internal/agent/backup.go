package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/ltr"
	"github.com/fogdb/fog/internal/pgbackrest"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/store"
)

// BackupConfig is the agent's side of backups (docs/backups.md): where its region's
// repository is and how pgBackRest runs.
type BackupConfig struct {
	// Off runs no pgBackRest: instances neither archive WAL nor take backups. It is set when
	// pgBackRest is not installed (OffReason says so in every instance's status).
	Off       bool
	OffReason string
	// Bin is the pgbackrest executable ("": found on PATH).
	Bin string
	// Dir is the region's repository: a directory of stanzas (default: backups/<region>
	// beside the agent's instance directory). Each region needs its own: a group's members
	// share a stanza, one copy per region, each written by its own member's OS user.
	Dir string
	// ArchiveTimeout is archive_timeout: a segment with any WAL in it is archived within
	// this long, which bounds what a restore from the repository can miss.
	ArchiveTimeout time.Duration
	// QueueMax bounds the WAL waiting to be archived (archive-push-queue-max): past it the
	// oldest is dropped, so an unreachable repository never fills the disk.
	QueueMax int64
	// WaitArchived bounds the wait for a backup's last WAL segment to reach the repository.
	WaitArchived time.Duration
	// Timeout bounds one backup: it holds the machine's one backup slot. It bounds a
	// restore's temporary login too.
	Timeout time.Duration
	// RepoType is where the region's repository is: RepoPosix (Dir, the default) or
	// RepoAzure (Azure, a container per stanza).
	RepoType string
	Azure    AzureConfig
	// Now is the clock expiry judges retention by (nil: time.Now); tests move it weeks ahead.
	Now func() time.Time
	// SeedStall bounds a seed from the region's repository (seed.go): a standby restored
	// from a backup whose WAL position has not moved for this long without streaming from
	// its primary is seeded with pg_basebackup instead (default 60s).
	SeedStall time.Duration
	// RestoreDir holds the scratch copies of databases under restore, one directory per
	// restore command (default: restores/<region> beside the agent's instance directory).
	RestoreDir string
}

// Defaults of the backup settings.
const (
	DefaultArchiveTimeout = time.Minute
	DefaultQueueMax       = 1 << 30
	DefaultBackupTimeout  = 6 * time.Hour
)

func (c *BackupConfig) registerFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Dir, "backup-dir", c.Dir, "the region's backup repository: a directory of one pgBackRest stanza per instance (default: backups/<region> beside the instances); each region needs its own")
	fs.StringVar(&c.Bin, "pgbackrest", c.Bin, "the pgbackrest executable (default: found on PATH; without it instances archive no WAL and take no backups)")
	fs.DurationVar(&c.ArchiveTimeout, "archive-timeout", c.ArchiveTimeout, "archive_timeout: WAL is archived at least this often while anything is written, the most a restore from the repository can miss")
	fs.DurationVar(&c.Timeout, "backup-timeout", c.Timeout, "the longest one backup may run before it is stopped (it holds the machine's one backup slot; the next one resumes it)")
	fs.StringVar(&c.RepoType, "backup-repo-type", c.RepoType, "where the region's backup repository is: posix (a directory, --backup-dir) or azure (Azure Blob Storage, a container per instance's stanza: --backup-azure-*)")
	c.Azure.registerFlags(fs)
	fs.Int64Var(&c.QueueMax, "archive-queue-max", c.QueueMax, "bytes of WAL that may wait to be archived before the oldest is dropped (the archive then has a gap, reported, instead of a full disk)")
}

// validate fills the defaults; a pgBackRest that cannot be found turns backups off, said in
// OffReason, rather than keeping the agent from running.
func (c *BackupConfig) validate(instances, region string) error {
	if c.Dir == "" && instances != "" {
		// A region's own: fog up runs every region's agent on one machine, and the members of
		// a failover group, which share a stanza, each write their region's copy of it.
		c.Dir = filepath.Join(filepath.Dir(instances), "backups", region)
	}
	if c.ArchiveTimeout == 0 {
		c.ArchiveTimeout = DefaultArchiveTimeout
	}
	if c.ArchiveTimeout < time.Second {
		return fmt.Errorf("--archive-timeout %s: at least 1s", c.ArchiveTimeout)
	}
	if c.QueueMax == 0 {
		c.QueueMax = DefaultQueueMax
	}
	if c.QueueMax < 64<<20 {
		return fmt.Errorf("--archive-queue-max %d: at least 64 MiB (four WAL segments)", c.QueueMax)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultBackupTimeout
	}
	if c.Timeout < time.Minute {
		return fmt.Errorf("--backup-timeout %s: at least 1m", c.Timeout)
	}
	if c.SeedStall == 0 {
		c.SeedStall = time.Minute
	}
	if c.WaitArchived == 0 {
		c.WaitArchived = 5 * time.Minute
	}
	if err := c.validateRepo(); err != nil {
		return err
	}
	if c.Off {
		return nil
	}
	bin, err := pgbackrest.FindBinary(c.Bin)
	if err != nil {
		if c.Bin != "" {
			return fmt.Errorf("--pgbackrest %s: %w", c.Bin, err)
		}
		c.Off, c.OffReason = true, "pgBackRest is not installed on the region's machine (Debian: apt-get install pgbackrest): no WAL is archived and no backup taken"
		return nil
	}
	c.Bin = bin
	return nil
}

// backups reports whether instance s archives WAL and takes backups here.
func (a *Agent) backups(s instance.Spec) bool {
	return s.Backup != nil && !a.cfg.Backup.Off
}

// backupRunner runs the agent's backups one at a time (a backup reads a whole instance; the
// machine's disk and cores are shared), each as its instance's OS user, in the order asked.
type backupRunner struct {
	mu    sync.Mutex
	jobs  map[string]*backupJob
	queue []*backupJob
	wake  chan struct{}
}

// backupJob is one backup of one instance.
type backupJob struct {
	uid  string
	seq  int64
	typ  string
	srv  Server
	kick func()
	// from is the group's primary a standby's backup starts and stops the backup on (nil:
	// the instance backs itself up).
	from *instance.BackupServed
	// cancel ends a running job. ended is set once the backup ended, with err; done once the
	// job ended, with, for a backup taken, the verification that followed it (verify). A
	// backup is published when it ended (reported), its verification when it is done: a
	// backup is restorable, and its time its own, before the verification reads the stanza.
	cancel   context.CancelFunc
	ended    bool
	reported bool
	done     bool
	err      error
	verify   *instance.BackupVerify
}

func newBackupRunner() *backupRunner {
	return &backupRunner{jobs: map[string]*backupJob{}, wake: make(chan struct{}, 1)}
}

// submit queues a backup of instance j.uid unless it has a job already (has).
func (r *backupRunner) submit(j *backupJob) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.jobs[j.uid]; ok {
		return
	}
	r.jobs[j.uid] = j
	r.queue = append(r.queue, j)
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// has reports whether uid has a job: queued, running, or finished and not collected.
func (r *backupRunner) has(uid string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.jobs[uid]
	return ok
}

// collect returns uid's job if it has news: backup, its backup ended and was not collected
// before; verify, the job is done with a verification (the job is then forgotten).
func (r *backupRunner) collect(uid string) (j *backupJob, backup, verify bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	j, ok := r.jobs[uid]
	if !ok {
		return nil, false, false
	}
	if j.ended && !j.reported {
		backup, j.reported = true, true
	}
	if j.done {
		verify = j.verify != nil
		delete(r.jobs, uid)
	}
	return j, backup, verify
}

// stop cancels uid's job, queued or running, and with wait waits until it has ended. Its
// outcome, an error, is collected as any other's.
func (r *backupRunner) stop(uid string, wait bool) { r.stopIf(uid, wait, nil) }

// stopIf stops uid's job as stop does, if it has one for which cond holds (nil: any).
func (r *backupRunner) stopIf(uid string, wait bool, cond func(j *backupJob) bool) {
	r.mu.Lock()
	j, ok := r.jobs[uid]
	if !ok || j.done || cond != nil && !cond(j) {
		r.mu.Unlock()
		return
	}
	if j.cancel == nil {
		// Queued: it never starts.
		j.ended, j.done, j.err = true, true, errBackupCancelled
		r.mu.Unlock()
		return
	}
	cancel := j.cancel
	r.mu.Unlock()
	cancel()
	for wait {
		r.mu.Lock()
		done := j.done
		r.mu.Unlock()
		if done {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// errBackupCancelled is the outcome of a backup the instance's spec stopped.
var errBackupCancelled = errors.New("cancelled: the instance was stopped, drained, demoted or deleted")

func (r *backupRunner) run(ctx context.Context) {
	for {
		r.mu.Lock()
		var j *backupJob
		for len(r.queue) > 0 && j == nil {
			j, r.queue = r.queue[0], r.queue[1:]
			if j.done {
				j = nil
			}
		}
		var jctx context.Context
		if j != nil {
			jctx, j.cancel = context.WithCancel(ctx)
		}
		r.mu.Unlock()
		if j == nil {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
			}
			continue
		}
		err := j.srv.Backup(jctx, j.typ, j.seq, j.from)
		if err != nil && jctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (%v)", errBackupCancelled, err)
		}
		r.mu.Lock()
		j.ended, j.err = true, err
		r.mu.Unlock()
		if j.kick != nil {
			j.kick()
		}
		var verify *instance.BackupVerify
		if err == nil {
			// Each backup is verified when it is taken, with everything else the repository
			// holds of the stanza: a file that rotted since is found on the next day. The
			// backup was published first (ended): it is restorable, and its time is its own.
			verify = &instance.BackupVerify{Seq: j.seq}
			if verr := j.srv.VerifyBackups(jctx); verr != nil {
				verify.Error = verr.Error()
			}
			verify.At = time.Now().UTC()
			if jctx.Err() != nil {
				verify = nil // cancelled: not a finding
			}
		}
		j.cancel()
		r.mu.Lock()
		j.done, j.verify = true, verify
		r.mu.Unlock()
		if j.kick != nil {
			j.kick()
		}
	}
}

// archiveRow makes sure the instance's stanza exists in the region's repository: the
// configuration was written with the server's (configure), the stanza is created from
// pg_control, so a standby's member creates it in its region without its primary.
func (w *worker) archiveRow(ctx context.Context, p *pass) error {
	s, st := p.s, p.st
	if st.Backup == nil {
		st.Backup = &instance.BackupStatus{}
	}
	if st.Backup.Stanza == s.Backup.Stanza {
		return nil
	}
	if _, running := p.srv.PID(); !running {
		return nil
	}
	aside, err := p.srv.StanzaCreate(ctx)
	if aside != "" {
		w.log.Warn("the region's repository held another system's history under the instance's stanza; it was set aside",
			"instance", s.Name, "stanza", s.Backup.Stanza, "aside", aside)
	}
	if err != nil {
		return fmt.Errorf("create the backup stanza %s: %w", s.Backup.Stanza, err)
	}
	w.log.Info("backup stanza ready", "instance", s.Name, "stanza", s.Backup.Stanza)
	// A new stanza (a group deleted gives its former secondary one) starts a new history.
	st.Backup.Stanza, st.Backup.Backups, st.Backup.CheckedAt = s.Backup.Stanza, nil, time.Time{}
	return nil
}

// backupRow hands a backup the spec asks for to the agent's runner, unless one of the
// instance's is queued, running, or finished and not yet published.
func (w *worker) backupRow(ctx context.Context, p *pass) error {
	s, st := p.s, p.st
	w.collectBackup(s, st.Backup)
	if s.Backup.Seq <= st.Backup.Seq || w.a.bk.has(w.uid) {
		return nil
	}
	j := &backupJob{uid: w.uid, seq: s.Backup.Seq, typ: s.Backup.Type, srv: p.srv, kick: w.kickSoon}
	if s.Role == instance.RoleStandby {
		// The standby's region backs up from the standby, through its primary's server.
		var pst instance.Status
		if _, err := store.Get(ctx, w.a.st, instance.StatusKey(s.Peer.Region, s.Peer.UID), &pst); err != nil || pst.Backup == nil || pst.Backup.Served == nil {
			// The schedule asks only while the primary serves: it stopped since. The backup
			// did not fail; it is asked again once the primary serves.
			st.Backup.Seq, st.Backup.Running, st.Backup.Cancelled = s.Backup.Seq, 0, true
			st.Backup.Error = "not taken: the group's primary does not serve its standby's backups now"
			w.log.Warn("backup not taken: the group's primary does not serve it", "instance", s.Name, "seq", s.Backup.Seq)
			return nil
		}
		j.from = pst.Backup.Served
	}
	w.a.bk.submit(j)
	st.Backup.Running = s.Backup.Seq
	w.log.Info("backup queued", "instance", s.Name, "seq", s.Backup.Seq, "type", s.Backup.Type, "fromStandby", j.from != nil)
	return nil
}

// collectBackup puts the outcome of the instance's finished backup, if there is one, into b,
// and reports whether there was.
func (w *worker) collectBackup(s instance.Spec, b *instance.BackupStatus) bool {
	j, backup, verify := w.a.bk.collect(w.uid)
	if j == nil {
		if b.Running != 0 && !w.a.bk.has(w.uid) {
			// The job is gone without an outcome (the agent restarted): the backup row asks
			// again, and pgBackRest resumes what it copied.
			b.Running = 0
		}
		return false
	}
	if !backup && !verify {
		return false
	}
	if backup {
		b.Seq, b.Running, b.Error, b.Cancelled = j.seq, 0, "", false
		if j.err != nil {
			b.Error, b.Cancelled = j.err.Error(), errors.Is(j.err, errBackupCancelled)
			w.log.Error("backup failed", "instance", s.Name, "seq", j.seq, "err", j.err)
		} else {
			w.log.Info("backup done", "instance", s.Name, "seq", j.seq, "type", j.typ)
		}
	}
	if v := j.verify; verify {
		b.Verify = v
		if v.Error != "" {
			w.log.Error("the repository failed verification", "instance", s.Name, "seq", j.seq, "err", v.Error)
		} else {
			w.log.Info("repository verified", "instance", s.Name, "seq", j.seq)
		}
	}
	b.CheckedAt = time.Time{} // read the repository again
	return true
}

// kickSoon wakes the worker (a finished backup is published by its next pass).
func (w *worker) kickSoon() {
	defer func() { _ = recover() }() // the worker may have ended and closed kick
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// observeBackups refreshes the status's backups: a finished job's outcome, the repository's
// backups (after a backup, or every few minutes), and the archiver's state.
func (w *worker) observeBackups(ctx context.Context, k *conns, s instance.Spec, st *instance.Status) {
	if !w.a.backups(s) {
		if w.a.cfg.Backup.Off && s.Backup != nil {
			st.Backup = &instance.BackupStatus{Health: instance.BackupDegraded, Error: w.a.cfg.Backup.OffReason}
		} else {
			st.Backup = nil
		}
		return
	}
	if st.Backup == nil {
		st.Backup = &instance.BackupStatus{}
	}
	b := st.Backup
	w.collectBackup(s, b)
	if r, ok := k.c.(repositoryServer); ok {
		repo, err := r.BackupRepository(ctx)
		if err != nil {
			w.log.Warn("renew the credentials of the backup repository", "instance", s.Name, "err", err)
		}
		b.Repository = repo
	}
	if time.Since(b.CheckedAt) > 5*time.Minute && b.Stanza != "" {
		if list, err := k.c.Backups(ctx); err == nil {
			b.Backups, b.CheckedAt = list, time.Now().UTC()
		} else {
			w.log.Warn("read the backup repository", "instance", s.Name, "err", err)
		}
	}
	if a, err := k.mon.Archiver(ctx); err == nil {
		b.Archive.LastArchivedWAL, b.Archive.LastArchivedAt = a.LastArchivedWAL, a.LastArchivedAt
		b.Archive.LastFailedWAL, b.Archive.LastFailedAt = a.LastFailedWAL, a.LastFailedAt
	}
	if time.Since(w.dropsCheckedAt) > 30*time.Second || b.Archive.LastFailedAt.After(b.Archive.LastArchivedAt) {
		w.dropsCheckedAt = time.Now()
		if at, seg, err := k.c.LastArchiveDrop(); err == nil && !at.IsZero() {
			b.Archive.DroppedAt, b.Archive.DroppedWAL = at, seg
		}
	}
	b.Archive.Error = ""
	// The gap stays open until a backup ends after it: from that backup on, every point in
	// time is restorable again.
	b.Archive.Gap = !b.Archive.DroppedAt.IsZero() && (len(b.Backups) == 0 || b.Backups[len(b.Backups)-1].Stop.Before(b.Archive.DroppedAt))
	switch {
	case b.Archive.Gap:
		b.Archive.Error = fmt.Sprintf("WAL from segment %s on was dropped at %s: the repository could not take it and the archive queue was full; times between then and the next backup cannot be restored, and a backup is taken as soon as the repository answers",
			b.Archive.DroppedWAL, b.Archive.DroppedAt.Format(time.RFC3339))
	case b.Archive.LastFailedAt.After(b.Archive.LastArchivedAt):
		b.Archive.Error = "archiving WAL segment " + b.Archive.LastFailedWAL + " to the repository failed (pgBackRest's log is in the instance's pgbackrest/log)"
	}
	b.Health = instance.BackupHealthy
	if b.Error != "" || b.Archive.Error != "" || b.Stanza == "" || b.Verify != nil && b.Verify.Error != "" {
		b.Health = instance.BackupDegraded
	}
}

// backupConfig is instance s's pgBackRest configuration in this region's repository.
func (a *Agent) backupConfig(c *postgres.Cluster, b instance.BackupSpec) pgbackrest.Config {
	p := c.BackupPaths(a.cfg.Backup.Dir, b.Stanza)
	return pgbackrest.Config{
		Stanza: b.Stanza,
		// pgBackRest never expires a full backup on its own: after each backup the agent
		// expires what neither the short-term window (RetentionDays) nor long-term retention
		// keeps (ExpireBackups), which pgBackRest's time-based retention cannot express.
		Repos: []pgbackrest.Repo{{Path: p.Repo, Retention: pgbackrest.Retention{FullCount: ltr.MaxKeep}}},
		PG: pgbackrest.PG{Path: c.DataDir(), SocketPath: c.SocketDir, Port: c.Port,
			User: postgres.BackupUser, Database: postgres.SystemDB},
		ArchiveAsync: true, SpoolPath: p.Spool, LockPath: p.Lock, LogPath: p.Log,
		ArchivePushQueueMax: a.cfg.Backup.QueueMax, ProcessMax: 1, CompressType: "zst", StartFast: true,
		ArchiveTimeout: 60,
		// Every member archives with archive_mode=always whatever its role (a promotion must
		// not need a restart), which pgBackRest's archive check refuses; Backup waits for the
		// backup's WAL itself.
		NoArchiveCheck: true,
	}
}

// driver runs pgBackRest for instance c's stanza, as its OS user.
func (a *Agent) driver(c *postgres.Cluster, stanza string) (*pgbackrest.Driver, error) {
	d := &pgbackrest.Driver{Bin: a.cfg.Backup.Bin, Config: c.BackupPaths(a.cfg.Backup.Dir, stanza).Config, Stanza: stanza, Timeout: a.cfg.Backup.Timeout}
	if os.Geteuid() == 0 && c.R.Isolates() {
		u, err := pgbackrest.LookupUser(c.R.Username)
		if err != nil {
			return nil, err
		}
		d.User = u
	}
	return d, nil
}

// ConfigureBackup writes the instance's pgBackRest configuration and returns the
// archive_command that pushes its WAL into the region's repository.
func (p *pgServer) ConfigureBackup(b instance.BackupSpec) (string, error) {
	cfg, err := p.repoConfig(context.Background(), p.Cluster, b)
	if errors.Is(err, errObjectStore) {
		return p.configureWithoutStore(b, err)
	}
	if err != nil {
		return "", err
	}
	text, err := cfg.Render()
	if err != nil {
		return "", err
	}
	paths, err := p.Cluster.PrepareBackup(p.a.repoRoot(), b.Stanza, text)
	if paths.SetAside != "" {
		p.a.log.Warn("another instance's OS user owned the instance's stanza in the region's repository; it was set aside",
			"stanza", b.Stanza, "aside", paths.SetAside)
	}
	if err != nil {
		return "", err
	}
	d, err := p.a.driver(p.Cluster, b.Stanza)
	if err != nil {
		return "", err
	}
	return d.ArchivePushCommand(), nil
}

func (p *pgServer) backupDriver() (*pgbackrest.Driver, error) {
	if p.backup == nil {
		return nil, errors.New("the instance has no backups")
	}
	return p.a.driver(p.Cluster, p.backup.Stanza)
}

// StanzaCreate creates the stanza from the data directory's pg_control (no connection: a
// standby's member creates it in its own region), or finds it there already. A stanza of
// that name that holds another system's history (a group of the same two instances, deleted
// and created again, seeds the secondary afresh) is set aside, not deleted, and a new one
// created; the name set aside is returned.
func (p *pgServer) StanzaCreate(ctx context.Context) (string, error) {
	d, err := p.backupDriver()
	if err != nil {
		return "", err
	}
	err = d.StanzaCreateOffline(ctx)
	if !pgbackrest.IsCode(err, pgbackrest.CodeFileInvalid) {
		return "", err
	}
	var aside string
	var serr error
	if p.a.az != nil {
		// A container cannot be renamed: it is marked set aside, and the instance gets a
		// new one.
		aside, serr = p.a.az.setAside(ctx, p.uid, p.backup.Stanza, time.Now())
	} else {
		aside, serr = p.Cluster.SetStanzaAside(p.a.cfg.Backup.Dir, p.backup.Stanza, time.Now())
	}
	if serr != nil {
		return "", fmt.Errorf("%w; %v", err, serr)
	}
	if _, err := p.ConfigureBackup(*p.backup); err != nil {
		return aside, err
	}
	return aside, d.StanzaCreateOffline(ctx)
}

// Backup takes a backup of typ for sequence number seq, unless the repository holds one of
// that number already (the agent died after pgBackRest finished it), and returns once the
// backup's last WAL segment is in the repository: only then can it be restored.
func (p *pgServer) Backup(ctx context.Context, typ string, seq int64, from *instance.BackupServed) error {
	d, err := p.backupDriver()
	if from != nil {
		d, err = p.standbyDriver(ctx, *from)
	}
	if err != nil {
		return err
	}
	if err := p.checkDatabaseNames(ctx); err != nil {
		return err
	}
	tag := strconv.FormatInt(seq, 10)
	label := ""
	lockDeadline := time.Now().Add(backupLockWait)
	for label == "" {
		info, err := p.info(ctx, d, "")
		if err != nil {
			return err
		}
		for _, b := range info.Backup {
			if b.Annotation[seqAnnotation] == tag {
				label = b.Label
			}
		}
		if label != "" {
			break
		}
		label, err = d.Backup(ctx, pgbackrest.BackupType(typ), pgbackrest.BackupOptions{Annotations: map[string]string{seqAnnotation: tag}})
		var pe *pgbackrest.Error
		if err == nil {
			break
		}
		if !errors.As(err, &pe) || pe.Code != pgbackrest.CodeLockAcquire || time.Now().After(lockDeadline) {
			return err
		}
		// The backup of an agent that died before this one holds the stanza's lock until it
		// has stopped (it is sent SIGTERM when its agent dies): wait for it, then look again,
		// since it may have finished this very backup.
		p.a.log.Info("the stanza's lock is held, by a backup of an agent that stopped; waiting for it to end", "instance", p.uid, "seq", seq)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
	info, err := p.info(ctx, d, label)
	if err != nil {
		return err
	}
	b, ok := info.Find(label)
	if !ok {
		return fmt.Errorf("backup %s is not in the repository", label)
	}
	wctx, cancel := context.WithTimeout(ctx, p.a.cfg.Backup.WaitArchived)
	defer cancel()
	if err := d.WaitArchived(wctx, b.Archive.Stop, 200*time.Millisecond); err != nil {
		return err
	}
	// Expiry follows each backup, as pgBackRest's own did. A failure leaves more in the
	// repository than needed, never less, and the next backup expires again.
	now := time.Now()
	if p.a.cfg.Backup.Now != nil {
		now = p.a.cfg.Backup.Now()
	}
	if sets, err := p.ExpireBackups(ctx, p.keep, now); err != nil {
		p.a.log.Warn("expire backups", "instance", p.uid, "err", err)
	} else if len(sets) > 0 {
		p.a.log.Info("backups expired", "instance", p.uid, "sets", sets)
	}
	return nil
}

// ExpireBackups expires, at now, the stanza's backups in the region's repository that
// neither the short-term window (the spec's RetentionDays, as pgBackRest's time-based
// retention keeps it) nor long-term retention (keep: full backups by label, until a time)
// needs, and trims the WAL archive so that the LTR backups older than the window keep only
// the WAL that makes them consistent (ltr.Expire). It returns the sets expired.
func (p *pgServer) ExpireBackups(ctx context.Context, keep []ltr.Keep, now time.Time) ([]string, error) {
	d, err := p.backupDriver()
	if err != nil {
		return nil, err
	}
	info, err := p.info(ctx, d, "")
	if err != nil {
		return nil, err
	}
	var bs []ltr.Backup
	for _, b := range info.Backup {
		if b.Failed() {
			continue
		}
		bs = append(bs, ltr.Backup{Label: b.Label, Full: b.Type == pgbackrest.BackupType(instance.BackupFull), Prior: b.Prior, Stop: b.Stop()})
	}
	plan := ltr.Expire(bs, max(p.backup.RetentionDays, 1), keep, now)
	ctx, cancel := context.WithTimeout(ctx, p.a.cfg.Backup.Timeout)
	defer cancel()
	var done []string
	for _, set := range plan.Sets {
		if err := d.ExpireWith(ctx, pgbackrest.ExpireOptions{Set: set, ArchiveFulls: plan.ArchiveFulls}); err != nil {
			return done, fmt.Errorf("expire backup %s: %w", set, err)
		}
		done = append(done, set)
	}
	if len(plan.Sets) == 0 {
		// Nothing to expire, but the window moves: WAL that only backups now outside it
		// needed goes.
		if err := d.ExpireWith(ctx, pgbackrest.ExpireOptions{ArchiveFulls: plan.ArchiveFulls}); err != nil {
			return nil, fmt.Errorf("expire WAL: %w", err)
		}
	}
	return done, nil
}

// VerifyBackups runs pgBackRest's verify over the stanza in the region's repository, within
// the backup timeout.
func (p *pgServer) VerifyBackups(ctx context.Context) error {
	d, err := p.backupDriver()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, p.a.cfg.Backup.Timeout)
	defer cancel()
	_, err = d.Verify(ctx)
	return err
}

// backupLockWait is how long a backup waits for the stanza's lock that another backup holds.
const backupLockWait = 2 * time.Minute

// seqAnnotation carries a backup's sequence number (instance.BackupSpec.Seq).
const seqAnnotation = "fog-seq"

// Backups lists the stanza's backups in the region's repository, oldest first.
func (p *pgServer) Backups(ctx context.Context) ([]instance.Backup, error) {
	d, err := p.backupDriver()
	if err != nil {
		return nil, err
	}
	info, err := p.info(ctx, d, "")
	if err != nil {
		return nil, err
	}
	return toBackups(info), nil
}

// info reads the repository, in at most two minutes: pgBackRest runs as the instance's OS
// user over files it owns, which must not hold the agent's one backup slot for long.
func (p *pgServer) info(ctx context.Context, d *pgbackrest.Driver, set string) (*pgbackrest.Info, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return d.Info(ctx, set)
}

// checkDatabaseNames refuses to back up an instance with a database whose name holds a
// control character: pgBackRest writes the names into its manifest unquoted, and such a
// backup reports success but can never be restored (fog_guard refuses such names; an
// instance made before it could have one).
func (p *pgServer) checkDatabaseNames(ctx context.Context) error {
	conn, err := p.Cluster.ConnectReader(ctx, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var bad []string
	rows, err := conn.Query(ctx, "SELECT datname::pg_catalog.text FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.~) '[[:cntrl:]]'")
	if err != nil {
		return err
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return err
		}
		bad = append(bad, strconv.Quote(n))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("database %s has a control character in its name, which pgBackRest cannot back up restorably; rename it (ALTER DATABASE ... RENAME TO)", strings.Join(bad, ", "))
	}
	return nil
}

func toBackups(info *pgbackrest.Info) []instance.Backup {
	out := make([]instance.Backup, 0, len(info.Backup))
	for _, b := range info.Backup {
		if b.Failed() {
			continue
		}
		seq, _ := strconv.ParseInt(b.Annotation[seqAnnotation], 10, 64)
		out = append(out, instance.Backup{Label: b.Label, Type: string(b.Type), Start: b.Start(), Stop: b.Stop(),
			Size: b.Info.Size, RepoSize: b.Info.Repository.Delta, WALStart: b.Archive.Start, WALStop: b.Archive.Stop, Seq: seq})
	}
	slices.SortFunc(out, func(a, b instance.Backup) int { return a.Stop.Compare(b.Stop) })
	return out
}

func (s *pgSession) EnsureBackupRole(ctx context.Context) error {
	return s.c.EnsureBackupRole(ctx, s.conn)
}

func (s *pgSession) Archiver(ctx context.Context) (postgres.Archiver, error) {
	return postgres.ArchiverState(ctx, s.conn)
}

func (p *pgServer) DisownBackups() error {
	if p.a.cfg.Backup.Dir == "" {
		return nil
	}
	return p.Cluster.DisownBackups(p.a.cfg.Backup.Dir)
}

func (p *pgServer) LastArchiveDrop() (time.Time, string, error) {
	if p.backup == nil {
		return time.Time{}, "", nil
	}
	return p.Cluster.LastArchiveDrop(p.backup.Stanza)
}
