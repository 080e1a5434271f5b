package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// createGroup seeds the secondary of a group the API recorded. The primary goes first: its
// replication role and the secondary's slot must exist before the secondary asks for a base
// backup.
var createGroup = &Table{Kind: KindCreateGroup, Steps: []Step{
	{
		Name: StepAccepted, Writes: "the operation, the group, members' desired state (the primary keeps a slot)",
		Waits: "wait for the primary to keep the secondary's slot", RollsBack: "Failed; the group stays for a delete",
		OnFail: Fail,
		wait: func(ctx context.Context, x *exec) error {
			g := &x.g
			prim, sec := g.Sides[g.Primary], g.Sides[g.Secondary()]
			slot := pgtypes.SlotName(sec.InstanceUID)
			if _, err := x.e.waitSide(ctx, prim, 2*time.Minute, func(st instance.Status) bool {
				return st.Phase == instance.PhaseReady && st.Role == instance.RolePrimary && hasSlot(st, slot)
			}); err != nil {
				return giveUp(cannotFailover("the primary %s did not become ready for replication: %v", prim.InstanceName, err))
			}
			return nil
		},
	},
	{
		Name: StepSeeding, Writes: "the secondary told to seed", Waits: "wait for the seed and for streaming, as both sides see it",
		RollsBack: "Failed; the group stays for a delete", OnFail: Fail,
		write: func(x *exec, g *FailoverGroup, next *Operation) {
			g.Members[g.Secondary()] = Member{Role: instance.RoleStandby, SeedGeneration: g.SeedGeneration}
		},
		wait: func(ctx context.Context, x *exec) error {
			g := &x.g
			prim, sec := g.Sides[g.Primary], g.Sides[g.Secondary()]
			var lastPct float64 = -1
			_, err := x.e.waitSide(ctx, sec, 24*time.Hour, func(st instance.Status) bool {
				if st.SeedPercent != nil && *st.SeedPercent != lastPct {
					lastPct = *st.SeedPercent
					x.e.setPercent(ctx, x.op.ID, lastPct)
				}
				return st.SeededGeneration >= g.SeedGeneration && Streaming(st)
			})
			if err != nil {
				return x.e.WaitErr(x.op, err)
			}
			// The primary's own view must show the standby streaming too, so that a GET right
			// after the operation reports CATCH_UP (GETs answer from observed state and never
			// ask an agent).
			if _, err := x.e.waitSide(ctx, prim, 30*time.Second, func(st instance.Status) bool {
				return PrimarySees(g, st, true) && st.Replication != nil
			}); err != nil {
				x.e.log.Warn("the primary does not report the standby streaming yet", "group", g.Name, "err", err)
			}
			x.e.log.Info("failover group replicating", "group", g.Name, "primary", prim.InstanceName, "secondary", sec.InstanceName)
			return nil
		},
	},
}}

// deleteGroup has both instances leave the group: the secondary is promoted to a read-write
// instance of its own, the primary drops the slot; the group record stays (Deleting) until
// both have.
var deleteGroup = &Table{Kind: KindDeleteGroup, goneDone: true, Steps: []Step{
	{
		Name: StepAccepted, Writes: "the operation, the group marked Deleting", Waits: "nothing",
		RollsBack: "Failed; the delete can be sent again", OnFail: Fail,
		wait: func(ctx context.Context, x *exec) error { return nil },
	},
	{
		Name: StepLeaving, Writes: "both members standalone, the instances out of the group, the secondary a backup stanza of its own",
		Waits: "wait for both to run as primaries on their own; remove the group record", RollsBack: "Failed; the delete can be sent again",
		OnFail: Fail, enter: leave,
		wait: func(ctx context.Context, x *exec) error {
			for _, s := range x.g.Sides {
				var spec instance.Spec
				if _, err := store.Get(ctx, x.e.st, instance.SpecKey(s.Location, s.InstanceUID), &spec); err != nil {
					return Internal(err)
				}
				if _, err := x.e.waitSide(ctx, s, 2*time.Minute, func(st instance.Status) bool {
					return st.ObservedGeneration >= spec.Generation && st.Phase == instance.PhaseReady && st.Role == instance.RolePrimary
				}); err != nil {
					return x.e.WaitErr(x.op, fmt.Errorf("instance %s did not leave the group: %w", s.InstanceName, err))
				}
			}
			if err := x.e.st.Txn(ctx, nil, []store.Op{{Key: group.Key(x.g.Name), Delete: true}}); err != nil {
				return Internal(err)
			}
			x.e.log.Info("failover group deleted", "group", x.g.Name)
			return nil
		},
	},
}}

// leave writes, in one transaction with the step's record, both instances out of the group
// and their desired state as instances of their own.
func leave(ctx context.Context, x *exec) error {
	g := &x.g
	rev, err := store.Get(ctx, x.e.st, group.Key(g.Name), g)
	if err != nil {
		return err
	}
	var ms [2]resource.ManagedInstance
	var revs [2]int64
	for i, s := range g.Sides {
		if revs[i], err = store.Get(ctx, x.e.st, s.InstanceKey(), &ms[i]); err != nil {
			return err
		}
	}
	shared := GroupStanza(&ms[0])
	var conds []store.Cond
	var ops []store.Op
	for i, s := range g.Sides {
		if ms[i].FailoverGroup != g.Name {
			continue // left already: this step is being redone
		}
		ms[i].FailoverGroup = ""
		if i == g.Secondary() {
			// The secondary becomes a writable system of its own, with the primary's system
			// identifier: its WAL and backups must not go into the primary's history, so it
			// gets a stanza of its own (docs/backups.md), one it never had.
			ms[i].BackupStanzas++
			stanza, err := resource.NewStanza(ms[i].UID, ms[i].BackupStanzas)
			if err != nil {
				return err
			}
			ms[i].BackupStanza = stanza
		} else if ms[i].BackupStanza == "" {
			// The primary keeps the history it wrote in the group (recorded, since on its
			// own a record without one would read as its UID).
			ms[i].BackupStanza = shared
		}
		conds = append(conds, store.Cond{Key: s.InstanceKey(), Rev: revs[i]})
		ops = append(ops, store.PutOp(s.InstanceKey(), ms[i]))
	}
	sconds, sops, _, err := x.e.SpecWrites(ctx, x.e.BaseSpec(&ms[0]), x.e.BaseSpec(&ms[1]))
	if err != nil {
		return err
	}
	conds = append(append(conds, store.Cond{Key: group.Key(g.Name), Rev: rev}), sconds...)
	leaving := *x.op
	leaving.Step = StepLeaving
	leaving.Mark(leaving.Step)
	ops = append(ops, store.PutOp(OpKey(x.op.ID), leaving))
	if err := x.e.st.Txn(ctx, conds, append(ops, sops...)); err != nil {
		return fmt.Errorf("leave group: %w", err) // the runner is retried after a restart
	}
	*x.op = leaving
	return nil
}

// PrimarySees reports whether the primary streams to the secondary (a standby whose WAL was
// removed reconnects and looks like streaming from its own side for a moment).
func PrimarySees(g *FailoverGroup, prim instance.Status, primLive bool) bool {
	if prim.Replication == nil || !primLive {
		return true // the primary's view is unknown; trust the secondary's
	}
	app := pgtypes.SlotName(g.Sides[g.Secondary()].InstanceUID)
	for _, r := range prim.Replication.Replicas {
		if r.AppName == app && r.State == "streaming" {
			return true
		}
	}
	return false
}
