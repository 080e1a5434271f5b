package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

func cannotFailover(format string, args ...any) error {
	return fault.Invalid("ManagedInstanceGeoFailoverCannotBeExecuted", "Managed Instance geo-failover cannot be executed at this time. Reason: '%s'.", fmt.Sprintf(format, args...))
}

func (c *Controller) driveCreateGroup(ctx context.Context, op *Operation) error {
	var g FailoverGroup
	if _, err := store.Get(ctx, c.st, fogKey(op.ResourceID), &g); err != nil {
		return internalError(err)
	}
	prim, sec := g.Sides[g.Primary], g.Sides[g.Secondary()]
	// The primary first: its replication role and the secondary's slot must exist before
	// the secondary asks for a base backup.
	slot := pgtypes.SlotName(sec.InstanceUID)
	if _, err := c.waitSide(ctx, prim, 2*time.Minute, func(st instance.Status) bool {
		return st.Phase == instance.PhaseReady && st.Role == instance.RolePrimary && hasSlot(st, slot)
	}); err != nil {
		return cannotFailover("the primary %s did not become ready for replication: %v", prim.InstanceName, err)
	}
	gp, err := c.advance(ctx, op, func(g *FailoverGroup, next *Operation) {
		g.Members[g.Secondary()] = Member{Role: instance.RoleStandby, SeedGeneration: g.SeedGeneration}
		next.Step = "seeding"
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
	// The primary's own view must show the standby streaming too, so that a GET right after
	// the operation reports CATCH_UP (GETs answer from observed state and never ask an agent).
	if _, err := c.waitSide(ctx, prim, 30*time.Second, func(st instance.Status) bool {
		return primarySees(gp, st, true) && st.Replication != nil
	}); err != nil {
		c.log.Warn("the primary does not report the standby streaming yet", "group", g.Name, "err", err)
	}
	c.log.Info("failover group replicating", "group", g.Name, "primary", prim.InstanceName, "secondary", sec.InstanceName)
	return nil
}

func (c *Controller) driveUpdateGroup(ctx context.Context, op *Operation) error {
	return nil
}

func (c *Controller) driveDeleteGroup(ctx context.Context, op *Operation) error {
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
	leaving := *op
	leaving.Step = "leaving"
	leaving.mark(leaving.Step)
	ops = append(ops, store.PutOp(opKey(op.ID), leaving))
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
