package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/failpoint"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// Steps a failover operation records (Operation.Step). The table in the package
// documentation says what each writes and what resume and rollback do from it.
const (
	stepAccepted   = ""
	stepFenced     = "fenced"
	stepPromoting  = "promoting"
	stepRouted     = "routed"
	stepRejoining  = "rejoining"
	stepRolledBack = "rolledBack"
)

// errStopping is returned by a driver interrupted by fog stopping; the operation stays
// InProgress and resumes from its recorded step on the next start.
var errStopping = fault.New(fault.Unavailable, "ServiceStopping", "Fog is stopping; the operation resumes when it starts again.")

// stopping reports whether ctx ended because fog is stopping (not because the operation's
// own deadline passed).
func stopping(ctx context.Context) bool {
	return ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled)
}

// advance applies fn to the group and to a copy of the operation record, and writes both, with
// the members' desired state, in one transaction: a step's effect and the record of having
// reached it are never apart. It retries when someone else wrote the group in between.
func (c *Controller) advance(ctx context.Context, op *Operation, fn func(g *FailoverGroup, next *Operation)) (*FailoverGroup, error) {
	for {
		var g FailoverGroup
		rev, err := store.Get(ctx, c.st, fogKey(op.ResourceID), &g)
		if err != nil {
			return nil, err
		}
		next := *op
		next.Timeline = append([]arm.StepTime(nil), op.Timeline...)
		fn(&g, &next)
		next.mark(next.Step)
		_, aerr := c.writeGroupGens(ctx, &g, rev, store.PutOp(opKey(op.ID), next))
		if aerr == nil {
			*op = next
			return &g, nil
		}
		if !errors.Is(aerr, fault.ErrBusy) || ctx.Err() != nil {
			return nil, aerr
		}
	}
}

// sides returns the group, the side the operation makes primary and the side it demotes.
// They come from the operation record, never from the group's current primary: after a crash
// the group may already name the target.
func (c *Controller) sides(ctx context.Context, op *Operation) (FailoverGroup, GroupSide, GroupSide, [2]instance.Status, error) {
	var g FailoverGroup
	if _, err := store.Get(ctx, c.st, fogKey(op.ResourceID), &g); err != nil {
		return g, GroupSide{}, GroupSide{}, [2]instance.Status{}, err
	}
	return g, g.Sides[op.Target], g.Sides[1-op.Target], c.statuses(ctx, &g), nil
}

func (c *Controller) drivePlannedFailover(ctx context.Context, op *Operation) error {
	tgt, old := op.Target, 1-op.Target
	for {
		g, nw, ow, st, err := c.sides(ctx, op)
		if err != nil {
			return internalError(err)
		}
		switch op.Step {
		case stepAccepted:
			failpoint.Hit(failpoint.PlannedAccepted)
			if g.Primary != old {
				return cannotFailover("%s is already the primary", nw.InstanceName)
			}
			if !streaming(st[tgt]) {
				return cannotFailover("the secondary %s is not streaming from the primary (replicationState is not CATCH_UP)", nw.InstanceName)
			}
			if !c.agentLive(ctx, ow) || st[old].Phase != instance.PhaseReady {
				return cannotFailover("the primary %s is not reachable; use forceFailoverAllowDataLoss", ow.InstanceName)
			}
			// A checkpoint while the primary still serves writes keeps the shutdown checkpoint,
			// and so the time writes are stopped, short.
			if err := c.command(ctx, ow, instance.CmdCheckpoint, 30*time.Second); err != nil {
				return cannotFailover("checkpoint on %s: %v", ow.InstanceName, err)
			}
			op.mark("checkpointed")
			failpoint.Hit(failpoint.PlannedCheckpoint)
			seeded := st[old].SeededGeneration
			_, err = c.advance(ctx, op, func(g *FailoverGroup, next *Operation) {
				g.Epoch++
				g.Switching = true
				g.Members[old] = Member{Role: instance.RoleStandby, Drain: true, SeedGeneration: seeded}
				next.Step, next.Epoch, next.Seeded = stepFenced, g.Epoch, seeded
			})
			if err != nil {
				return internalError(err)
			}
			c.log.Info("planned failover: old primary fenced", "group", g.Name, "epoch", op.Epoch)
			failpoint.Hit(failpoint.PlannedFenced)

		case stepFenced:
			fenced, err := c.waitSide(ctx, ow, fenceTimeout, func(s instance.Status) bool {
				return s.Epoch == op.Epoch && (s.Phase == instance.PhaseDrained && s.DrainedLSN != "" || s.Phase == instance.PhaseStopped)
			})
			if stopping(ctx) {
				return errStopping
			}
			if err == nil && fenced.Phase == instance.PhaseStopped {
				// It is down (it crashed): the end of its WAL cannot be shown to have reached the
				// secondary. It restarts as the primary and loses nothing.
				return c.rollback(ctx, op, fault.Invalid("PlannedFailoverTimedOut",
					"User invoked planned failover, and it could not complete: the primary %s went down (it crashed) while its clients were being drained, so the secondary cannot be shown to have all of its WAL. Nothing was lost; it is the primary again. Retry the failover.", ow.InstanceName))
			}
			if err != nil {
				return c.rollback(ctx, op, fault.Invalid("PlannedFailoverTimedOut",
					"User invoked planned failover, and it timed out: the primary %s did not stop its clients within %s (%v). Nothing was lost; it is the primary again.", ow.InstanceName, fenceTimeout, err))
			}
			op.mark("drained")
			failpoint.Hit(failpoint.PlannedStopped)
			_, err = c.advance(ctx, op, func(g *FailoverGroup, next *Operation) {
				g.Members[tgt] = Member{Role: instance.RolePrimary, PromoteAfterLSN: fenced.DrainedLSN}
				next.Step, next.DrainedLSN = stepPromoting, fenced.DrainedLSN
			})
			if err != nil {
				return internalError(err)
			}
			failpoint.Hit(failpoint.PlannedPromoting)

		case stepPromoting:
			promoted, err := c.waitSide(ctx, nw, promoteTimeout, func(s instance.Status) bool {
				return (s.Role == instance.RolePrimary && s.Epoch == op.Epoch) || s.Reason == instance.ReasonNotCaughtUp
			})
			if stopping(ctx) {
				return errStopping
			}
			if err != nil || promoted.Role != instance.RolePrimary || promoted.Epoch != op.Epoch {
				reason := fmt.Sprint(err)
				if err == nil {
					reason = promoted.Error
				}
				return c.rollback(ctx, op, fault.Invalid("PlannedFailoverTimedOut",
					"User invoked planned failover, and it timed out: the secondary %s did not take over (%s). Nothing was lost; %s is the primary again.", nw.InstanceName, reason, ow.InstanceName))
			}
			op.mark("promoted")
			failpoint.Hit(failpoint.PlannedPromoted)
			if err := c.route(ctx, op, fmt.Sprintf("planned failover: %s is primary (epoch %d)", nw.InstanceName, op.Epoch), "Failover", nil); err != nil {
				return internalError(err)
			}
			failpoint.Hit(failpoint.PlannedRouted)

		default:
			if done, aerr := c.laterStep(ctx, op); done {
				return aerr
			}
		}
	}
}

// laterStep runs the steps both failovers share once the roles have changed, or were rolled
// back. done reports that the operation has ended, with aerr its outcome.
func (c *Controller) laterStep(ctx context.Context, op *Operation) (done bool, aerr error) {
	forced := op.Kind == KindForceFailover
	switch op.Step {
	case stepRouted:
		if err := c.rejoinStep(ctx, op, forced); err != nil {
			return true, internalError(err)
		}
		if forced {
			failpoint.Hit(failpoint.ForcedRejoining)
		} else {
			failpoint.Hit(failpoint.PlannedRejoining)
		}
		return false, nil
	case stepRejoining:
		c.awaitRejoin(ctx, op)
		return true, nil
	case stepRolledBack:
		if op.Reason == nil {
			return true, nil
		}
		return true, op.Reason // as it was recorded, for the operation's record
	}
	return true, internalError(fmt.Errorf("unknown step %q", op.Step))
}

// route names the target as the group's primary and lets the listener route to it.
func (c *Controller) route(ctx context.Context, op *Operation, msg, kind string, forced *resource.ForcedFailover) error {
	_, err := c.advance(ctx, op, func(g *FailoverGroup, next *Operation) {
		g.Primary, g.Switching = op.Target, false
		g.Members[op.Target] = Member{Role: instance.RolePrimary}
		if forced != nil {
			g.LastForced = forced
		}
		g.EventBy(op.initiator(), kind, msg, nil)
		next.Step = stepRouted
	})
	if err == nil {
		c.log.Info(msg, "group", op.ResourceID, "took", time.Since(op.StartTime).Round(time.Millisecond))
	}
	return err
}

// rollback makes the old primary the primary again in a new epoch, unless the target did
// become primary of the operation's epoch after all, in which case the operation goes on:
// an operation ends with what happened. A planned failover's old primary shut down cleanly
// and lost nothing; a forced one's was stopped at once and recovers what it had.
func (c *Controller) rollback(ctx context.Context, op *Operation, reason error) error {
	// The operation's own deadline may have passed (that is often why it rolls back); the
	// rollback's reads and write must still happen.
	wctx := context.WithoutCancel(ctx)
	g, nw, _, st, err := c.sides(wctx, op)
	if err != nil {
		return internalError(err)
	}
	if s := st[op.Target]; s.Role == instance.RolePrimary && s.Epoch == op.Epoch {
		c.log.Warn("failover: the target became primary after all; going on", "group", g.Name, "target", nw.InstanceName)
		if op.Kind == KindFailover {
			return c.drivePlannedFailover(ctx, op)
		}
		return c.driveForcedFailover(ctx, op)
	}
	old := 1 - op.Target
	// The operation record keeps the reason as the client is told it.
	rec := arm.FromError(reason)
	_, err = c.advance(wctx, op, func(g *FailoverGroup, next *Operation) {
		g.Epoch++
		g.Switching = false
		g.Members[old] = Member{Role: instance.RolePrimary}
		g.Members[op.Target] = Member{Role: instance.RoleStandby, SeedGeneration: g.Members[op.Target].SeedGeneration}
		g.EventBy(op.initiator(), "FailoverRolledBack", fmt.Sprintf("failover to %s rolled back (%s); the primary is unchanged", nw.InstanceName, rec.Code), nil)
		next.Step, next.Reason = stepRolledBack, rec
	})
	if err != nil {
		c.log.Error("roll back failover", "group", g.Name, "err", err)
		return internalError(err)
	}
	return reason
}

// rejoinStep makes the old primary a standby of the new one, once the new primary has the
// old one's slot (slots do not follow a promotion).
func (c *Controller) rejoinStep(ctx context.Context, op *Operation, keepLost bool) error {
	_, nw, ow, _, err := c.sides(ctx, op)
	if err != nil {
		return err
	}
	slot := pgtypes.SlotName(ow.InstanceUID)
	if _, err := c.waitSide(ctx, nw, 30*time.Second, func(s instance.Status) bool { return hasSlot(s, slot) }); err != nil {
		c.log.Warn("new primary has no slot for the old one yet", "group", op.ResourceID, "err", err)
	}
	// The old primary's WAL goes on past the switch point (a drained primary's background
	// records and shutdown checkpoint; a forced one's lost commits): it is rewound, and what a
	// forced failover discarded is kept aside.
	_, err = c.advance(ctx, op, func(g *FailoverGroup, next *Operation) {
		g.Members[1-op.Target] = Member{Role: instance.RoleStandby, SeedGeneration: op.Seeded, Rewind: true, KeepLostWAL: keepLost}
		next.Step = stepRejoining
	})
	return err
}

// awaitRejoin waits, bounded, for the old primary to stream from the new one. The roles have
// changed either way: an old primary whose agent is away rejoins when it returns.
func (c *Controller) awaitRejoin(ctx context.Context, op *Operation) {
	_, _, ow, _, err := c.sides(ctx, op)
	if err != nil {
		return
	}
	if !c.agentLive(ctx, ow) {
		c.log.Warn("old primary's agent is not answering; it rejoins when it returns", "group", op.ResourceID, "instance", ow.InstanceName)
		return
	}
	if _, err := c.waitSide(ctx, ow, rejoinTimeout, streaming); err != nil {
		c.log.Warn("old primary did not rejoin in time; it keeps trying", "group", op.ResourceID, "instance", ow.InstanceName, "err", err)
		return
	}
	c.log.Info("old primary follows the new one", "group", op.ResourceID, "instance", ow.InstanceName)
	if op.Kind == KindForceFailover {
		c.recordLost(ctx, op.ResourceID)
	}
}

func (c *Controller) driveForcedFailover(ctx context.Context, op *Operation) error {
	tgt, old := op.Target, 1-op.Target
	for {
		g, nw, ow, st, err := c.sides(ctx, op)
		if err != nil {
			return internalError(err)
		}
		switch op.Step {
		case stepAccepted:
			failpoint.Hit(failpoint.ForcedAccepted)
			if g.Primary != old {
				return cannotFailover("%s is already the primary", nw.InstanceName)
			}
			if !c.agentLive(ctx, nw) || st[tgt].Role != instance.RoleStandby {
				return cannotFailover("the secondary %s is not available", nw.InstanceName)
			}
			seeded := st[old].SeededGeneration
			_, err = c.advance(ctx, op, func(g *FailoverGroup, next *Operation) {
				g.Epoch++
				g.Switching = true
				g.Members[old] = Member{Role: instance.RoleStandby, Paused: true, StopImmediately: true, Rewind: true, KeepLostWAL: true, SeedGeneration: seeded}
				next.Step, next.Epoch, next.Seeded = stepFenced, g.Epoch, seeded
			})
			if err != nil {
				return internalError(err)
			}
			failpoint.Hit(failpoint.ForcedFenced)

		case stepFenced:
			// Never promote while the old primary could still accept a write through any path:
			// wait until its agent confirms it stopped, or its lease has surely expired (its
			// agent, or the guard if the agent is dead, has stopped it by then).
			var how string
			err := c.waitFor(ctx, instance.StatusKey(ow.Location, ow.InstanceUID), func() (bool, error) {
				var s instance.Status
				_, _ = store.Get(ctx, c.st, instance.StatusKey(ow.Location, ow.InstanceUID), &s)
				var done bool
				done, how = c.fenceDone(ctx, ow, op.Epoch, s.Epoch == op.Epoch && s.Phase == instance.PhaseStopped)
				return done, nil
			}, "leases/")
			if stopping(ctx) {
				return errStopping
			}
			if err != nil {
				return c.rollback(ctx, op, fault.New(fault.Internal, "OperationTimedOut",
					"The old primary %s could not be fenced (%v); nothing was promoted and it is the primary again.", ow.InstanceName, err))
			}
			c.log.Info("forced failover: old primary fenced", "group", g.Name, "instance", ow.InstanceName, "how", how,
				"after", time.Since(op.StartTime).Round(time.Millisecond))
			op.mark("confirmedFenced")
			failpoint.Hit(failpoint.ForcedConfirmed)
			_, err = c.advance(ctx, op, func(g *FailoverGroup, next *Operation) {
				g.Members[tgt] = Member{Role: instance.RolePrimary}
				next.Step = stepPromoting
			})
			if err != nil {
				return internalError(err)
			}
			failpoint.Hit(failpoint.ForcedPromoting)

		case stepPromoting:
			promoted, err := c.waitSide(ctx, nw, promoteTimeout, func(s instance.Status) bool {
				return s.Role == instance.RolePrimary && s.Epoch == op.Epoch
			})
			if stopping(ctx) {
				return errStopping
			}
			if err != nil {
				return c.rollback(ctx, op, fault.New(fault.Internal, "OperationTimedOut",
					"The secondary %s was not promoted within %s (%v); %s is the primary again.", nw.InstanceName, promoteTimeout, err, ow.InstanceName))
			}
			op.mark("promoted")
			failpoint.Hit(failpoint.ForcedPromoted)
			forced := &resource.ForcedFailover{Time: time.Now().UTC(), Epoch: op.Epoch, OperationID: op.ID}
			msg := fmt.Sprintf("forced failover: %s is primary (epoch %d), promoted from %s", nw.InstanceName, op.Epoch, promoted.PromotedFrom)
			if err := c.route(ctx, op, msg, "ForcedFailover", forced); err != nil {
				return internalError(err)
			}
			failpoint.Hit(failpoint.ForcedRouted)

		default:
			if done, aerr := c.laterStep(ctx, op); done {
				return aerr
			}
		}
	}
}
