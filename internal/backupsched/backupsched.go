// Package backupsched is Fog's backup schedule: which instance is asked for a backup, of
// which type, and when (docs/backups.md). The leader's controller builds a Scheduler for each
// leadership and ticks it every 30 seconds.
//
// # The rules
//
// An instance counts only while it is Ready, runs as a primary (on its own, or as its failover
// group's primary) or as its group's standby whose primary serves its backups (the standby's
// region backs up from the standby into its own repository, docs/backups.md), no operation
// holds it or its group, and its agent reports the stanza its record names (the stanza exists
// in the region's repository, so the backups it lists are that stanza's). Each region's
// repository is judged on its own. Then, in order:
//
//  1. A backup asked and not done yet (the record's number above the agent's last, or one
//     running): nothing.
//  2. The last one asked failed (the agent's last number is the record's, with an error):
//     nothing until RetryAfter has passed since this scheduler first saw the failure; then
//     the rules below, as if it had not been asked. One the agent stopped (a failover
//     promoted or demoted the instance) did not fail: the rules below apply at once.
//  3. No full backup in the repository: a full backup.
//  4. The newest full backup started more than FullInterval ago: a full backup.
//  5. The newest backup of any type started more than DiffInterval ago: a differential one.
//  6. The WAL archive has a gap (the agent's bounded queue dropped WAL while the repository
//     was down): a differential one, the first point restorable again after the gap.
//
// A backup is asked with the next sequence number, one above both the record's and the
// agent's last, in one store transaction with the instance's desired state (Deps.Ask), so
// the agent takes exactly one backup for it and a crash of either side redoes, never
// repeats, it. What a new leader does not know (when it first saw a failure) it learns
// afresh: a retry can come later after a change of leader, never earlier.
//
// # What it needs
//
// The scheduler imports neither the controller nor the API: Deps hands it the instances
// with their observed state, the transaction that asks for a backup, and a clock.
package backupsched

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/resource"
)

// Config is the schedule.
type Config struct {
	// FullInterval is the longest time between full backups (Azure: weekly).
	FullInterval time.Duration
	// DiffInterval is the longest time between backups of any type (Azure: a differential
	// every 12 to 24 hours).
	DiffInterval time.Duration
	// RetryAfter is how long a failed backup waits before it is asked again.
	RetryAfter time.Duration
}

// Defaults of the schedule.
const (
	DefaultFullInterval = 7 * 24 * time.Hour
	DefaultDiffInterval = 24 * time.Hour
	DefaultRetryAfter   = 10 * time.Minute
)

// Defaults returns the schedule with every default filled in, as the flags show it.
func Defaults() Config {
	return Config{FullInterval: DefaultFullInterval, DiffInterval: DefaultDiffInterval, RetryAfter: DefaultRetryAfter}
}

// RegisterFlags binds the schedule's flags to c; their defaults are c's values.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&c.FullInterval, "backup-full-interval", c.FullInterval, "longest time between an instance's full backups")
	fs.DurationVar(&c.DiffInterval, "backup-diff-interval", c.DiffInterval, "longest time between an instance's backups of any type: a differential backup is taken after it (at most --backup-full-interval)")
}

// Validate checks the schedule and fills the defaults of zero values.
func (c *Config) Validate() error {
	if c.FullInterval == 0 {
		c.FullInterval = DefaultFullInterval
	}
	if c.DiffInterval == 0 {
		c.DiffInterval = DefaultDiffInterval
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.FullInterval < 0 {
		return fmt.Errorf("--backup-full-interval %s: give a positive duration, such as 168h", c.FullInterval)
	}
	if c.DiffInterval < 0 {
		return fmt.Errorf("--backup-diff-interval %s: give a positive duration, such as 24h", c.DiffInterval)
	}
	if c.DiffInterval > c.FullInterval {
		return fmt.Errorf("--backup-diff-interval %s is longer than --backup-full-interval %s: a differential backup builds on the last full one, so give at most %s", c.DiffInterval, c.FullInterval, c.FullInterval)
	}
	if c.RetryAfter < 0 {
		return fmt.Errorf("backup retry %s: give a positive duration", c.RetryAfter)
	}
	return nil
}

// Instance is one instance as the scheduler judges it.
type Instance struct {
	// Record is the instance's record as read at revision Rev, which Ask is conditioned on.
	Record resource.ManagedInstance
	Rev    int64
	// Primary: the instance runs on its own, or is its failover group's primary.
	Primary bool
	// Standby: the instance is its group's standby, and PartnerServes: the group's primary
	// serves its backups (Status.Backup.Served).
	Standby, PartnerServes bool
	// Busy: an operation holds the instance or its group (a failover, a create, a delete).
	Busy bool
	// Status is its observed state (nil: none yet).
	Status *instance.Status
}

// Deps are the scheduler's edges.
type Deps struct {
	Config Config
	// Instances lists every instance with its observed state.
	Instances func(ctx context.Context) ([]Instance, error)
	// Ask asks for a backup of typ of in with sequence number seq: it records both in the
	// instance's record with the time asked and writes its desired state, in one transaction
	// conditioned on in.Rev; when the record changed since, it writes nothing and returns an
	// error.
	Ask func(ctx context.Context, in Instance, seq int64, typ string, now time.Time) error
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	Log *slog.Logger
}

// Scheduler is the backup schedule of one leadership. Tick is called from one goroutine at a
// time.
type Scheduler struct {
	d Deps
	// failed is, per instance UID, the failed backup last seen and when it was first seen.
	failed map[string]failure
}

type failure struct {
	seq  int64
	seen time.Time
}

// New returns the scheduler of a new leadership.
func New(d Deps) *Scheduler {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{d: d, failed: map[string]failure{}}
}

// Decision is what the rules say of one instance: a backup of Type, or none ("") and Why.
type Decision struct {
	Type string
	Why  string
}

// Tick applies the rules to every instance once and asks for the backups due.
func (s *Scheduler) Tick(ctx context.Context) {
	ins, err := s.d.Instances(ctx)
	if err != nil {
		s.d.Log.Warn("backup schedule: list the instances", "err", err)
		return
	}
	now := s.d.Now()
	seen := map[string]bool{}
	for _, in := range ins {
		seen[in.Record.UID] = true
		d := s.decide(in, now)
		if d.Type == "" {
			continue
		}
		seq := in.Record.BackupSeq
		if in.Status != nil && in.Status.Backup != nil {
			seq = max(seq, in.Status.Backup.Seq)
		}
		seq++
		if err := s.d.Ask(ctx, in, seq, d.Type, now); err != nil {
			if ctx.Err() == nil {
				s.d.Log.Warn("backup schedule: could not ask for a backup; next tick judges again", "instance", in.Record.Name, "type", d.Type, "seq", seq, "err", err)
			}
			continue
		}
		delete(s.failed, in.Record.UID)
		s.d.Log.Info("backup asked", "instance", in.Record.Name, "type", d.Type, "seq", seq, "because", d.Why)
	}
	for uid := range s.failed {
		if !seen[uid] {
			delete(s.failed, uid)
		}
	}
}

// decide applies the rules to one instance at now.
func (s *Scheduler) decide(in Instance, now time.Time) Decision {
	st := in.Status
	switch {
	case st == nil || st.Phase != instance.PhaseReady:
		return Decision{Why: "not Ready"}
	case in.Standby && st.Role == instance.RoleStandby && !in.PartnerServes:
		return Decision{Why: "a standby whose primary does not serve its backups (yet)"}
	case !(in.Primary && st.Role == instance.RolePrimary) && !(in.Standby && st.Role == instance.RoleStandby):
		return Decision{Why: "neither a primary nor its group's standby"}
	case in.Busy:
		return Decision{Why: "an operation holds it"}
	case st.Backup == nil || st.Backup.Stanza == "" || st.Backup.Stanza != in.Record.Stanza():
		return Decision{Why: "its stanza is not in the repository yet"}
	}
	b := st.Backup
	if in.Record.BackupSeq > b.Seq || b.Running != 0 {
		return Decision{Why: "a backup is under way"}
	}
	if in.Record.BackupSeq > 0 && b.Seq >= in.Record.BackupSeq && b.Error != "" && !b.Cancelled {
		f, ok := s.failed[in.Record.UID]
		if !ok || f.seq != b.Seq {
			f = failure{seq: b.Seq, seen: now}
			s.failed[in.Record.UID] = f
			s.d.Log.Warn("backup failed; asking again later", "instance", in.Record.Name, "seq", b.Seq, "err", b.Error, "retry in", s.d.Config.RetryAfter)
		}
		if now.Sub(f.seen) < s.d.Config.RetryAfter {
			return Decision{Why: "the last backup failed; waiting to retry"}
		}
	}
	return due(b.Backups, b.Archive.Gap, now, s.d.Config)
}

// due says which backup the repository's backups (oldest first) call for at now.
func due(backups []instance.Backup, gap bool, now time.Time, c Config) Decision {
	var full, newest *instance.Backup
	for i := range backups {
		bk := &backups[i]
		if bk.Type == instance.BackupFull && (full == nil || bk.Start.After(full.Start)) {
			full = bk
		}
		if newest == nil || bk.Start.After(newest.Start) {
			newest = bk
		}
	}
	switch {
	case full == nil:
		return Decision{Type: instance.BackupFull, Why: "there is no full backup"}
	case now.Sub(full.Start) >= c.FullInterval:
		return Decision{Type: instance.BackupFull, Why: fmt.Sprintf("the last full backup started %s ago", now.Sub(full.Start).Round(time.Minute))}
	case now.Sub(newest.Start) >= c.DiffInterval:
		return Decision{Type: instance.BackupDiff, Why: fmt.Sprintf("the last backup started %s ago", now.Sub(newest.Start).Round(time.Minute))}
	case gap:
		return Decision{Type: instance.BackupDiff, Why: "the WAL archive has a gap, which a backup closes"}
	}
	return Decision{Why: "no backup is due"}
}
