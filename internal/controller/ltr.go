package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/activity"
	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/engine"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/ltr"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// Long-term retention (docs/backups.md): a policy per database; the leader's backup tick
// judges each new full backup of an instance with its databases' policies (ltr.Classify)
// and records the ones kept (resource.LTRBackup, per database), and the instance's record
// carries the labels kept, each until the longest of its records, to the agent's expiry
// (ltr.Expire).

// Operation kinds of LTR. Both end in the transaction that accepts them.
const (
	KindPutLTR          = "putLongTermRetention"
	KindDeleteLTRBackup = "deleteLongTermRetentionBackup"
)

// ltrPolicies reads the LTR policies of the instance with uid, by database.
func (c *Controller) ltrPolicies(ctx context.Context, uid string) (map[string]resource.LongTermRetention, error) {
	ps, err := store.List[resource.LongTermRetention](ctx, c.st, resource.LongTermRetentionPrefix(uid))
	if err != nil {
		return nil, internalError(fmt.Errorf("read the long-term retention policies: %w", err))
	}
	out := make(map[string]resource.LongTermRetention, len(ps))
	for _, p := range ps {
		out[p.Database] = p
	}
	return out, nil
}

// GetLongTermRetention returns database db's LTR policy (policy must be "default"); a
// database without one keeps nothing (every retention PT0S).
func (c *Controller) GetLongTermRetention(ctx context.Context, sub, rg, mi, db, policy string) (resource.LongTermRetentionPolicyJSON, error) {
	if err := resource.ValidateLongTermRetentionPolicyName(policy, false); err != nil {
		return resource.LongTermRetentionPolicyJSON{}, err
	}
	vs, err := c.ListLongTermRetention(ctx, sub, rg, mi, db)
	if err != nil {
		return resource.LongTermRetentionPolicyJSON{}, err
	}
	return vs[0], nil
}

// ListLongTermRetention lists database db's LTR policies: the one, default.
func (c *Controller) ListLongTermRetention(ctx context.Context, sub, rg, mi, db string) ([]resource.LongTermRetentionPolicyJSON, error) {
	m, _, err := c.getInstance(ctx, sub, rg, mi)
	if err != nil {
		return nil, err
	}
	if _, err := c.policyDatabase(ctx, m, db, false); err != nil {
		return nil, err
	}
	ps, err := c.ltrPolicies(ctx, m.UID)
	if err != nil {
		return nil, err
	}
	var r *resource.LongTermRetention
	if p, ok := ps[db]; ok {
		r = &p
	}
	return []resource.LongTermRetentionPolicyJSON{resource.LongTermRetentionView(m.Subscription, m.ResourceGroup, m.Name, db, r)}, nil
}

// PutLongTermRetention sets database db's LTR policy. Azure answers it as a long-running
// operation; Fog's is finished when accepted: one transaction writes the policy and the
// operation, Succeeded. The policy keeps full backups that end after it is set.
func (c *Controller) PutLongTermRetention(ctx context.Context, sub, rg, mi, db, policy string, body resource.LongTermRetentionBody) (*Operation, error) {
	if err := resource.ValidateLongTermRetentionPolicyName(policy, true); err != nil {
		return nil, err
	}
	rec, err := body.Policy(db)
	if err != nil {
		return nil, err
	}
	m, err := c.readyInstance(ctx, sub, rg, mi)
	if err != nil {
		return nil, err
	}
	if _, err := c.policyDatabase(ctx, m, db, true); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	rec.InstanceUID, rec.UpdatedAt = m.UID, now
	if old, err := c.ltrPolicies(ctx, m.UID); err == nil {
		if p, ok := old[db]; ok && !p.Policy().Off() {
			rec.UpdatedAt = p.UpdatedAt // a change of policy keeps the weeks it counted
		}
	}
	id := resource.LongTermRetentionID(m.Subscription, m.ResourceGroup, m.Name, db)
	op := c.newOp(ctx, KindPutLTR, "UpsertDatabaseBackupArchivalPolicyV2", m.Subscription, m, id)
	op.Database = db
	done := 100.0
	op.Status, op.EndTime, op.Percent = arm.StatusSucceeded, &now, &done
	if err := c.st.Txn(ctx, nil, []store.Op{store.PutOp(resource.LongTermRetentionKey(m.UID, db), rec),
		store.PutOp(opKey(op.ID), op), store.PutOp(activity.Key(op.ID), activityOf(op))}); err != nil {
		return nil, internalError(err)
	}
	c.log.Info("long-term retention set", "database", arm.DatabaseID(m.Subscription, m.ResourceGroup, m.Name, db),
		"weekly", rec.Weekly, "monthly", rec.Monthly, "yearly", rec.Yearly, "weekOfYear", rec.WeekOfYear, "id", op.ID)
	return op, nil
}

// LTRQuery selects LTR backups as Azure's paths do: a location of a subscription, optionally
// a resource group, an instance (by name) and a database.
type LTRQuery struct {
	Subscription, ResourceGroup, Location, Instance, Database string
}

func (q LTRQuery) match(b resource.LTRBackup) bool {
	eq := func(want, got string) bool { return want == "" || strings.EqualFold(want, got) }
	return strings.EqualFold(q.Subscription, b.Subscription) && eq(q.ResourceGroup, b.ResourceGroup) &&
		strings.EqualFold(resource.NormalizeRegion([]string{b.Location}, q.Location), b.Location) &&
		eq(q.Instance, b.InstanceName) && eq(q.Database, b.Database)
}

// ltrRecords reads every LTR backup record, with its store key.
func (c *Controller) ltrRecords(ctx context.Context) ([]resource.LTRBackup, []string, error) {
	kvs, err := c.st.List(ctx, resource.LTRBackupPrefix)
	if err != nil {
		return nil, nil, internalError(fmt.Errorf("read the long-term retention backups: %w", err))
	}
	var out []resource.LTRBackup
	var keys []string
	for _, kv := range kvs {
		var b resource.LTRBackup
		if err := json.Unmarshal(kv.Value, &b); err != nil {
			return nil, nil, internalError(fmt.Errorf("decode %s: %w", kv.Key, err))
		}
		out, keys = append(out, b), append(keys, kv.Key)
	}
	return out, keys, nil
}

// ListLTRBackups lists the LTR backups q selects that have not expired, oldest first.
func (c *Controller) ListLTRBackups(ctx context.Context, q LTRQuery) ([]resource.LTRBackupJSON, error) {
	bs, _, err := c.ltrRecords(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := []resource.LTRBackupJSON{}
	for _, b := range bs {
		if q.match(b) && b.Expires.After(now) {
			out = append(out, c.ltrView(b, q.ResourceGroup != ""))
		}
	}
	slices.SortStableFunc(out, func(a, b resource.LTRBackupJSON) int {
		return a.Properties.BackupTime.Compare(b.Properties.BackupTime)
	})
	return out, nil
}

func (c *Controller) ltrView(b resource.LTRBackup, rg bool) resource.LTRBackupJSON {
	var deleted *time.Time
	if !b.DatabaseDeleted.IsZero() {
		d := b.DatabaseDeleted.UTC()
		deleted = &d
	}
	return resource.LTRBackupView(b, rg, deleted)
}

// findLTRBackup finds backup name of q's instance and database.
func (c *Controller) findLTRBackup(ctx context.Context, q LTRQuery, name string) (resource.LTRBackup, string, error) {
	uid, label, ok := resource.ParseLTRBackupName(name)
	var b resource.LTRBackup
	if !ok {
		return b, "", resource.NotFound(resource.TypeLongTermRetentionBackup, name)
	}
	key := resource.LTRBackupKey(uid, q.Database, label)
	_, err := store.Get(ctx, c.st, key, &b)
	if errors.Is(err, store.ErrNotFound) || err == nil && (!q.match(b) || !b.Expires.After(time.Now())) {
		return b, "", resource.NotFound(resource.TypeLongTermRetentionBackup, name)
	}
	if err != nil {
		return b, "", internalError(err)
	}
	return b, key, nil
}

// GetLTRBackup returns backup name of q's instance and database.
func (c *Controller) GetLTRBackup(ctx context.Context, q LTRQuery, name string) (resource.LTRBackupJSON, error) {
	b, _, err := c.findLTRBackup(ctx, q, name)
	if err != nil {
		return resource.LTRBackupJSON{}, err
	}
	return c.ltrView(b, q.ResourceGroup != ""), nil
}

// DeleteLTRBackup deletes database q.Database's LTR backup name: its record goes, and the
// instance's repository keeps the backup only while another database's record still keeps
// it (the agent's next expiry removes it). A long-running operation in Azure, finished when
// accepted here; nil when there was nothing to delete.
func (c *Controller) DeleteLTRBackup(ctx context.Context, q LTRQuery, name string) (*Operation, error) {
	b, key, err := c.findLTRBackup(ctx, q, name)
	if errors.Is(err, fault.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m := &resource.ManagedInstance{Subscription: b.Subscription, ResourceGroup: b.ResourceGroup, Name: b.InstanceName, Location: b.Location, UID: b.InstanceUID}
	op := c.newOp(ctx, KindDeleteLTRBackup, "DeleteLongTermRetentionManagedInstanceBackup", b.Subscription, m, resource.LTRBackupID(b, true))
	now := time.Now().UTC()
	op.Database, op.ResourceGroup = b.Database, b.ResourceGroup
	done := 100.0
	op.Status, op.EndTime, op.Percent = arm.StatusSucceeded, &now, &done
	if err := c.st.Txn(ctx, nil, []store.Op{{Key: key, Delete: true}, store.PutOp(opKey(op.ID), op), store.PutOp(activity.Key(op.ID), activityOf(op))}); err != nil {
		return nil, internalError(err)
	}
	if err := c.syncKeep(ctx, c.eng, b.Subscription, b.ResourceGroup, b.InstanceName, b.InstanceUID, now); err != nil {
		c.log.Warn("long-term retention: update the backups kept", "instance", b.InstanceName, "err", err)
	}
	c.log.Info("long-term retention backup deleted", "instance", b.InstanceName, "database", b.Database, "label", b.Label, "id", op.ID)
	return op, nil
}

// keepOf is what the LTR records bs keep of the instance with uid at now: each label until
// the longest of its records, in label order.
func keepOf(bs []resource.LTRBackup, uid string, now time.Time) []ltr.Keep {
	until := map[string]time.Time{}
	for _, b := range bs {
		if b.InstanceUID == uid && b.Expires.After(now) && b.Expires.After(until[b.Label]) {
			until[b.Label] = b.Expires
		}
	}
	var out []ltr.Keep
	for l, u := range until {
		out = append(out, ltr.Keep{Label: l, Until: u.UTC()})
	}
	slices.SortFunc(out, func(a, b ltr.Keep) int { return strings.Compare(a.Label, b.Label) })
	return out
}

// syncKeep writes into the instance's record (and so its desired state) the labels its LTR
// records keep, when they differ from what it carries.
func (c *Controller) syncKeep(ctx context.Context, e *engine.Engine, sub, rg, name, uid string, now time.Time) error {
	for attempt := 0; attempt < 3; attempt++ {
		m, rev, err := c.getInstance(ctx, sub, rg, name)
		if errors.Is(err, fault.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if m.UID != uid {
			return nil
		}
		bs, _, err := c.ltrRecords(ctx)
		if err != nil {
			return err
		}
		keep := keepOf(bs, uid, now)
		if slices.Equal(keep, m.BackupKeep) {
			return nil
		}
		m.BackupKeep = keep
		err = e.WriteRecord(ctx, miKey(sub, rg, name), rev, m)
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return store.ErrConflict
}

// ltrTick, on the leader with the backup schedule, judges the full backups its instances'
// agents report since the last tick with their databases' LTR policies, records the ones
// kept, removes records whose time has passed, marks those of dropped databases, and keeps
// every instance's record carrying its kept labels.
func (c *Controller) ltrTick(ctx context.Context, e *engine.Engine) {
	if err := c.ltrJudge(ctx, e, time.Now().UTC()); err != nil {
		c.log.Warn("long-term retention", "err", err)
	}
}

func (c *Controller) ltrJudge(ctx context.Context, e *engine.Engine, now time.Time) error {
	_, kvs, err := e.Store().Snapshot(ctx, "mi/", "observed/", "backupPolicies/long/", resource.LTRBackupPrefix, "ltrCursor/")
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	var ms []resource.ManagedInstance
	statuses := map[string]instance.Status{}
	policies := map[string]map[string]resource.LongTermRetention{}
	records := map[string]resource.LTRBackup{}
	cursors := map[string]resource.LTRCursor{}
	for _, kv := range kvs {
		var err error
		switch {
		case strings.HasPrefix(kv.Key, "mi/"):
			var m resource.ManagedInstance
			err = json.Unmarshal(kv.Value, &m)
			ms = append(ms, m)
		case strings.HasPrefix(kv.Key, "observed/"):
			var st instance.Status
			err = json.Unmarshal(kv.Value, &st)
			statuses[kv.Key] = st
		case strings.HasPrefix(kv.Key, "backupPolicies/long/"):
			var p resource.LongTermRetention
			err = json.Unmarshal(kv.Value, &p)
			if policies[p.InstanceUID] == nil {
				policies[p.InstanceUID] = map[string]resource.LongTermRetention{}
			}
			policies[p.InstanceUID][p.Database] = p
		case strings.HasPrefix(kv.Key, resource.LTRBackupPrefix):
			var b resource.LTRBackup
			err = json.Unmarshal(kv.Value, &b)
			records[kv.Key] = b
		default:
			var cur resource.LTRCursor
			err = json.Unmarshal(kv.Value, &cur)
			cursors[strings.TrimPrefix(kv.Key, "ltrCursor/")] = cur
		}
		if err != nil {
			return fmt.Errorf("decode %s: %w", kv.Key, err)
		}
	}
	var ops []store.Op
	live := map[string]bool{}
	for i := range ms {
		m := &ms[i]
		live[m.UID] = true
		st, ok := statuses[instance.StatusKey(m.Location, m.UID)]
		if !ok || st.Backup == nil || st.Backup.CheckedAt.IsZero() {
			continue
		}
		dbs := map[string]instance.DB{}
		for _, d := range st.Databases {
			dbs[d.Name] = d
		}
		// Records of a database that is gone: dropped (its drop, when the agent found it).
		for key, b := range records {
			if b.InstanceUID != m.UID || !b.DatabaseDeleted.IsZero() || st.Databases == nil {
				continue
			}
			if _, there := dbs[b.Database]; there {
				continue
			}
			b.DatabaseDeleted = now
			for _, d := range st.Dropped {
				if d.Name == b.Database && d.Deleted.After(b.BackupTime) && d.Deleted.Before(b.DatabaseDeleted) {
					b.DatabaseDeleted = d.Deleted.UTC()
				}
			}
			records[key] = b
			ops = append(ops, store.PutOp(key, b))
		}
		ps := policies[m.UID]
		if len(ps) == 0 {
			continue
		}
		cur := cursors[m.UID]
		if cur.Last == nil {
			cur.Last = map[string]time.Time{}
		}
		moved := false
		for _, bk := range st.Backup.Backups {
			if bk.Type != instance.BackupFull {
				continue
			}
			for db, p := range ps {
				prev, seen := cur.Last[db]
				if seen && !bk.Stop.After(prev) || !seen && !bk.Stop.After(p.UpdatedAt) {
					continue
				}
				if d, there := dbs[db]; !there || d.Created.After(bk.Start) {
					continue // not in this backup
				}
				cur.Last[db], moved = bk.Stop.UTC(), true
				if !seen {
					prev = time.Time{}
				}
				until, keep := ltr.Classify(p.Policy(), prev, bk.Stop)
				if !keep || !until.After(now) {
					continue
				}
				b := resource.LTRBackup{Subscription: m.Subscription, ResourceGroup: m.ResourceGroup, Location: m.Location,
					InstanceName: m.Name, InstanceUID: m.UID, InstanceCreated: m.CreatedAt.UTC(), Database: db, Label: bk.Label,
					BackupTime: bk.Stop.UTC(), Expires: until.UTC(), Redundancy: m.StorageRedundancy()}
				key := resource.LTRBackupKey(m.UID, db, bk.Label)
				records[key] = b
				ops = append(ops, store.PutOp(key, b))
				c.log.Info("long-term retention keeps a backup", "instance", m.Name, "database", db, "label", bk.Label, "until", until)
			}
		}
		if moved {
			ops = append(ops, store.PutOp(resource.LTRCursorKey(m.UID), cur))
		}
	}
	for key, b := range records {
		if !b.Expires.After(now) {
			ops = append(ops, store.Op{Key: key, Delete: true})
			delete(records, key)
			c.log.Info("long-term retention backup expired", "instance", b.InstanceName, "database", b.Database, "label", b.Label)
		}
	}
	for uid := range cursors {
		if !live[uid] {
			ops = append(ops, store.Op{Key: resource.LTRCursorKey(uid), Delete: true})
		}
	}
	if len(ops) > 0 {
		if err := e.Store().Txn(ctx, nil, ops); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	all := make([]resource.LTRBackup, 0, len(records))
	for _, b := range records {
		all = append(all, b)
	}
	for i := range ms {
		m := &ms[i]
		if !slices.Equal(keepOf(all, m.UID, now), m.BackupKeep) {
			if err := c.syncKeep(ctx, e, m.Subscription, m.ResourceGroup, m.Name, m.UID, now); err != nil {
				c.log.Warn("long-term retention: update the backups kept", "instance", m.Name, "err", err)
			}
		}
	}
	return nil
}

// restoreLTRBackup starts restoring long-term retention backup p.LongTermRetentionBackupResourceID
// as the new database db of m: the database as it was at the end of that backup. The backup's
// instance must be one of m's region the caller can read, whose repository holds it.
func (c *Controller) restoreLTRBackup(ctx context.Context, m *resource.ManagedInstance, db string, p resource.DatabaseProperties) (*Operation, *resource.DatabaseJSON, error) {
	if p.LongTermRetentionBackupResourceID == "" {
		return nil, nil, fault.Invalid("InvalidRestoreParameters",
			"createMode RestoreLongTermRetentionBackup needs properties.longTermRetentionBackupResourceId: the resource id of a long-term retention backup (GET .../longTermRetentionManagedInstanceBackups lists them).")
	}
	ref, err := resource.ParseLTRBackupID(p.LongTermRetentionBackupResourceID)
	if err != nil {
		return nil, nil, fault.Invalid("InvalidLongTermRetentionBackupResourceId", "longTermRetentionBackupResourceId: %v.", err)
	}
	q := LTRQuery{Subscription: ref.Subscription, ResourceGroup: ref.ResourceGroup, Location: ref.Location, Instance: ref.Instance, Database: ref.Database}
	b, _, err := c.findLTRBackup(ctx, q, ref.InstanceUID+";"+ref.Label)
	if err != nil {
		return nil, nil, err
	}
	src, _, err := c.readableInstance(ctx, b.Subscription, b.ResourceGroup, b.InstanceName)
	if errors.Is(err, fault.ErrNotFound) {
		return nil, nil, resource.NotFound(resource.TypeLongTermRetentionBackup, ref.InstanceUID+";"+ref.Label)
	}
	if err != nil {
		return nil, nil, err
	}
	if src.UID != b.InstanceUID {
		return nil, nil, fault.New(fault.Conflict, "LongTermRetentionBackupNotRestorable",
			"The long-term retention backup's instance '%s' was deleted: Fog restores LTR backups only from an instance that still exists.", b.InstanceName)
	}
	if !strings.EqualFold(src.Location, m.Location) {
		return nil, nil, fault.Invalid("CrossRegionRestoreNotSupported",
			"The long-term retention backup is in %s and managed instance '%s' in %s: restore it into an instance of %s.", src.Location, m.Name, m.Location, src.Location)
	}
	for _, d := range c.refresh(ctx, m) {
		if d.Name == db {
			return nil, nil, fault.New(fault.Conflict, "DatabaseAlreadyExists",
				"Database '%s' already exists on managed instance '%s'; a restore makes a new database: choose another name.", db, m.Name)
		}
	}
	cmd := instance.Command{Kind: instance.CmdRestoreDatabase, Database: db, SourceDatabase: b.Database, Time: b.BackupTime.UTC(), BackupSet: b.Label}
	if src.UID != m.UID {
		cmd.SourceInstanceUID = src.UID
	}
	return c.databaseCommand(ctx, m, KindRestoreDatabase, "RestoreManagedDatabase", cmd)
}
