package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/backupsched"
	"github.com/fogdb/fog/internal/engine"
	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/resource"
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
// judges it: whether it is the primary (on its own, or its group's), whether an operation
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
