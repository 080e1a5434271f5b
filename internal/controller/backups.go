package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/activity"
	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/backupsched"
	"github.com/fogdb/fog/internal/engine"
	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// backupEvery is how often the leader runs the backup schedule: its intervals are hours and
// days, and each run reads every instance.
const backupEvery = 30 * time.Second

// backupSchedule returns the backup schedule of a leadership whose engine is e: it reads the
// instances through e and asks for backups with e's transaction.
func (c *Controller) backupSchedule(e *engine.Engine) *backupsched.Scheduler {
	return backupsched.New(backupsched.Deps{
		Config:    c.cfg.Backup,
		Instances: func(ctx context.Context) ([]backupsched.Instance, error) { return backupInstances(ctx, e) },
		Ask: func(ctx context.Context, in backupsched.Instance, seq int64, typ string, now time.Time) error {
			m := &in.Record
			return e.AskBackup(ctx, miKey(m.Subscription, m.ResourceGroup, m.Name), in.Rev, seq, typ, now)
		},
		Log: c.log,
	})
}

// backupInstances reads every instance, with its record's revision, as the backup schedule
// judges it: whether it is the primary (on its own, or its group's) or the standby (and then
// whether its primary serves its backups), whether an operation
// holds it or its group, and its observed state while that is news (its agent holds the
// region's lease in the incarnation it published under, as a GET judges it).
func backupInstances(ctx context.Context, e *engine.Engine) ([]backupsched.Instance, error) {
	_, kvs, err := e.Store().Snapshot(ctx, "mi/", group.Prefix, "observed/", engine.OpPrefix)
	if err != nil {
		return nil, fmt.Errorf("read the instances: %w", err)
	}
	groups := map[string]group.FailoverGroup{}
	statuses := map[string]instance.Status{}
	running := map[string]bool{}
	type rec struct {
		m   resource.ManagedInstance
		rev int64
	}
	var recs []rec
	for _, kv := range kvs {
		var err error
		switch {
		case strings.HasPrefix(kv.Key, "mi/"):
			var r rec
			r.rev, err = kv.Rev, json.Unmarshal(kv.Value, &r.m)
			recs = append(recs, r)
		case strings.HasPrefix(kv.Key, group.Prefix):
			var g group.FailoverGroup
			err = json.Unmarshal(kv.Value, &g)
			groups[strings.ToLower(g.Name)] = g
		case strings.HasPrefix(kv.Key, "observed/"):
			var st instance.Status
			err = json.Unmarshal(kv.Value, &st)
			statuses[kv.Key] = st
		default:
			var op Operation
			err = json.Unmarshal(kv.Value, &op)
			running[op.ID] = !op.Terminal()
		}
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
	}
	leases := map[string]*lease.Record{}
	out := make([]backupsched.Instance, 0, len(recs))
	for _, r := range recs {
		m := r.m
		in := backupsched.Instance{Record: m, Rev: r.rev, Primary: true, Busy: running[m.ActiveOperation]}
		if m.FailoverGroup != "" {
			if g, ok := groups[strings.ToLower(m.FailoverGroup)]; ok {
				in.Primary = g.Sides[g.Primary].InstanceUID == m.UID
				in.Busy = in.Busy || running[g.ActiveOperation] || g.Deleting
				if p := g.Sides[g.Primary]; !in.Primary {
					in.Standby = true
					ps, ok := statuses[instance.StatusKey(p.Location, p.InstanceUID)]
					in.PartnerServes = ok && ps.Backup != nil && ps.Backup.Served != nil && ps.Backup.Served.Stanza == m.Stanza()
				}
			}
		}
		st, ok := statuses[instance.StatusKey(m.Location, m.UID)]
		if ok {
			l, seen := leases[m.Location]
			if !seen {
				if rec, live := e.RegionLease(ctx, m.Location); live {
					l = &rec
				}
				leases[m.Location] = l
			}
			if l != nil && lease.Current(*l, st.LeaseIncarnation) {
				in.Status = &st
			}
		}
		out = append(out, in)
	}
	return out, nil
}

// noteBackups records in the activity log each backup an agent reports done or failed since
// this leadership last looked (Status.Backup.Seq advanced): one record per backup, under a
// key of its own written only if absent, so that a new leader, which notes every instance's
// last backup again, writes nothing twice. One older than the activity log keeps is not
// written again either (the log had it and pruned it). The verification that follows a
// backup is reported after it: the record is written again once it has its outcome.
func (c *Controller) noteBackups(ctx context.Context, t *term) {
	st := t.eng.Store()
	_, kvs, err := st.Snapshot(ctx, "mi/", "observed/")
	if err != nil {
		return
	}
	statuses := map[string]instance.Status{}
	var ms []resource.ManagedInstance
	for _, kv := range kvs {
		if strings.HasPrefix(kv.Key, "observed/") {
			var s instance.Status
			if json.Unmarshal(kv.Value, &s) == nil {
				statuses[kv.Key] = s
			}
			continue
		}
		var m resource.ManagedInstance
		if json.Unmarshal(kv.Value, &m) == nil {
			ms = append(ms, m)
		}
	}
	now := time.Now().UTC()
	seen := map[string]bool{}
	for i := range ms {
		m := &ms[i]
		seen[m.UID] = true
		s, ok := statuses[instance.StatusKey(m.Location, m.UID)]
		if !ok || s.Backup == nil || s.Backup.Seq == 0 {
			continue
		}
		seq := s.Backup.Seq
		verified := s.Backup.Verify != nil && s.Backup.Verify.Seq == seq
		if t.backupSeq[m.UID] == seq && (!verified || t.backupVerified[m.UID] == seq) {
			continue
		}
		rec, ok := backupRecord(m, s.Backup, now, c.cfg.Backup.RetryAfter)
		if !ok {
			continue // done, and not listed by the repository yet: next time
		}
		_, known := t.backupSeq[m.UID]
		if !known && now.Sub(rec.Start) > c.cfg.activityRetention() {
			t.backupSeq[m.UID], t.backupVerified[m.UID] = seq, seq
			continue
		}
		key := activity.BackupKey(m.UID, seq)
		err := st.Txn(ctx, []store.Cond{{Key: key, Rev: 0}}, []store.Op{store.PutOp(key, rec)})
		if errors.Is(err, store.ErrConflict) && verified {
			// Recorded before its verification ended (by this leadership or an earlier one):
			// written again with it, unless the record has it already.
			var old activity.Record
			rev, gerr := store.Get(ctx, st, key, &old)
			switch {
			case gerr != nil:
				err = gerr
			case old.Description != rec.Description:
				if err = st.Txn(ctx, []store.Cond{{Key: key, Rev: rev}}, []store.Op{store.PutOp(key, rec)}); err == nil {
					c.log.Info("backup verification", "instance", m.Name, "seq", seq, "what", rec.Description)
					t.backupSeq[m.UID], t.backupVerified[m.UID] = seq, seq
					continue
				}
			}
		}
		if err != nil && !errors.Is(err, store.ErrConflict) {
			c.log.Warn("record a backup in the activity log", "instance", m.Name, "seq", seq, "err", err)
			continue
		}
		t.backupSeq[m.UID] = seq
		if verified {
			t.backupVerified[m.UID] = seq
		}
		if err == nil {
			c.log.Info("backup "+strings.ToLower(rec.Status), "instance", m.Name, "seq", seq, "what", rec.Description)
		}
	}
	for uid := range t.backupSeq {
		if !seen[uid] {
			delete(t.backupSeq, uid)
			delete(t.backupVerified, uid)
		}
	}
}

// backupRecord is the activity record of the last backup b reports of instance m, seen at
// now; false when b says it succeeded but does not list it yet (the repository is read after
// the backup, and its listing may fail).
func backupRecord(m *resource.ManagedInstance, b *instance.BackupStatus, now time.Time, retryAfter time.Duration) (activity.Record, bool) {
	rec := activity.Record{OperationID: activity.BackupID(m.UID, b.Seq), Kind: activity.KindBackup, Subscription: m.Subscription,
		ResourceGroup: m.ResourceGroup, ResourceID: m.ID(), Caller: InitiatorSystem,
		Backup: &activity.Backup{Seq: b.Seq, Stanza: b.Stanza}}
	if m.BackupSeq == b.Seq {
		rec.Backup.Type = m.BackupType
	}
	if b.Error != "" {
		// When it failed is not reported; it is over by the time it is seen.
		rec.Status, rec.Start, rec.End = arm.StatusFailed, now, &now
		if m.BackupSeq == b.Seq && !m.BackupAskedAt.IsZero() {
			rec.Start = m.BackupAskedAt
		}
		rec.Error = &arm.Error{Code: "BackupFailed", Message: fmt.Sprintf(
			"The %s %d of managed instance '%s' failed: %s. Fog asks for another in %s; pgBackRest's log is in the instance's pgbackrest/log on the machine of region %s.",
			backupNoun(rec.Backup.Type), b.Seq, m.Name, b.Error, retryAfter, m.Location)}
		rec.Description = fmt.Sprintf("%s %d failed after %s: %s", backupNoun(rec.Backup.Type), b.Seq, rec.End.Sub(rec.Start).Round(time.Second), b.Error)
		return rec, true
	}
	var bk *instance.Backup
	for i := range b.Backups {
		if b.Backups[i].Seq == b.Seq {
			bk = &b.Backups[i]
		}
	}
	if bk == nil {
		return rec, false
	}
	stop := bk.Stop.UTC()
	rec.Status, rec.Start, rec.End = arm.StatusSucceeded, bk.Start.UTC(), &stop
	rec.Backup.Type, rec.Backup.Label, rec.Backup.Size, rec.Backup.RepoSize = bk.Type, bk.Label, bk.Size, bk.RepoSize
	rec.Description = fmt.Sprintf("%s %d (%s) finished: %s of data, %s added to the repository, in %s",
		backupNoun(bk.Type), b.Seq, bk.Label, bytesText(bk.Size), bytesText(bk.RepoSize), stop.Sub(rec.Start).Round(time.Second))
	if v := b.Verify; v != nil && v.Seq == b.Seq {
		if v.Error == "" {
			rec.Description += "; the repository verified"
		} else {
			rec.Description += "; the repository FAILED verification: " + v.Error
		}
	}
	return rec, true
}

// backupNoun names a backup of type t: "full backup", "differential backup", or "backup"
// when the type is not known.
func backupNoun(t string) string {
	switch t {
	case instance.BackupFull:
		return "full backup"
	case instance.BackupDiff:
		return "differential backup"
	case "incr":
		return "incremental backup"
	}
	return "backup"
}

// bytesText is n in binary units, as pgBackRest's info prints sizes.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
