package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fogdb/fog/internal/activity"
	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// retentionPolicies reads the retention policies of instance m's databases: days by database
// name. A database without one keeps resource.DefaultBackupRetentionDays.
func (c *Controller) retentionPolicies(ctx context.Context, m *resource.ManagedInstance) (map[string]int, error) {
	kvs, err := c.st.List(ctx, resource.ShortTermRetentionPrefix(m.UID))
	if err != nil {
		return nil, internalError(fmt.Errorf("read the retention policies of %s: %w", m.Name, err))
	}
	out := make(map[string]int, len(kvs))
	for _, kv := range kvs {
		var p resource.ShortTermRetention
		if err := json.Unmarshal(kv.Value, &p); err != nil {
			return nil, internalError(fmt.Errorf("decode %s: %w", kv.Key, err))
		}
		out[p.Database] = p.RetentionDays
	}
	return out, nil
}

// policyDatabase finds user database db of instance m, as the database's GET does (from the
// observed state), or answers as that GET does when there is none.
func (c *Controller) policyDatabase(ctx context.Context, m *resource.ManagedInstance, db string, fresh bool) ([]instance.DB, error) {
	if resource.IsSystemDatabase(db) {
		return nil, databaseNotFound(m.Name, db)
	}
	st, _ := c.observed(ctx, m)
	dbs := st.Databases
	if fresh && !hasDB(dbs, db) {
		// A write on a database made a moment ago must not miss it because the agent has
		// not published since: ask it (briefly) before answering 404.
		dbs = c.refresh(ctx, m)
	}
	if !hasDB(dbs, db) {
		return nil, databaseNotFound(m.Name, db)
	}
	return dbs, nil
}

func hasDB(dbs []instance.DB, name string) bool {
	for _, d := range dbs {
		if d.Name == name {
			return true
		}
	}
	return false
}

// GetShortTermRetention returns database db's short-term retention policy (policy must be
// "default"); a database without one has Azure's default, 7 days.
func (c *Controller) GetShortTermRetention(ctx context.Context, sub, rg, mi, db, policy string) (resource.ShortTermRetentionPolicyJSON, error) {
	if err := resource.ValidateShortTermRetentionPolicyName(policy, false); err != nil {
		return resource.ShortTermRetentionPolicyJSON{}, err
	}
	vs, err := c.ListShortTermRetention(ctx, sub, rg, mi, db)
	if err != nil {
		return resource.ShortTermRetentionPolicyJSON{}, err
	}
	return vs[0], nil
}

// ListShortTermRetention lists database db's short-term retention policies: the one, default.
func (c *Controller) ListShortTermRetention(ctx context.Context, sub, rg, mi, db string) ([]resource.ShortTermRetentionPolicyJSON, error) {
	m, _, err := c.getInstance(ctx, sub, rg, mi)
	if err != nil {
		return nil, err
	}
	if _, err := c.policyDatabase(ctx, m, db, false); err != nil {
		return nil, err
	}
	policies, err := c.retentionPolicies(ctx, m)
	if err != nil {
		return nil, err
	}
	days, ok := policies[db]
	if !ok {
		days = resource.DefaultBackupRetentionDays
	}
	return []resource.ShortTermRetentionPolicyJSON{resource.ShortTermRetentionView(m.Subscription, m.ResourceGroup, m.Name, db, days)}, nil
}

// PutShortTermRetention sets database db's short-term retention policy from a PUT body, or
// from a PATCH body (patch), which may leave retentionDays out to keep it. Azure answers the
// PUT as a long-running operation (202 and its URLs); Fog's is finished when it is accepted:
// one transaction writes the policy, the instance's retention (the longest of its
// databases', which its backups keep: pgBackRest expires a whole cluster), the instance's
// desired state, which carries that retention to its agent, and the operation, Succeeded.
func (c *Controller) PutShortTermRetention(ctx context.Context, sub, rg, mi, db, policy string, body resource.ShortTermRetentionBody, patch bool) (*Operation, error) {
	if err := resource.ValidateShortTermRetentionPolicyName(policy, true); err != nil {
		return nil, err
	}
	days, sent, err := body.RetentionDays()
	if err != nil {
		return nil, err
	}
	if !sent && !patch {
		return nil, resource.MissingRetentionDays()
	}
	m, err := c.readyInstance(ctx, sub, rg, mi)
	if err != nil {
		return nil, err
	}
	dbs, err := c.policyDatabase(ctx, m, db, true)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(dbs))
	for _, d := range dbs {
		if !resource.IsSystemDatabase(d.Name) {
			names = append(names, d.Name)
		}
	}
	if !sent {
		policies, err := c.retentionPolicies(ctx, m)
		if err != nil {
			return nil, err
		}
		if days, sent = policies[db]; !sent {
			days = resource.DefaultBackupRetentionDays
		}
	}
	id := resource.ShortTermRetentionID(m.Subscription, m.ResourceGroup, m.Name, db)
	op := c.newOp(ctx, KindPutRetention, "AlterManagedDatabase", m.Subscription, m, id)
	op.Database = db
	now := time.Now().UTC()
	done := 100.0
	op.Status, op.EndTime, op.Percent = arm.StatusSucceeded, &now, &done
	rec := resource.ShortTermRetention{InstanceUID: m.UID, Database: db, RetentionDays: days, UpdatedAt: now}
	err = c.writeRetention(ctx, m, func(_ *resource.ManagedInstance, policies map[string]int) int {
		policies[db] = days
		return resource.InstanceRetentionDays(names, policies)
	}, store.PutOp(resource.ShortTermRetentionKey(m.UID, db), rec),
		store.PutOp(opKey(op.ID), op), store.PutOp(activity.Key(op.ID), activityOf(op)))
	if err != nil {
		return nil, err
	}
	c.log.Info("short-term retention set", "database", arm.DatabaseID(m.Subscription, m.ResourceGroup, m.Name, db), "days", days, "id", op.ID)
	return op, nil
}

// writeRetention sets the retention of instance m's backups to what retention computes from
// the instance's current record and its databases' policies, with the extra ops, in one
// transaction with the instance's desired state (engine.WriteRecord), so that the record
// and the agent's spec never disagree. It is conditioned on the record as read: a record
// changed meanwhile (another policy, a backup asked) is read again and the retention
// computed afresh, so that concurrent policies of two databases both count.
func (c *Controller) writeRetention(ctx context.Context, m *resource.ManagedInstance, retention func(cur *resource.ManagedInstance, policies map[string]int) int, extra ...store.Op) error {
	key := miKey(m.Subscription, m.ResourceGroup, m.Name)
	for attempt := 1; ; attempt++ {
		cur, rev, err := c.getInstance(ctx, m.Subscription, m.ResourceGroup, m.Name)
		if err != nil {
			return err
		}
		if cur.UID != m.UID {
			return resource.NotFound(resource.TypeManagedInstance, m.Name)
		}
		policies, err := c.retentionPolicies(ctx, cur)
		if err != nil {
			return err
		}
		cur.BackupRetentionDays = max(retention(cur, policies), resource.MinRetentionDays)
		err = c.eng.WriteRecord(ctx, key, rev, cur, extra...)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, store.ErrConflict):
			return internalError(err)
		case attempt == 3:
			return fault.New(fault.Conflict, "ConflictingServerOperation", "Managed instance '%s' changed while this request ran; retry.", m.Name)
		}
	}
}
