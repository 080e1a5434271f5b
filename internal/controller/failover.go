package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// Bounds of the failover steps. A planned failover gives up (and rolls back, losing nothing)
// when the old primary does not shut down, or the secondary does not receive its last WAL,
// within these.
const (
	fenceTimeout      = 30 * time.Second
	promoteTimeout    = 30 * time.Second
	forcedFenceWait   = 2 * time.Second
	rejoinTimeout     = 90 * time.Second
	agentLeaseTimeout = 15 * time.Second
)

// stepGroup applies fn to the stored group and writes it with both members' specs, retrying
// when someone else wrote in between.
func (c *Controller) stepGroup(ctx context.Context, name string, fn func(g *FailoverGroup)) (*FailoverGroup, [2]int64, error) {
	for {
		var g FailoverGroup
		rev, err := store.Get(ctx, c.st, fogKey(name), &g)
		if err != nil {
			return nil, [2]int64{}, err
		}
		fn(&g)
		gens, aerr := c.writeGroupGens(ctx, &g, rev)
		if aerr == nil {
			return &g, gens, nil
		}
		if aerr.Code != "InstanceFailoverGroupBusy" || ctx.Err() != nil {
			return nil, gens, aerr
		}
	}
}

// waitSide waits until side's observed state satisfies ok.
func (c *Controller) waitSide(ctx context.Context, s GroupSide, timeout time.Duration, ok func(st instance.Status) bool) (instance.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	key := instance.StatusKey(s.Location, s.InstanceUID)
	var st instance.Status
	err := c.waitFor(ctx, key, func() (bool, error) {
		st = instance.Status{}
		if _, err := store.Get(ctx, c.st, key, &st); err != nil && !errors.Is(err, store.ErrNotFound) {
			return false, err
		}
		return ok(st), nil
	})
	return st, err
}

func fresh(st instance.Status) bool { return time.Since(st.Heartbeat) < agentLeaseTimeout }

func streaming(st instance.Status) bool {
	return st.Phase == instance.PhaseReady && st.Role == instance.RoleStandby && st.Replication != nil && st.Replication.ReceiverStatus == "streaming"
}

func hasSlot(st instance.Status, slot string) bool {
	if st.Replication == nil {
		return false
	}
	for _, s := range st.Replication.Slots {
		if s.Name == slot {
			return true
		}
	}
	return false
}

// endGroupOp clears the group's operation mark.
func (c *Controller) endGroupOp(ctx context.Context, name, opID string) {
	ctx = context.WithoutCancel(ctx)
	_, _ = store.Update(ctx, c.st, fogKey(name), func(g *FailoverGroup) error {
		if g.ActiveOperation == opID {
			g.ActiveOperation, g.OperationKind = "", ""
		}
		return nil
	})
}

func (c *Controller) setPercent(ctx context.Context, id string, p float64) {
	_, _ = store.Update(ctx, c.st, opKey(id), func(o *Operation) error { o.Percent = &p; return nil })
}

func cannotFailover(format string, args ...any) *arm.Error {
	return arm.BadRequest("ManagedInstanceGeoFailoverCannotBeExecuted", "Managed Instance geo-failover cannot be executed at this time. Reason: '%s'.", fmt.Sprintf(format, args...))
}

func (c *Controller) driveCreateGroup(ctx context.Context, op *Operation) *arm.Error {
	defer c.endGroupOp(ctx, op.ResourceID, op.ID)
	var g FailoverGroup
	if _, err := store.Get(ctx, c.st, fogKey(op.ResourceID), &g); err != nil {
		return internalError(err)
	}
	prim, sec := g.Sides[g.Primary], g.Sides[g.Secondary()]
	// The primary first: its replication role and the secondary's slot must exist before
	// the secondary asks for a base backup.
	slot := instance.SlotName(sec.InstanceUID)
	if _, err := c.waitSide(ctx, prim, 2*time.Minute, func(st instance.Status) bool {
		return st.Phase == instance.PhaseReady && st.Role == instance.RolePrimary && hasSlot(st, slot)
	}); err != nil {
		return cannotFailover("the primary %s did not become ready for replication: %v", prim.InstanceName, err)
	}
	gp, _, err := c.stepGroup(ctx, g.Name, func(g *FailoverGroup) {
		g.Members[g.Secondary()] = Member{Role: instance.RoleStandby, SeedGeneration: g.SeedGeneration}
	})
	if err != nil {
		return internalError(err)
	}
	var lastPct float64 = -1
	_, err = c.waitSide(ctx, sec, 24*time.Hour, func(st instance.Status) bool {
		if st.SeedPercent != nil && *st.SeedPercent != lastPct {
			lastPct = *st.SeedPercent
			c.setPercent(ctx, op.ID, lastPct)
		}
		return st.SeededGeneration >= gp.SeedGeneration && streaming(st)
	})
	if err != nil {
		return c.waitErr(op, err)
	}
	c.log.Info("failover group replicating", "group", g.Name, "primary", prim.InstanceName, "secondary", sec.InstanceName)
	return nil
}

func (c *Controller) driveUpdateGroup(ctx context.Context, op *Operation) *arm.Error {
	defer c.endGroupOp(ctx, op.ResourceID, op.ID)
	return nil
}

func (c *Controller) driveDeleteGroup(ctx context.Context, op *Operation) *arm.Error {
	var g FailoverGroup
	rev, err := store.Get(ctx, c.st, fogKey(op.ResourceID), &g)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return internalError(err)
	}
	// Both instances leave the group: the secondary is promoted to a read-write instance of
	// its own, the primary drops the slot; the group record stays (Deleting) until both have.
	var ms [2]resource.ManagedInstance
	var conds []store.Cond
	var ops []store.Op
	for i, s := range g.Sides {
		r, err := store.Get(ctx, c.st, s.InstanceKey(), &ms[i])
		if err != nil {
			return internalError(err)
		}
		if ms[i].FailoverGroup == g.Name {
			ms[i].FailoverGroup = ""
			conds = append(conds, store.Cond{Key: s.InstanceKey(), Rev: r})
			ops = append(ops, store.PutOp(s.InstanceKey(), ms[i]))
		}
	}
	sconds, sops, gens, err := c.specWrites(ctx, c.baseSpec(&ms[0]), c.baseSpec(&ms[1]))
	if err != nil {
		return internalError(err)
	}
	conds = append(append(conds, store.Cond{Key: fogKey(g.Name), Rev: rev}), sconds...)
	if err := c.st.Txn(ctx, conds, append(ops, sops...)); err != nil {
		return internalError(fmt.Errorf("leave group: %w", err)) // the driver is retried after a restart
	}
	for i, s := range g.Sides {
		gen := gens[i]
		if _, err := c.waitSide(ctx, s, 2*time.Minute, func(st instance.Status) bool {
			return st.ObservedGeneration >= gen && st.Phase == instance.PhaseReady && st.Role == instance.RolePrimary
		}); err != nil {
			return c.waitErr(op, fmt.Errorf("instance %s did not leave the group: %w", s.InstanceName, err))
		}
	}
	if err := c.st.Txn(ctx, nil, []store.Op{{Key: fogKey(g.Name), Delete: true}}); err != nil {
		return internalError(err)
	}
	c.log.Info("failover group deleted", "group", g.Name)
	return nil
}

// failoverStart reads what a failover starts from: the group, which side is which, and both
// sides' observed state.
func (c *Controller) failoverStart(ctx context.Context, op *Operation) (g FailoverGroup, oldI, newI int, st [2]instance.Status, err error) {
	if _, err = store.Get(ctx, c.st, fogKey(op.ResourceID), &g); err != nil {
		return
	}
	return g, g.Primary, g.Secondary(), c.statuses(ctx, &g), nil
}

func (c *Controller) drivePlannedFailover(ctx context.Context, op *Operation) *arm.Error {
	defer c.endGroupOp(ctx, op.ResourceID, op.ID)
	g, oldI, newI, st, err := c.failoverStart(ctx, op)
	if err != nil {
		return internalError(err)
	}
	old, nw := g.Sides[oldI], g.Sides[newI]
	if !streaming(st[newI]) {
		return cannotFailover("the secondary %s is not streaming from the primary (replicationState is not CATCH_UP)", nw.InstanceName)
	}
	if !fresh(st[oldI]) || st[oldI].Phase != instance.PhaseReady {
		return cannotFailover("the primary %s is not reachable; use forceFailoverAllowDataLoss", old.InstanceName)
	}
	start := time.Now()
	// A checkpoint while the primary still serves writes keeps the shutdown checkpoint, and
	// so the time writes are stopped, short.
	if err := c.command(ctx, old, instance.CmdCheckpoint, 30*time.Second); err != nil {
		return cannotFailover("checkpoint on %s: %v", old.InstanceName, err)
	}
	seeded := st[oldI].SeededGeneration
	gf, _, err := c.stepGroup(ctx, g.Name, func(g *FailoverGroup) {
		g.Epoch++
		g.Switching = true
		g.Members[oldI] = Member{Role: instance.RoleStandby, Paused: true, SeedGeneration: seeded}
	})
	if err != nil {
		return internalError(err)
	}
	epoch := gf.Epoch
	fenced, err := c.waitSide(ctx, old, fenceTimeout, func(s instance.Status) bool {
		return s.Phase == instance.PhaseStopped && s.Epoch == epoch && s.ShutdownLSN != ""
	})
	if err != nil {
		c.rollbackPlanned(ctx, g.Name, oldI, newI, seeded)
		return arm.BadRequest("PlannedFailoverTimedOut", "User invoked planned failover, and it timed out: the primary %s did not shut down cleanly within %s (%v). Nothing was lost; it is the primary again.", old.InstanceName, fenceTimeout, err)
	}
	fencedAt := time.Now()
	_, _, err = c.stepGroup(ctx, g.Name, func(g *FailoverGroup) {
		g.Members[newI] = Member{Role: instance.RolePrimary, PromoteAfterLSN: fenced.ShutdownLSN}
	})
	if err != nil {
		return internalError(err)
	}
	promoted, err := c.waitSide(ctx, nw, promoteTimeout, func(s instance.Status) bool {
		return (s.Role == instance.RolePrimary && s.Epoch == epoch) || strings.Contains(s.Error, "not caught up")
	})
	if err != nil || promoted.Role != instance.RolePrimary {
		reason := fmt.Sprint(err)
		if err == nil {
			reason = promoted.Error
		}
		c.rollbackPlanned(ctx, g.Name, oldI, newI, seeded)
		return arm.BadRequest("PlannedFailoverTimedOut", "User invoked planned failover, and it timed out: the secondary %s did not take over (%s). Nothing was lost; %s is the primary again.", nw.InstanceName, reason, old.InstanceName)
	}
	promotedAt := time.Now()
	_, _, err = c.stepGroup(ctx, g.Name, func(g *FailoverGroup) {
		g.Primary, g.Switching = newI, false
		g.Members[newI] = Member{Role: instance.RolePrimary}
		g.event("Failover", fmt.Sprintf("planned failover: %s is primary (epoch %d); writes were held %s", nw.InstanceName, epoch, time.Since(fencedAt).Round(time.Millisecond)), nil)
	})
	if err != nil {
		return internalError(err)
	}
	c.log.Info("planned failover: new primary serving", "group", g.Name, "primary", nw.InstanceName, "epoch", epoch,
		"fence", fencedAt.Sub(start).Round(time.Millisecond), "promote", promotedAt.Sub(fencedAt).Round(time.Millisecond))
	c.rejoin(ctx, g.Name, oldI, newI, seeded, false)
	return nil
}

// rollbackPlanned makes the old primary the primary again in a new epoch: its clean shutdown
// lost nothing, and the secondary, if it did not promote, still follows it.
func (c *Controller) rollbackPlanned(ctx context.Context, name string, oldI, newI int, seeded int64) {
	ctx = context.WithoutCancel(ctx)
	_, _, err := c.stepGroup(ctx, name, func(g *FailoverGroup) {
		g.Epoch++
		g.Switching = false
		g.Members[oldI] = Member{Role: instance.RolePrimary}
		g.Members[newI] = Member{Role: instance.RoleStandby, SeedGeneration: g.Members[newI].SeedGeneration}
		g.event("FailoverRolledBack", "planned failover rolled back; the primary is unchanged", nil)
	})
	if err != nil {
		c.log.Error("roll back planned failover", "group", name, "err", err)
	}
}

// rejoin makes the old primary a standby of the new one, once the new primary has its slot
// (slots do not follow a promotion), and waits for it to stream.
func (c *Controller) rejoin(ctx context.Context, name string, oldI, newI int, seeded int64, rewind bool) *instance.Status {
	var g FailoverGroup
	if _, err := store.Get(ctx, c.st, fogKey(name), &g); err != nil {
		return nil
	}
	old, nw := g.Sides[oldI], g.Sides[newI]
	slot := instance.SlotName(old.InstanceUID)
	if _, err := c.waitSide(ctx, nw, 30*time.Second, func(s instance.Status) bool { return hasSlot(s, slot) }); err != nil {
		c.log.Warn("new primary has no slot for the old one yet", "group", name, "err", err)
	}
	_, _, err := c.stepGroup(ctx, name, func(g *FailoverGroup) {
		g.Members[oldI] = Member{Role: instance.RoleStandby, SeedGeneration: seeded, Rewind: rewind}
	})
	if err != nil {
		c.log.Error("rejoin", "group", name, "err", err)
		return nil
	}
	cur, _ := c.waitSide(ctx, old, time.Second, func(instance.Status) bool { return true })
	if !fresh(cur) {
		c.log.Warn("old primary's agent is not answering; it rejoins when it returns", "group", name, "instance", old.InstanceName)
		return nil
	}
	st, err := c.waitSide(ctx, old, rejoinTimeout, func(s instance.Status) bool { return streaming(s) })
	if err != nil {
		c.log.Warn("old primary did not rejoin in time; it keeps trying", "group", name, "instance", old.InstanceName, "err", err)
		return &st
	}
	c.log.Info("old primary follows the new one", "group", name, "instance", old.InstanceName)
	return &st
}

func (c *Controller) driveForcedFailover(ctx context.Context, op *Operation) *arm.Error {
	defer c.endGroupOp(ctx, op.ResourceID, op.ID)
	g, oldI, newI, st, err := c.failoverStart(ctx, op)
	if err != nil {
		return internalError(err)
	}
	old, nw := g.Sides[oldI], g.Sides[newI]
	if !fresh(st[newI]) || st[newI].Role != instance.RoleStandby {
		return cannotFailover("the secondary %s is not available", nw.InstanceName)
	}
	seeded := st[oldI].SeededGeneration
	start := time.Now()
	gf, _, err := c.stepGroup(ctx, g.Name, func(g *FailoverGroup) {
		g.Epoch++
		g.Switching = true
		g.Members[oldI] = Member{Role: instance.RoleStandby, Paused: true, StopImmediately: true, Rewind: true, SeedGeneration: seeded}
	})
	if err != nil {
		return internalError(err)
	}
	epoch := gf.Epoch
	// Fence the old primary if its agent answers. Behind the listener it is fenced already:
	// the gateway routes only to the primary of the current epoch.
	if fresh(st[oldI]) {
		if _, err := c.waitSide(ctx, old, forcedFenceWait, func(s instance.Status) bool {
			return s.Epoch == epoch && s.Phase == instance.PhaseStopped
		}); err != nil {
			c.log.Warn("old primary not confirmed fenced; promoting anyway (the listener routes by epoch)", "group", g.Name, "err", err)
		}
	}
	_, _, err = c.stepGroup(ctx, g.Name, func(g *FailoverGroup) {
		g.Members[newI] = Member{Role: instance.RolePrimary}
	})
	if err != nil {
		return internalError(err)
	}
	promoted, err := c.waitSide(ctx, nw, promoteTimeout, func(s instance.Status) bool {
		return s.Role == instance.RolePrimary && s.Epoch == epoch
	})
	if err != nil {
		return arm.Errorf(http.StatusInternalServerError, "OperationTimedOut", "The secondary %s was not promoted within %s: %v.", nw.InstanceName, promoteTimeout, err)
	}
	_, _, err = c.stepGroup(ctx, g.Name, func(g *FailoverGroup) {
		g.Primary, g.Switching = newI, false
		g.LastForced = &resource.ForcedFailover{Time: time.Now().UTC(), Epoch: epoch}
		g.event("ForcedFailover", fmt.Sprintf("forced failover: %s is primary (epoch %d), promoted from %s", nw.InstanceName, epoch, promoted.PromotedFrom), nil)
	})
	if err != nil {
		return internalError(err)
	}
	c.log.Info("forced failover: new primary serving", "group", g.Name, "primary", nw.InstanceName, "epoch", epoch, "took", time.Since(start).Round(time.Millisecond))
	if rs := c.rejoin(ctx, g.Name, oldI, newI, seeded, true); rs != nil {
		c.recordLost(ctx, g.Name)
	}
	return nil
}

// recordLost copies what a rewind reported it discarded into the group's last forced
// failover, once, with an event.
func (c *Controller) recordLost(ctx context.Context, name string) {
	var g FailoverGroup
	if _, err := store.Get(ctx, c.st, fogKey(name), &g); err != nil || g.LastForced == nil || g.LastForced.LostKnown {
		return
	}
	old := g.Sides[g.Secondary()]
	var st instance.Status
	if _, err := store.Get(ctx, c.st, instance.StatusKey(old.Location, old.InstanceUID), &st); err != nil {
		return
	}
	if st.Rewound == nil || st.Rewound.Epoch != g.LastForced.Epoch {
		return
	}
	lost := &resource.LostWAL{FromLSN: st.Rewound.FromLSN, ToLSN: st.Rewound.ToLSN, Bytes: st.Rewound.Bytes, SavedIn: st.Rewound.SavedIn}
	_, _ = store.Update(ctx, c.st, fogKey(name), func(g *FailoverGroup) error {
		if g.LastForced == nil || g.LastForced.LostKnown {
			return nil
		}
		g.LastForced.LostWAL, g.LastForced.LostKnown = lost, true
		g.event("LostWAL", fmt.Sprintf("the forced failover of epoch %d discarded %d bytes of WAL (%s to %s) on %s", g.LastForced.Epoch, lost.Bytes, lost.FromLSN, lost.ToLSN, old.InstanceName), lost)
		return nil
	})
	c.log.Warn("forced failover lost WAL", "group", name, "from", lost.FromLSN, "to", lost.ToLSN, "bytes", lost.Bytes)
}

// command sends a one-shot command to a side's agent and waits for it.
func (c *Controller) command(ctx context.Context, s GroupSide, kind string, timeout time.Duration) error {
	got, err := c.runCommand(ctx, s.Location, instance.Command{InstanceUID: s.InstanceUID, Kind: kind}, timeout)
	if err != nil {
		return err
	}
	if got.Error != "" {
		return errors.New(got.Error)
	}
	return nil
}

// monitor looks after groups between operations: it records what a forced failover lost once
// the old primary's rewind reports it, and reseeds a secondary whose slot the primary
// invalidated (max_slot_wal_keep_size), which leaves it SUSPENDED until then.
func (c *Controller) monitor(ctx context.Context) {
	groups, err := store.List[FailoverGroup](ctx, c.st, "fog/")
	if err != nil {
		return
	}
	for _, g := range groups {
		if g.ActiveOperation != "" || g.Deleting {
			continue
		}
		c.recordLost(ctx, g.Name)
		st := c.statuses(ctx, &g)
		prim, sec := st[g.Primary], st[g.Secondary()]
		slot := instance.SlotName(g.Sides[g.Secondary()].InstanceUID)
		lost := false
		if prim.Replication != nil {
			for _, s := range prim.Replication.Slots {
				lost = lost || (s.Name == slot && s.WALStatus == "lost")
			}
		}
		// The primary's view must postdate the last seed, which replaced the lost slot.
		if lost && sec.SeededGeneration >= g.Members[g.Secondary()].SeedGeneration && prim.Heartbeat.After(sec.SeededAt) {
			c.log.Warn("secondary fell too far behind (slot invalidated); reseeding it", "group", g.Name, "secondary", g.Sides[g.Secondary()].InstanceName)
			_, _, err := c.stepGroup(ctx, g.Name, func(g *FailoverGroup) {
				g.SeedGeneration = newSeedGeneration(g.SeedGeneration)
				g.Members[g.Secondary()].SeedGeneration = g.SeedGeneration
				g.event("Reseed", "the secondary fell further behind than max_slot_wal_keep_size allows; reseeding it", nil)
			})
			if err != nil {
				c.log.Error("reseed", "group", g.Name, "err", err)
			}
		}
	}
}
