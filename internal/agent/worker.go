package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/failpoint"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/store"
)

// worker reconciles one instance; all of its PostgreSQL actions are serialised here.
type worker struct {
	a    *Agent
	uid  string
	kick chan struct{}
	log  *slog.Logger
	last instance.Status
	// views remembers, per database, the link the view was last written with.
	views map[string]string
	// viewsRefused: databases whose schema fog is not Fog's, and when that was last seen.
	viewsRefused map[string]time.Time
	// observedAt is when the last observation of the server began.
	observedAt time.Time
	// backoff is the delay before looking again at a state in transition.
	backoff time.Duration
	// configured: this worker has written the configuration of a running primary once, and
	// adminEnsured: the admin roles once, so that what a newer Fog changes there (the admin's
	// attributes, the guard library, pg_hba.conf) reaches instances that ran before it.
	configured, adminEnsured bool
	// hbaPeer is the partner pg_hba.conf was last written to admit.
	hbaPeer *postgres.Peer
	// dropsCheckedAt is when pgBackRest's log was last read for WAL its queue dropped.
	dropsCheckedAt time.Time
	// drops is what the worker knows of the instance's dropped databases (dropped.go).
	drops *dropState
}

func (w *worker) run(ctx context.Context) {
	var soon <-chan time.Time
	observe := time.NewTicker(w.a.cfg.Observe)
	defer observe.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-w.kick:
			if !ok {
				return
			}
		case <-soon:
		case <-observe.C:
			failpoint.Hit(failpoint.AgentStall(w.a.cfg.Region))
			// Only a fresh look at a running server: nothing is started or changed here.
			var s instance.Spec
			if _, err := store.Get(ctx, w.a.st, instance.SpecKey(w.a.cfg.Region, w.uid), &s); err == nil && !s.Deleted && !s.Paused {
				if st, ok := w.status(ctx); ok && st.Phase == instance.PhaseReady && st.ObservedGeneration == s.Generation {
					_ = w.refreshStatus(ctx, s)
				}
			}
			continue
		}
		soon = nil
		failpoint.Hit(failpoint.AgentStall(w.a.cfg.Region))
		var s instance.Spec
		if _, err := store.Get(ctx, w.a.st, instance.SpecKey(w.a.cfg.Region, w.uid), &s); err != nil {
			continue
		}
		st := w.reconcile(ctx, s)
		w.publish(ctx, st)
		w.runCommands(ctx, s)
		// A state on its way somewhere is looked at again soon rather than at the next
		// resync: a standby whose receiver has not connected yet, an instance that failed
		// to start.
		transitional := !s.Deleted && !s.Paused && (st.Phase == instance.PhaseStopped ||
			st.Phase == instance.PhaseReady && st.Role == instance.RoleStandby &&
				(st.Replication == nil || st.Replication.ReceiverStatus != "streaming"))
		if transitional {
			w.backoff = min(max(2*w.backoff, 20*time.Millisecond), 5*time.Second)
			soon = time.After(w.backoff)
		} else {
			w.backoff = 0
		}
	}
}

func (w *worker) status(ctx context.Context) (instance.Status, bool) {
	var st instance.Status
	_, err := store.Get(ctx, w.a.st, instance.StatusKey(w.a.cfg.Region, w.uid), &st)
	return st, err == nil
}

// publish writes st if it differs from what was last written, or to refresh the heartbeat.
func (w *worker) publish(ctx context.Context, st instance.Status) {
	st.UID = w.uid
	st.LeaseIncarnation = w.a.keeper.Incarnation()
	st.Heartbeat = w.last.Heartbeat
	if reflect.DeepEqual(w.last, st) && time.Since(w.last.Heartbeat) < 10*time.Second {
		return
	}
	st.Heartbeat = time.Now().UTC()
	if err := store.Put(ctx, w.a.st, instance.StatusKey(w.a.cfg.Region, w.uid), st); err != nil {
		if ctx.Err() == nil {
			w.log.Error("publish status", "err", err)
		}
		return
	}
	w.last = st
}

func (w *worker) configure(c Server, s instance.Spec, standby *postgres.Upstream) error {
	return w.configureWith(c, s, standby, nil)
}

// configureWith is configure with a standby's recovery from an archive (a seed from the
// region's repository replays its archive).
func (w *worker) configureWith(c Server, s instance.Spec, standby *postgres.Upstream, rec *postgres.Recovery) error {
	ips := []net.IP{}
	for _, h := range append([]string{s.Host}, s.ExtraIPs...) {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		}
	}
	crt, key, err := w.a.ca.Issue(append([]string{s.Name}, s.DNSNames...), ips)
	if err != nil {
		return err
	}
	var archive *postgres.Archive
	if w.a.backups(s) {
		command, err := c.ConfigureBackup(*s.Backup)
		if err != nil {
			return fmt.Errorf("configure backups: %w", err)
		}
		// Always, whatever the role: a promotion must not need a restart, and a standby
		// keeps its own region's repository complete with the WAL it receives.
		archive = &postgres.Archive{Command: command, Always: true, Timeout: w.a.cfg.Backup.ArchiveTimeout}
	}
	w.hbaPeer = c.Peer()
	return c.WriteConfig(postgres.Config{
		Name: s.Name, Timezone: s.Timezone, CertPEM: crt, KeyPEM: key, FogUser: w.a.cfg.FogUser,
		CACertPEM: w.a.cfg.CACertPEM, Standby: standby, MaxSlotWALKeepSize: w.a.cfg.MaxSlotWALKeepSize,
		GuardLibrary: w.a.cfg.GuardLibrary, Archive: archive, Recovery: rec,
	})
}

// archiveMode is the archive_mode instance s runs with.
func (w *worker) archiveMode(s instance.Spec) string {
	if w.a.backups(s) {
		return "always"
	}
	return "off"
}

// ErrNoLease means the agent does not hold the lease a primary needs.
var ErrNoLease = errors.New("agent: no lease for this primary")

// gated runs fn, which makes the instance writable (a start or a promotion), only while the
// agent holds the lease for it as primary of the spec's epoch: the store must say, now, that
// it is the primary of the current epoch (CloudNativePG's instance manager likewise refuses
// to start a primary the cluster no longer names). A standalone instance needs no lease.
func (w *worker) gated(ctx context.Context, s instance.Spec, fn func(context.Context) error) error {
	if s.Role != instance.RolePrimary || s.Epoch == 0 {
		return fn(ctx)
	}
	l := w.a.instLock(s.UID)
	l.Lock()
	defer l.Unlock()
	if !w.a.keeper.Acquire(ctx, s.UID, s.Epoch) {
		return fmt.Errorf("%w: %s is not the primary of epoch %d in the store, or the store cannot be reached; it stays down", ErrNoLease, s.Name, s.Epoch)
	}
	return fn(ctx)
}

// promote promotes the standby conn is connected to, once it has the WAL the spec names.
func (w *worker) promote(ctx context.Context, conn Session, s instance.Spec, st *instance.Status) error {
	if s.PromoteAfterLSN != "" {
		want, err := pgtypes.ParseLSN(s.PromoteAfterLSN)
		if err != nil {
			return err
		}
		if err := waitReceived(ctx, conn, want, 15*time.Second); err != nil {
			return err
		}
	}
	start := time.Now()
	failpoint.Hit(failpoint.AgentPromote)
	if err := w.gated(ctx, s, conn.Promote); err != nil {
		return err
	}
	w.log.Info("promoted", "instance", s.Name, "epoch", s.Epoch, "took", time.Since(start).Round(time.Microsecond))
	// The switch point of the new timeline is where the histories diverge.
	if history, err := conn.TimelineHistory(ctx); err == nil {
		st.PromotedFrom = lastSwitchPoint(history)
	} else {
		w.log.Warn("read timeline history", "err", err)
	}
	st.Role, st.Epoch = instance.RolePrimary, s.Epoch
	w.publish(ctx, *st)
	// pg_rewind of the old primary needs a checkpoint on the new timeline first, or the
	// rewound server fails with "requested timeline ... does not contain minimum recovery point".
	return conn.Checkpoint(ctx)
}

// waitReceived polls until the standby has received WAL past lsn.
func waitReceived(ctx context.Context, conn Session, lsn pgtypes.LSN, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		got, err := conn.ReceivedLSN(ctx)
		if err != nil {
			return err
		}
		if l, err := pgtypes.ParseLSN(got); err == nil && l >= lsn {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: the standby received WAL up to %s, not up to the drained primary's end of WAL %s", ErrNotCaughtUp, got, lsn)
		case <-tick.C:
		}
	}
}

// ErrNotCaughtUp means a standby did not receive the WAL a planned failover needs.
var ErrNotCaughtUp = errors.New("agent: standby not caught up")

// reasonOf is the instance.Status reason for err: what the control plane waits on.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, ErrNotCaughtUp):
		return instance.ReasonNotCaughtUp
	case errors.Is(err, ErrNoLease):
		return instance.ReasonNoLease
	case errors.Is(err, ErrStaleEpoch):
		return instance.ReasonStaleEpoch
	}
	return ""
}

func lastSwitchPoint(history string) string {
	var last string
	for _, line := range strings.Split(history, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && !strings.HasPrefix(f[0], "#") {
			last = f[1]
		}
	}
	return last
}

// waitStreaming gives a standby that just started a moment to connect to its upstream, so
// that the status published next says it streams (the controller waits for that) instead of
// leaving it to the next observation, a second later.
func (w *worker) waitStreaming(ctx context.Context, c Server) {
	conn, err := c.ConnectSystem(ctx)
	if err != nil {
		return
	}
	defer conn.Close()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		status, err := conn.ReceiverStatus(ctx)
		if err != nil || status == "streaming" {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// needsRestart: the server runs with other shared_preload_libraries or archive_mode than its
// configuration names (an instance started by an older Fog, or backups turned on), which
// only a restart changes.
func (w *worker) needsRestart(ctx context.Context, c Server, s instance.Spec) (bool, error) {
	conn, err := c.ConnectSystem(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	return conn.NeedsRestart(ctx, postgres.PreloadLibraries(w.a.cfg.GuardLibrary), w.archiveMode(s))
}

// rewind makes a former primary's data a history of the new primary's timeline: crash
// recovery if it was not shut down cleanly, note where its WAL ends, keep its WAL aside, and
// pg_rewind. The WAL between the new timeline's switch point and that end is what the
// forced failover lost.
func (w *worker) rewind(ctx context.Context, c Server, s instance.Spec, up *postgres.Upstream, st *instance.Status) error {
	_, state, err := c.LatestCheckpoint(ctx)
	if err != nil {
		return err
	}
	if state != "shut down" && state != "shut down in recovery" {
		w.log.Info("crash recovery before rewind", "instance", s.Name, "state", state)
		if err := c.CrashRecover(ctx); err != nil {
			return err
		}
	}
	end, _, err := c.LatestCheckpoint(ctx)
	if err != nil {
		return err
	}
	var upStatus instance.Status
	if _, err := store.Get(ctx, w.a.st, instance.StatusKey(s.Upstream.Region, s.Upstream.UID), &upStatus); err != nil {
		return fmt.Errorf("read upstream status: %w", err)
	}
	lost := &instance.LostWAL{Epoch: s.Epoch, FromLSN: upStatus.PromotedFrom, ToLSN: end}
	from, ferr := pgtypes.ParseLSN(upStatus.PromotedFrom)
	to, terr := pgtypes.ParseLSN(end)
	if ferr == nil && terr == nil && to > from {
		lost.Bytes = int64(to - from)
	}
	if lost.Bytes > 0 && s.KeepLostWAL {
		lost.SavedIn = filepath.Join(c.Dir(), fmt.Sprintf("lost-wal-epoch-%d", s.Epoch))
		if err := c.CopyWAL(lost.SavedIn); err != nil {
			w.log.Warn("could not keep the lost WAL aside", "err", err)
			lost.SavedIn = ""
		}
	}
	w.decodeLost(ctx, c, s, lost)
	w.log.Info("rewinding former primary", "instance", s.Name, "lostFrom", lost.FromLSN, "lostTo", lost.ToLSN, "lostBytes", lost.Bytes, "lostTransactions", lost.Committed, "decoded", lost.Decoded)
	if out, err := c.Rewind(ctx, up); err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(out))
	}
	st.Rewound = lost
	w.publish(ctx, *st)
	return nil
}

// decodeLost reads the range a forced failover discards with pg_waldump, before pg_rewind
// overwrites it: which transactions committed there, when, and what they wrote. A range
// without a byte holds nothing. A failure leaves the report at bytes, with the reason logged.
func (w *worker) decodeLost(ctx context.Context, c Server, s instance.Spec, lost *instance.LostWAL) {
	if lost.Bytes <= 0 {
		lost.Decoded, lost.Resolved = true, true
		return
	}
	cd, err := c.ControlData(ctx)
	if err != nil {
		w.log.Warn("could not decode the lost WAL", "instance", s.Name, "err", err)
		return
	}
	tli, err := strconv.Atoi(cd["Latest checkpoint's TimeLineID"])
	if err != nil {
		w.log.Warn("could not decode the lost WAL: no timeline in pg_controldata", "instance", s.Name)
		return
	}
	lt, err := c.DecodeLostWAL(ctx, tli, lost.FromLSN, lost.ToLSN)
	if err != nil {
		w.log.Warn("could not decode the lost WAL", "instance", s.Name, "err", err)
		return
	}
	lost.Decoded, lost.Committed, lost.Aborted = true, len(lt.Committed), lt.Aborted
	lost.Resolved = len(lt.Committed) == 0
	for i, t := range lt.Committed {
		if i == instance.MaxLostListed {
			break
		}
		lost.Transactions = append(lost.Transactions, instance.LostTransaction{XID: t.XID, CommitTime: t.CommitTime, Relations: t.Relations})
	}
}

// resolveLost names the relations the lost transactions wrote, from the rewound instance's
// catalogs, once it runs again.
func (w *worker) resolveLost(ctx context.Context, c Server, st *instance.Status) {
	r := st.Rewound
	var keys []string
	for _, t := range r.Transactions {
		keys = append(keys, t.Relations...)
	}
	names := c.ResolveRelations(ctx, keys)
	for i := range r.Transactions {
		for j, k := range r.Transactions[i].Relations {
			if n, ok := names[k]; ok {
				r.Transactions[i].Relations[j] = n
			}
		}
		slices.Sort(r.Transactions[i].Relations)
		r.Transactions[i].Relations = slices.Compact(r.Transactions[i].Relations)
	}
	r.Resolved = true
}

// conns are the connections one observation uses: the monitoring role's for what only
// reads, and the system role's, opened only when something must be written (DESIGN.md's
// tenant boundary: what only reads runs with the least rights that can read it).
type conns struct {
	c        Server
	mon, sys Session
}

// openConns connects as the monitoring role, or as the system role where that role does not
// exist yet (a new instance before its first observation, one an older Fog made).
func openConns(ctx context.Context, c Server) (*conns, error) {
	mon, err := c.ConnectReader(ctx)
	if err != nil {
		return nil, err
	}
	k := &conns{c: c, mon: mon}
	if mon.User() == postgres.SystemUser {
		k.sys = mon
	}
	return k, nil
}

// system returns the system role's connection, opening it on first use.
func (k *conns) system(ctx context.Context) (Session, error) {
	if k.sys == nil {
		sys, err := k.c.ConnectSystem(ctx)
		if err != nil {
			return nil, err
		}
		k.sys = sys
	}
	return k.sys, nil
}

func (k *conns) close() {
	if k.sys != nil && k.sys != k.mon {
		k.sys.Close()
	}
	k.mon.Close()
}

// observe refreshes what the status reports: role, replication, databases; and on a primary
// makes sure the admin, Fog's roles and the slots exist.
func (w *worker) observe(ctx context.Context, k *conns, s instance.Spec, st *instance.Status) error {
	rep, err := k.mon.ReplicationState(ctx)
	if err != nil {
		return err
	}
	if !rep.InRecovery {
		if st.ObservedGeneration != s.Generation || st.Phase != instance.PhaseReady || st.Role != instance.RolePrimary || !w.adminEnsured {
			conn, err := k.system(ctx)
			if err != nil {
				return err
			}
			guarded, err := conn.GuardLoaded(ctx)
			if err != nil {
				return err
			}
			if err := conn.EnsureAdmin(ctx, s.AdminLogin, s.AdminVerifier, guarded); err != nil {
				return err
			}
			w.adminEnsured = true
			if err := conn.EnsureReplicationRole(ctx); err != nil {
				return err
			}
			if err := conn.EnsureMonitorRole(ctx); err != nil {
				return err
			}
			if err := conn.EnsureSystemDB(ctx); err != nil {
				return err
			}
			if w.a.backups(s) {
				if err := conn.EnsureBackupRole(ctx); err != nil {
					return err
				}
			}
			st.ServerVersion, _ = conn.ServerVersion(ctx)
		}
		changed, err := w.syncSlots(ctx, k, s, rep.Slots)
		if err != nil {
			return err
		}
		if changed {
			if rep, err = k.mon.ReplicationState(ctx); err != nil {
				return err
			}
		}
		st.Role = instance.RolePrimary
	} else {
		st.Role = instance.RoleStandby
	}
	st.Replication = &rep
	st.Egress = egress(s)
	if err := w.refreshHBA(ctx, s); err != nil {
		return err
	}
	// The WAL positions around the listing bound where a database missing from it was
	// dropped (observeDrops).
	var before, after postgres.WALPosition
	var walErr error
	findDrops := !rep.InRecovery && w.a.backups(s)
	if findDrops {
		before, walErr = k.mon.CurrentWAL(ctx)
	}
	dbs, err := k.mon.ListDatabases(ctx)
	if err != nil {
		return err
	}
	st.Databases = toDBs(dbs)
	if findDrops && walErr == nil {
		if after, walErr = k.mon.CurrentWAL(ctx); walErr == nil {
			w.observeDrops(ctx, s, dbs, before, after, st)
		}
	}
	if walErr != nil {
		w.log.Warn("read the WAL position", "instance", s.Name, "err", walErr)
	}
	if st.Dropped == nil && w.drops != nil && !rep.InRecovery {
		st.Dropped = slices.Clone(w.drops.Dropped)
	}
	if !rep.InRecovery {
		w.ensureLinkViews(ctx, s, dbs)
	}
	w.observeBackups(ctx, k, s, st)
	return nil
}

// refusedRetry is how long a database whose schema fog is not Fog's is left alone.
const refusedRetry = time.Minute

// ensureLinkViews keeps the link-status view and its row current in every database,
// template1 included so that new databases have it. It connects to a database only when the
// link changed or the database is new to this worker.
func (w *worker) ensureLinkViews(ctx context.Context, s instance.Spec, dbs []postgres.Database) {
	var row *postgres.LinkRow
	want := ""
	if l := s.Link; l != nil {
		allow := 2
		if l.SecondaryType == "Standby" {
			allow = 0
		}
		row = &postgres.LinkRow{ID: l.ID, Name: l.Name, PrimaryServer: l.PrimaryName, SecondaryServer: l.SecondaryName, AllowConnections: allow}
		want = fmt.Sprintf("%+v", *row)
	}
	if w.views == nil {
		w.views = map[string]string{}
	}
	names := []string{"template1", "postgres"}
	for _, d := range dbs {
		names = append(names, d.Name)
	}
	c := w.a.server(s)
	for _, db := range names {
		if done, ok := w.views[db]; ok && done == want {
			continue
		}
		if at, ok := w.viewsRefused[db]; ok && time.Since(at) < refusedRetry {
			continue
		}
		conn, err := c.Connect(ctx, db)
		if err != nil {
			continue
		}
		err = conn.EnsureLinkView(ctx, row)
		conn.Close()
		if errors.Is(err, postgres.ErrForeignObject) {
			// A tenant's schema fog: Fog will not act on it as a superuser. Said loudly, and
			// looked at again now and then, in case its owner renames it.
			if w.viewsRefused == nil {
				w.viewsRefused = map[string]time.Time{}
			}
			w.viewsRefused[db] = time.Now()
			w.log.Error("refusing to install the link-status view", "instance", s.Name, "database", db, "err", err)
			continue
		}
		if err != nil {
			w.log.Warn("link status view", "database", db, "err", err)
			continue
		}
		delete(w.viewsRefused, db)
		w.views[db] = want
	}
}

// syncSlots creates the slots the spec lists that the server lacks and drops Fog's slots it
// no longer lists, as the system role, which it connects as only when there is such a slot.
// It reports whether it changed anything.
func (w *worker) syncSlots(ctx context.Context, k *conns, s instance.Spec, have []pgtypes.Slot) (bool, error) {
	var create, drop []string
	for _, name := range s.Slots {
		if !slices.ContainsFunc(have, func(sl pgtypes.Slot) bool { return sl.Name == name }) {
			create = append(create, name)
		}
	}
	for _, sl := range have {
		if strings.HasPrefix(sl.Name, "fog_") && !slices.Contains(s.Slots, sl.Name) && !sl.Active {
			drop = append(drop, sl.Name)
		}
	}
	if len(create) == 0 && len(drop) == 0 {
		return false, nil
	}
	conn, err := k.system(ctx)
	if err != nil {
		return false, err
	}
	for _, name := range create {
		if err := conn.EnsureSlot(ctx, name); err != nil {
			return false, err
		}
	}
	for _, name := range drop {
		if err := conn.DropSlot(ctx, name); err != nil {
			return false, err
		}
	}
	return true, nil
}

// toDBs is the databases a status lists: a database under restore (TempName) is none yet.
func toDBs(dbs []postgres.Database) []instance.DB {
	out := make([]instance.DB, 0, len(dbs))
	for _, d := range dbs {
		if isTempName(d.Name) {
			continue
		}
		out = append(out, instance.DB{Name: d.Name, Collation: d.Collation, Created: d.Created.UTC()})
	}
	return out
}

// runCommands carries out the instance's pending commands. Refresh requests are answered
// together: one fresh look at the server serves every refresh asked for before it began.
func (w *worker) runCommands(ctx context.Context, s instance.Spec) {
	cmds := w.a.commandsFor(ctx, w.uid)
	if len(cmds) == 0 {
		return
	}
	// A restore runs beside the worker; the worker ends its command once it is Restored.
	cmds = slices.DeleteFunc(cmds, func(c instance.Command) bool {
		return c.Kind == instance.CmdRestoreDatabase && !c.Restored && w.submitRestore(s, c)
	})
	if len(cmds) == 0 {
		return
	}
	observe := false
	for i := range cmds {
		if cmds[i].Kind == instance.CmdRefresh {
			observe = observe || cmds[i].Created.After(w.observedAt)
			continue
		}
		if err := w.execute(ctx, s, cmds[i]); err != nil {
			cmds[i].Error = err.Error()
		}
		observe = true
	}
	if observe && !s.Deleted {
		if err := w.refreshStatus(ctx, s); err != nil {
			for i := range cmds {
				if cmds[i].Kind == instance.CmdRefresh {
					cmds[i].Error = err.Error()
				}
			}
		}
	}
	ops := make([]store.Op, 0, len(cmds))
	for _, cmd := range cmds {
		cmd.Done = true
		ops = append(ops, store.PutOp(instance.CommandKey(w.a.cfg.Region, cmd.ID), cmd))
	}
	if err := w.a.st.Txn(ctx, nil, ops); err != nil && ctx.Err() == nil {
		w.log.Error("complete commands", "err", err)
	}
}

// refreshStatus publishes a fresh observation of a running instance.
func (w *worker) refreshStatus(ctx context.Context, s instance.Spec) error {
	c := w.a.server(s)
	k, err := openConns(ctx, c)
	if err != nil {
		if _, running := c.PID(); !running {
			// Report the instance down now rather than at the next resync, which starts it.
			if st, ok := w.status(ctx); ok && st.Phase == instance.PhaseReady {
				st.Phase = instance.PhaseStopped
				w.publish(ctx, st)
			}
		}
		return fmt.Errorf("instance %s is not accepting connections: %w", s.Name, err)
	}
	defer k.close()
	st, _ := w.status(ctx)
	if st.Phase != instance.PhaseReady {
		return nil
	}
	w.observedAt = time.Now()
	if err := w.observe(ctx, k, s, &st); err != nil {
		return err
	}
	w.publish(ctx, st)
	return nil
}

func (w *worker) execute(ctx context.Context, s instance.Spec, cmd instance.Command) error {
	if s.Deleted {
		return errors.New("the instance is being deleted")
	}
	switch cmd.Kind {
	case instance.CmdCheckReach:
		return pgtypes.Probe(ctx, cmd.Target, 5*time.Second)
	case instance.CmdRestoreDatabase:
		if cmd.Restored {
			return nil // done beside the worker: the observation below lists the database
		}
		// One submitRestore refused: it ends here with why.
		return w.a.checkRestore(s, cmd)
	}
	c := w.a.server(s)
	conn, err := c.ConnectSystem(ctx)
	if err != nil {
		return fmt.Errorf("instance %s is not accepting connections: %w", s.Name, err)
	}
	defer conn.Close()
	switch cmd.Kind {
	case instance.CmdCreateDatabase:
		return conn.CreateDatabase(ctx, cmd.Database, cmd.Owner)
	case instance.CmdDropDatabase:
		return conn.DropDatabase(ctx, cmd.Database)
	case instance.CmdCheckpoint:
		return conn.Checkpoint(ctx)
	}
	return fmt.Errorf("unknown command %q", cmd.Kind)
}

// checkReach opens a TCP connection to a PostgreSQL server and asks for TLS, the first thing
// a standby does; it proves the replication path from this agent's side.
