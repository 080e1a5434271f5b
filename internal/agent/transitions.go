package agent

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/failpoint"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/postgres"
)

// transition is one row of the agent's table: what it does to an instance when the desired
// state selects it. The package doc shows the table, rendered by transitionDoc.
type transition struct {
	name string
	// when says in words what match decides. match may look only at the spec, the status and
	// what earlier rows of this pass found; a row that must ask the server more checks it
	// first (state) and does nothing when the answer is no.
	when  string
	match func(p *pass) bool
	// epoch: the desired state's epoch is checked (checkEpoch) before the row runs.
	epoch bool
	// lease: what makes the server writable passes the lease gate (worker.gated).
	lease bool
	// state is what else the row checks before it acts.
	state     string
	does      string
	publishes string
	run       func(w *worker, ctx context.Context, p *pass) error
}

// transitions are tried in order on every reconcile; each row whose condition holds runs.
// A row that sets pass.done ends the pass with the status it left; an error ends it through
// worker.fail.
var transitions = []transition{
	{
		name:      "delete",
		when:      "the spec is deleted",
		match:     func(p *pass) bool { return p.s.Deleted },
		does:      "fast shutdown (immediate if that fails), remove the data, give root the instance's backups, remove its OS user",
		publishes: "Deleted (a Deleted status is left as it is)",
		run:       (*worker).delete,
	},
	{
		name:      "create",
		when:      "no data directory yet, and the spec is no standby (a standby is seeded)",
		match:     func(p *pass) bool { return !p.srv.Initialized() && p.s.Role != instance.RoleStandby },
		epoch:     true,
		does:      "initdb",
		publishes: "Creating before it begins; Failed (and nothing left behind) if it fails",
		run:       (*worker).create,
	},
	{
		name:      "stop",
		when:      "the spec is paused (a failover demoted the instance)",
		match:     func(p *pass) bool { return p.s.Paused },
		epoch:     true,
		state:     "the server runs",
		does:      "shut it down: fast, or immediate when StopImmediately",
		publishes: "Stopped in the spec's epoch (Error if the shutdown failed); ends the pass",
		run:       (*worker).fence,
	},
	{
		name:      "drain",
		when:      "the spec says Drain (a planned failover fences the old primary)",
		match:     func(p *pass) bool { return p.s.Drain },
		epoch:     true,
		state:     "the server runs (else Stopped)",
		does:      "refuse clients in pg_hba.conf, end their sessions, read the flushed end of WAL; the server keeps running so its WAL sender ships everything",
		publishes: "Drained, Role primary, DrainedLSN (the first one read) in the spec's epoch; ends the pass",
		run:       (*worker).drain,
	},
	{
		name:      "identity",
		when:      "the spec is a standby",
		match:     func(p *pass) bool { return p.s.Role == instance.RoleStandby },
		epoch:     true,
		does:      "the upstream's address and this instance's replication certificate (issued once, renewed a month before it expires)",
		publishes: "nothing",
		run:       (*worker).identity,
	},
	{
		name: "seed",
		when: "the spec is a standby with no data directory, or SeedGeneration is above SeededGeneration",
		match: func(p *pass) bool {
			return p.s.Role == instance.RoleStandby && (!p.srv.Initialized() || p.s.SeedGeneration > p.st.SeededGeneration)
		},
		epoch:     true,
		does:      "restore the newest backup of the region's repository (delta) and replay its archive, when it has one of the stanza that cannot lead off the primary's timeline, until it streams from the upstream (seed.go); else, or if that fails or stalls, pg_basebackup from the upstream; configure as its standby, start, wait (bounded) for streaming",
		publishes: "Creating, Role standby, SeedSource (SeedBackup, SeedFallback), SeedPercent while it copies; then SeededGeneration, SeededAt, Rewound cleared",
		run:       (*worker).seed,
	},
	{
		name:      "demote",
		when:      "the spec is a standby (not seeded in this pass)",
		match:     func(p *pass) bool { return p.s.Role == instance.RoleStandby && !p.seeded },
		epoch:     true,
		state:     "the server runs and pg_is_in_recovery() is false: a primary told to follow, not fenced through the protocol",
		does:      "fast shutdown, and rewind it below",
		publishes: "nothing",
		run:       (*worker).demote,
	},
	{
		name: "rewind",
		when: "the spec is a standby with Rewind (or demoted above), the server is down, and not rewound in the spec's epoch",
		match: func(p *pass) bool {
			return p.s.Role == instance.RoleStandby && !p.seeded && (p.s.Rewind || p.demoted) && !p.running &&
				(p.st.Rewound == nil || p.st.Rewound.Epoch != p.s.Epoch)
		},
		epoch:     true,
		does:      "crash recovery unless shut down cleanly; note the end of WAL; keep the lost WAL aside (KeepLostWAL) and decode it; pg_rewind against the upstream",
		publishes: "Rewound: the lost range, its bytes and transactions, in the spec's epoch",
		run:       (*worker).rewindRow,
	},
	{
		name:      "rejoin",
		when:      "the spec is a standby (not seeded in this pass)",
		match:     func(p *pass) bool { return p.s.Role == instance.RoleStandby && !p.seeded },
		epoch:     true,
		does:      "write the standby configuration; reload a running server (restart it if its libraries changed); start; wait (bounded) for streaming",
		publishes: "nothing itself (observe does)",
		run:       (*worker).rejoin,
	},
	{
		name:      "promote",
		when:      "the spec is a primary or standalone",
		match:     func(p *pass) bool { return p.s.Role != instance.RoleStandby },
		epoch:     true,
		lease:     true,
		state:     "the server is a standby (down with standby.signal: started as one first; up: pg_is_in_recovery()); it received WAL up to PromoteAfterLSN (15 s, else ErrNotCaughtUp)",
		does:      "pg_promote(), then a checkpoint on the new timeline (pg_rewind of the old primary needs it)",
		publishes: "Role primary, Epoch and PromotedFrom (the switch point) at once",
		run:       (*worker).promoteRow,
	},
	{
		name:      "start",
		when:      "the spec is a primary or standalone",
		match:     func(p *pass) bool { return p.s.Role != instance.RoleStandby },
		epoch:     true,
		lease:     true,
		state:     "something changed (generation, phase, promoted, first pass of this worker), or the server is down",
		does:      "write the configuration; reload a running server (restart it if its libraries changed); start a down one and wait until it is ready",
		publishes: "Stopped before it starts a server that was Ready",
		run:       (*worker).start,
	},
	{
		name: "archive",
		when: "the spec has backups (and the agent runs pgBackRest), its stanza is not in the status yet (a seed clears it), and it is no group's member waiting to be seeded",
		match: func(p *pass) bool {
			return p.backups && (p.st.Backup == nil || p.st.Backup.Stanza != p.s.Backup.Stanza) && !joining(p.s)
		},
		epoch:     true,
		state:     "the server runs",
		does:      "create the stanza in the region's repository from pg_control, as the instance's OS user, so a standby's member needs no primary (the configuration and archive_command were written with the server's); a copy there of another system's, or another OS user's, is set aside, never deleted",
		publishes: "Backup.Stanza",
		run:       (*worker).archiveRow,
	},
	{
		name: "serve backups",
		when: "the spec has backups and is its group's primary (not paused), and its stanza is in the status",
		match: func(p *pass) bool {
			return servesBackups(p) && p.st.Backup != nil && p.st.Backup.Stanza == p.s.Backup.Stanza
		},
		epoch:     true,
		state:     "the server runs",
		does:      "run pgBackRest's TLS server as the instance's OS user on its address, port + 1000, admitting only the partner's replication certificate, for the stanza alone (a configuration and lock directory of its own); start it again if it ended. An instance that is no group's primary has it stopped",
		publishes: "Backup.Served: its address and the primary's paths, which the partner's backups name (cleared when it stops serving)",
		run:       (*worker).serveRow,
	},
	{
		name: "backup",
		when: "the spec has backups and asks for a sequence number above the status's, the instance was Ready, and no backup of it is queued",
		match: func(p *pass) bool {
			return p.backups && (p.s.Role != instance.RoleStandby || p.s.Peer != nil) && p.prev.Phase == instance.PhaseReady &&
				p.st.Backup != nil && p.st.Backup.Stanza == p.s.Backup.Stanza && p.s.Backup.Seq > p.st.Backup.Seq
		},
		epoch:     true,
		does:      "queue it with the agent's runner: one backup at a time on the machine, as the instance's OS user; a standby's is taken from the standby through its primary's server (Backup.Served of the partner's status; without it the backup is not taken, and reported cancelled); a backup of that number already in the repository is not taken again; it ends once its last WAL segment is archived",
		publishes: "Backup.Running; its outcome (Backup.Seq, Error, the repository's backups) once it ends",
		run:       (*worker).backupRow,
	},
	{
		name:      "observe",
		when:      "always, unless a row above ended the pass",
		match:     func(p *pass) bool { return true },
		epoch:     true,
		does:      "read role, replication and databases; on a primary make sure of the admin, Fog's roles, the system database and the slots; admit the partner in pg_hba.conf; keep the link views; name the relations lost transactions wrote",
		publishes: "Ready in the spec's generation and epoch, with Role, Replication, Databases; DrainedLSN cleared",
		run:       (*worker).observeRow,
	},
}

// pass is one reconcile of one instance: what the rows read and leave for the rows after them.
type pass struct {
	srv  Server
	s    instance.Spec
	prev instance.Status
	st   *instance.Status
	// done ends the pass with st.
	done bool
	// admitted: the epoch was checked (and the data directory adopted).
	admitted bool
	// running: whether the server runs, as the last row that looked found it.
	running bool
	// changed: the primary's configuration must be written and loaded.
	changed bool
	// up is the upstream of a standby (row identity).
	up *postgres.Upstream
	// seeded: row seed ran; demoted: row demote stopped a primary that must follow.
	seeded, demoted bool
	// backups: the spec has backups and the agent runs pgBackRest.
	backups bool
	// seedTimeline: the primary's timeline a seed from the repository recovers along.
	seedTimeline int
}

// reconcile brings the instance to its spec and returns what it observed: the rows of
// transitions, in order.
func (w *worker) reconcile(ctx context.Context, s instance.Spec) instance.Status {
	c := w.a.server(s)
	c.SetPeer(w.peer(ctx, s))
	prev, _ := w.status(ctx)
	st := prev
	st.Error, st.Reason = "", ""
	st.Egress = egress(s)
	p := &pass{srv: c, s: s, prev: prev, st: &st, backups: w.a.backups(s)}
	// A backup under way ends before the instance is stopped, drained or deleted (a deletion
	// waits for it: the OS user it runs as is removed), and when it was started in the other
	// role (a standby's from the standby, a primary's from itself).
	standby := s.Role == instance.RoleStandby
	w.a.bk.stopIf(w.uid, s.Deleted, func(j *backupJob) bool {
		return s.Deleted || s.Paused || s.Drain || (j.from != nil) != standby
	})
	if !servesBackups(p) {
		c.StopServingBackups()
		if st.Backup != nil {
			st.Backup.Served = nil
		}
	}
	// A restore into an instance being deleted ends first, and removes what it made.
	if s.Deleted {
		w.a.rs.stop(w.uid, true)
	}
	for _, t := range transitions {
		if t.epoch && !p.admitted {
			if w.admit(ctx, p); p.done {
				return st
			}
		}
		if !t.match(p) {
			continue
		}
		if err := t.run(w, ctx, p); err != nil {
			return w.fail(ctx, p, err)
		}
		if p.done {
			return st
		}
	}
	return st
}

// admit runs before the first row that checks the epoch is looked at (every row but delete):
// a create that failed is left to the control plane (which deletes it), the data directory
// is adopted, and the epoch checked. A failed create, a failed adoption or a stale epoch
// ends the pass.
func (w *worker) admit(ctx context.Context, p *pass) {
	c, s := p.srv, p.s
	p.admitted = true
	// A failed create is not retried: the control plane deletes it.
	if p.prev.Phase == instance.PhaseFailed && p.prev.ObservedGeneration == s.Generation {
		*p.st, p.done = p.prev, true
		return
	}
	if moved, err := c.Adopt(ctx); err != nil {
		p.st.Error, p.done = err.Error(), true
		return
	} else if moved {
		w.log.Info("the instance runs as an OS user of its own now", "instance", s.Name, "user", c.OSUser())
	}
	if err := checkEpoch(c.Dir(), s.GroupID, s.Epoch); err != nil {
		w.log.Warn("not acting on desired state", "instance", s.Name, "err", err)
		p.st.Error, p.st.Reason, p.done = err.Error(), reasonOf(err), true
	}
}

// fail is the status of a pass that failed with err.
func (w *worker) fail(ctx context.Context, p *pass, err error) instance.Status {
	c, s, st, prev := p.srv, p.s, p.st, p.prev
	w.log.Error("reconcile failed", "instance", s.Name, "err", err)
	st.Error, st.Reason, st.ObservedGeneration = err.Error(), reasonOf(err), s.Generation
	if prev.ObservedGeneration == 0 || prev.Phase == instance.PhaseCreating && prev.Role == "" {
		// A create that failed leaves nothing behind.
		st.Phase = instance.PhaseFailed
		_ = c.StopNow(ctx, true)
		_ = c.Remove()
		c.RemoveUser()
		return *st
	}
	// The instance ran before: the failure is retried on every resync, never given up.
	if _, ok := c.PID(); !ok {
		st.Phase = instance.PhaseStopped
	}
	return *st
}

func (w *worker) delete(ctx context.Context, p *pass) error {
	c, s := p.srv, p.s
	p.done = true
	if p.prev.Phase == instance.PhaseDeleted {
		*p.st = p.prev
		return nil
	}
	if err := c.StopNow(ctx, false); err != nil {
		w.log.Warn("fast stop before delete failed; stopping immediately", "err", err)
		_ = c.StopNow(ctx, true)
	}
	if err := c.Remove(); err != nil {
		p.st.Error = fmt.Sprintf("remove data: %v", err)
		return nil
	}
	if err := c.DisownBackups(); err != nil {
		// The OS user stays until its backups are root's: its uid must not pass to another.
		p.st.Error = fmt.Sprintf("keep the backups: %v", err)
		return nil
	}
	c.RemoveUser()
	w.log.Info("instance deleted", "instance", s.Name)
	*p.st = instance.Status{Phase: instance.PhaseDeleted, ObservedGeneration: s.Generation}
	return nil
}

func (w *worker) create(ctx context.Context, p *pass) error {
	s := p.s
	p.st.Phase = instance.PhaseCreating
	w.publish(ctx, *p.st)
	w.log.Info("initialising instance", "instance", s.Name, "addr", net.JoinHostPort(s.Host, fmt.Sprint(s.Port)))
	return p.srv.Init(ctx, s.Locale)
}

// fence keeps a demoted primary shut down.
func (w *worker) fence(ctx context.Context, p *pass) error {
	c, s, st := p.srv, p.s, p.st
	p.done = true
	if _, running := c.PID(); running {
		failpoint.Hit(failpoint.AgentFence)
		w.log.Info("fencing instance: shutting it down", "instance", s.Name, "epoch", s.Epoch, "immediate", s.StopImmediately)
		if err := c.StopNow(ctx, s.StopImmediately); err != nil {
			st.Error = err.Error()
			return nil
		}
	}
	st.Phase, st.ObservedGeneration, st.Epoch, st.DrainedLSN = instance.PhaseStopped, s.Generation, s.Epoch, ""
	return nil
}

// drain fences a primary for a planned failover without a shutdown, whose checkpoint would
// sit inside the time writes are stopped: client connections are refused from now on
// (pg_hba.conf keeps only Fog's own socket and replication), every client session is ended,
// and the flushed end of WAL is reported. Every commit a client was told of was flushed
// before its session ended, so it lies before that point, and the standby is promoted only
// once it has received WAL up to there: nothing acknowledged is lost. The server keeps
// running so its WAL sender ships everything; it is stopped and rewound when it rejoins.
func (w *worker) drain(ctx context.Context, p *pass) error {
	c, s, st := p.srv, p.s, p.st
	p.done = true
	st.ObservedGeneration, st.Epoch = s.Generation, s.Epoch
	if _, running := c.PID(); !running {
		st.Phase, st.DrainedLSN = instance.PhaseStopped, ""
		return nil
	}
	failpoint.Hit(failpoint.AgentFence)
	start := time.Now()
	conn, err := c.ConnectSystem(ctx)
	if err != nil {
		st.Error = fmt.Sprintf("connect: %v", err)
		return nil
	}
	defer conn.Close()
	lsn, err := conn.Drain(ctx, s.Name)
	if err != nil {
		st.Error = err.Error()
		return nil
	}
	if st.Phase != instance.PhaseDrained || st.DrainedLSN == "" {
		st.DrainedLSN = lsn.String()
		w.log.Info("drained primary: no client can write", "instance", s.Name, "epoch", s.Epoch, "endOfWAL", st.DrainedLSN,
			"took", time.Since(start).Round(time.Microsecond))
	}
	st.Phase, st.Role = instance.PhaseDrained, instance.RolePrimary
	return nil
}

func (w *worker) identity(ctx context.Context, p *pass) error {
	up, err := w.upstream(p.srv, p.s)
	p.up = up
	return err
}

// joining reports whether s is a failover group's member that the group has not made a
// primary or a standby yet: its stanza is the group's, whose system it is not until it is
// seeded, so it creates no copy of it.
func joining(s instance.Spec) bool { return s.GroupID != "" && s.Role == "" }

// seed makes a standby: from the region's backup repository when the rule of seed.go
// allows, else (or when that fails) from a base backup of its upstream.
func (w *worker) seed(ctx context.Context, p *pass) error {
	c, s, st := p.srv, p.s, p.st
	p.seeded = true
	zero := 0.0
	st.Phase, st.SeedPercent, st.Role = instance.PhaseCreating, &zero, instance.RoleStandby
	st.SeedSource, st.SeedBackup, st.SeedFallback = "", "", ""
	if p.backups {
		// The data is about to be replaced whichever the source (both stop it at once), and
		// deciding writes the configuration of the group's stanza, which the old server's
		// archive_command would then push its own system's WAL with.
		if err := c.StopNow(ctx, true); err != nil {
			return err
		}
	}
	label, why := w.repositorySeed(ctx, p)
	if label != "" {
		st.SeedSource, st.SeedBackup = instance.SeedFromRepository, label
		w.publish(ctx, *st)
		err := w.seedFromRepository(ctx, p, label)
		if err == nil {
			w.seededNow(s, st)
			w.log.Info("seeded standby from the region's backup repository; it streams from its primary", "instance", s.Name, "backup", label)
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		why = fmt.Sprintf("seeding from backup %s of the region's repository failed: %v", label, err)
		w.log.Warn("seeding from the region's backup repository failed; seeding from the primary instead", "instance", s.Name, "backup", label, "err", err)
	} else if why != "" {
		w.log.Info("seeding from the primary, not from the region's backup repository", "instance", s.Name, "why", why)
	}
	st.SeedSource, st.SeedBackup, st.SeedFallback, st.SeedPercent = instance.SeedFromPrimary, "", why, &zero
	w.publish(ctx, *st)
	if err := w.seedFromPrimary(ctx, p); err != nil {
		return err
	}
	w.seededNow(s, st)
	if err := w.configure(c, s, p.up); err != nil {
		return err
	}
	w.log.Info("seeded standby from its primary", "instance", s.Name)
	if err := c.Start(ctx); err != nil {
		return err
	}
	w.waitStreaming(ctx, c)
	return nil
}

// seededNow records in st that the seed of s's generation is done.
func (w *worker) seededNow(s instance.Spec, st *instance.Status) {
	st.SeededGeneration, st.SeedPercent, st.Rewound = s.SeedGeneration, nil, nil
	st.SeededAt = time.Now().UTC()
	if st.Backup != nil {
		// Another system now: its stanza is checked again (row archive).
		st.Backup.Stanza = ""
	}
}

func (w *worker) demote(ctx context.Context, p *pass) error {
	c, s := p.srv, p.s
	if _, p.running = c.PID(); !p.running {
		return nil
	}
	conn, err := c.ConnectSystem(ctx)
	if err != nil {
		return err
	}
	inRecovery, err := conn.InRecovery(ctx)
	conn.Close()
	if err != nil {
		return err
	}
	if !inRecovery {
		// A primary told to follow another: it must stop first, and it was not fenced
		// through the protocol, so only a rewind makes it safe.
		w.log.Warn("instance is a primary but should be a standby; stopping it", "instance", s.Name)
		if err := c.StopNow(ctx, false); err != nil {
			return err
		}
		p.running, p.demoted = false, true
	}
	return nil
}

func (w *worker) rewindRow(ctx context.Context, p *pass) error {
	return w.rewind(ctx, p.srv, p.s, p.up, p.st)
}

// rejoin makes the instance follow its upstream's latest timeline.
func (w *worker) rejoin(ctx context.Context, p *pass) error {
	c, s := p.srv, p.s
	if err := w.configure(c, s, p.up); err != nil {
		return err
	}
	if p.running {
		if err := c.Reload(ctx); err != nil {
			return err
		}
		if restart, err := w.needsRestart(ctx, c, s); err != nil || !restart {
			return err
		}
		w.log.Info("restarting the standby to load its libraries", "instance", s.Name)
		if err := c.Stop(ctx, "fast"); err != nil {
			return err
		}
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	w.waitStreaming(ctx, c)
	return nil
}

// promoteRow makes a standby that should be primary a primary.
func (w *worker) promoteRow(ctx context.Context, p *pass) error {
	c, s, st := p.srv, p.s, p.st
	_, p.running = c.PID()
	if !p.running && c.IsStandby() {
		// A standby that is down (it crashed, or fog died before it was promoted) is started
		// as the standby it is and then promoted through pg_promote(), never by starting it
		// without standby.signal: that would end recovery wherever its WAL ends, on the old
		// timeline, without waiting for the WAL a planned failover must not lose.
		w.log.Info("starting standby before promoting it", "instance", s.Name)
		if err := c.Start(ctx); err != nil {
			return err
		}
		p.running = true
	}
	p.changed = st.ObservedGeneration != s.Generation || st.Phase != instance.PhaseReady || !w.configured
	if !p.running {
		return nil
	}
	conn, err := c.ConnectSystem(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	inRecovery, err := conn.InRecovery(ctx)
	if err != nil {
		return err
	}
	if inRecovery {
		if err := w.promote(ctx, conn, s, st); err != nil {
			return err
		}
		p.changed = true
	}
	return nil
}

// start makes the instance a read-write server: configured as its spec says, running.
func (w *worker) start(ctx context.Context, p *pass) error {
	c, s, st := p.srv, p.s, p.st
	if !p.running || p.changed {
		if err := w.configure(c, s, nil); err != nil {
			return err
		}
		w.configured = true
	}
	if p.running {
		if !p.changed {
			return nil
		}
		if err := c.Reload(ctx); err != nil {
			return err
		}
		if restart, err := w.needsRestart(ctx, c, s); err != nil || !restart {
			return err
		}
		w.log.Info("restarting the instance to load its libraries", "instance", s.Name)
		if err := c.Stop(ctx, "fast"); err != nil {
			return err
		}
		p.running = false
	}
	if st.Phase == instance.PhaseReady {
		w.log.Warn("instance was not running; starting it", "instance", s.Name)
		st.Phase = instance.PhaseStopped
		w.publish(ctx, *st)
	}
	if err := w.gated(ctx, s, c.Launch); err != nil {
		return err
	}
	return c.WaitReady(ctx, 60*time.Second)
}

func (w *worker) observeRow(ctx context.Context, p *pass) error {
	c, s, st := p.srv, p.s, p.st
	st.DrainedLSN = ""
	k, err := openConns(ctx, c)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer k.close()
	w.observedAt = time.Now()
	if err := w.observe(ctx, k, s, st); err != nil {
		return err
	}
	if st.Rewound != nil && st.Rewound.Decoded && !st.Rewound.Resolved {
		w.resolveLost(ctx, c, st)
	}
	st.Phase, st.ObservedGeneration, st.Epoch = instance.PhaseReady, s.Generation, s.Epoch
	p.done = true
	return nil
}

// transitionDoc renders the table for the package doc (doc.go), which must show it as is.
func transitionDoc() string {
	var b strings.Builder
	for _, t := range transitions {
		var checks []string
		if t.epoch {
			checks = append(checks, "epoch")
		}
		if t.lease {
			checks = append(checks, "lease gate")
		}
		if t.state != "" {
			checks = append(checks, t.state)
		}
		if len(checks) == 0 {
			checks = append(checks, "nothing")
		}
		fmt.Fprintf(&b, "%s\n", t.name)
		for _, f := range [][2]string{{"when", t.when}, {"checks", strings.Join(checks, "; ")}, {"does", t.does}, {"publishes", t.publishes}} {
			label := f[0]
			for _, line := range wrap(f[1], 78) {
				fmt.Fprintf(&b, "  %-10s %s\n", label, line)
				label = ""
			}
		}
	}
	return b.String()
}

// wrap breaks s into lines of at most width bytes at spaces.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return append(lines, line)
}
