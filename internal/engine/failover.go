package engine

import (
	"context"
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

// Bounds of the failover steps. A planned failover gives up (and rolls back, losing nothing)
// when the old primary does not shut down, or the secondary does not receive its last WAL,
// within these.
const (
	fenceTimeout   = 30 * time.Second
	promoteTimeout = 30 * time.Second
	rejoinTimeout  = 90 * time.Second
)

// plannedFailover loses nothing. The old primary is drained rather than shut down, so its
// shutdown checkpoint is not inside the time writes stop: every commit a client was told of
// lies before the drained end of WAL, which the new primary has before it is promoted.
var plannedFailover = &Table{Kind: KindFailover, rollback: (*exec).rollback, Steps: []Step{
	{
		Name: StepAccepted, Writes: "the operation, Target", Waits: "checks, CHECKPOINT, fence", RollsBack: "nothing changed: Failed",
		OnFail: Fail, Point: failpoint.PlannedAccepted, Waited: "checkpointed", WaitedPoint: failpoint.PlannedCheckpoint,
		wait: func(ctx context.Context, x *exec) error {
			tgt, old := x.op.Target, 1-x.op.Target
			if x.g.Primary != old {
				return giveUp(cannotFailover("%s is already the primary", x.nw.InstanceName))
			}
			if !Streaming(x.st[tgt]) {
				return giveUp(cannotFailover("the secondary %s is not streaming from the primary (replicationState is not CATCH_UP)", x.nw.InstanceName))
			}
			if !x.e.AgentLive(ctx, x.ow) || x.st[old].Phase != instance.PhaseReady {
				return giveUp(cannotFailover("the primary %s is not reachable; use forceFailoverAllowDataLoss", x.ow.InstanceName))
			}
			// A checkpoint while the primary still serves writes keeps the shutdown checkpoint,
			// and so the time writes are stopped, short.
			if err := x.e.command(ctx, x.ow, instance.CmdCheckpoint, 30*time.Second); err != nil {
				return giveUp(cannotFailover("checkpoint on %s: %v", x.ow.InstanceName, err))
			}
			x.seeded = x.st[old].SeededGeneration
			return nil
		},
	},
	{
		Name:      StepFenced,
		Writes:    "epoch E+1, Switching, old: drain (clients refused and ended, server keeps running)",
		Waits:     "wait for the drained end of WAL (or the old one down)",
		RollsBack: "epoch E+2, old primary again (it lost nothing), Failed",
		OnFail:    RollBack, Point: failpoint.PlannedFenced, Waited: "drained", WaitedPoint: failpoint.PlannedStopped,
		write: func(x *exec, g *FailoverGroup, next *Operation) {
			g.Epoch++
			g.Switching = true
			g.Members[1-x.op.Target] = Member{Role: instance.RoleStandby, Drain: true, SeedGeneration: x.seeded}
			next.Epoch, next.Seeded = g.Epoch, x.seeded
		},
		entered: func(x *exec) {
			x.e.log.Info("planned failover: old primary fenced", "group", x.g.Name, "epoch", x.op.Epoch)
		},
		wait: func(ctx context.Context, x *exec) error {
			fenced, err := x.e.waitSide(ctx, x.ow, fenceTimeout, func(s instance.Status) bool {
				return s.Epoch == x.op.Epoch && (s.Phase == instance.PhaseDrained && s.DrainedLSN != "" || s.Phase == instance.PhaseStopped)
			})
			if err == nil && fenced.Phase == instance.PhaseStopped {
				// It is down (it crashed): the end of its WAL cannot be shown to have reached the
				// secondary. It restarts as the primary and loses nothing.
				return giveUp(fault.Invalid("PlannedFailoverTimedOut",
					"User invoked planned failover, and it could not complete: the primary %s went down (it crashed) while its clients were being drained, so the secondary cannot be shown to have all of its WAL. Nothing was lost; it is the primary again. Retry the failover.", x.ow.InstanceName))
			}
			if err != nil {
				return giveUp(fault.Invalid("PlannedFailoverTimedOut",
					"User invoked planned failover, and it timed out: the primary %s did not stop its clients within %s (%v). Nothing was lost; it is the primary again.", x.ow.InstanceName, fenceTimeout, err))
			}
			x.drainedLSN = fenced.DrainedLSN
			return nil
		},
	},
	{
		Name:      StepPromoting,
		Writes:    "new: primary once it has WAL up to that point, DrainedLSN",
		Waits:     "wait for the new primary of epoch E+1",
		RollsBack: "as above, unless the new side did promote: then go on",
		OnFail:    RollBack, Point: failpoint.PlannedPromoting, Waited: "promoted", WaitedPoint: failpoint.PlannedPromoted,
		write: func(x *exec, g *FailoverGroup, next *Operation) {
			g.Members[x.op.Target] = Member{Role: instance.RolePrimary, PromoteAfterLSN: x.drainedLSN}
			next.DrainedLSN = x.drainedLSN
		},
		wait: func(ctx context.Context, x *exec) error {
			promoted, err := x.e.waitSide(ctx, x.nw, promoteTimeout, func(s instance.Status) bool {
				return (s.Role == instance.RolePrimary && s.Epoch == x.op.Epoch) || s.Reason == instance.ReasonNotCaughtUp
			})
			if err != nil || promoted.Role != instance.RolePrimary || promoted.Epoch != x.op.Epoch {
				reason := fmt.Sprint(err)
				if err == nil {
					reason = promoted.Error
				}
				return giveUp(fault.Invalid("PlannedFailoverTimedOut",
					"User invoked planned failover, and it timed out: the secondary %s did not take over (%s). Nothing was lost; %s is the primary again.", x.nw.InstanceName, reason, x.ow.InstanceName))
			}
			return nil
		},
	},
	routedStep(failpoint.PlannedRouted, "Primary = Target, Switching off, event", "make the old one follow"),
	rejoiningStep(failpoint.PlannedRejoining, "old: stop, rewind (its shutdown checkpoint), standby of the new primary", "wait (bounded) for streaming"),
}}

// forcedFailover loses what the secondary had not received, and reports it.
var forcedFailover = &Table{Kind: KindForceFailover, rollback: (*exec).rollback, Steps: []Step{
	{
		Name: StepAccepted, Writes: "the operation, Target", Waits: "checks, fence", RollsBack: "nothing changed: Failed",
		OnFail: Fail, Point: failpoint.ForcedAccepted,
		wait: func(ctx context.Context, x *exec) error {
			tgt, old := x.op.Target, 1-x.op.Target
			if x.g.Primary != old {
				return giveUp(cannotFailover("%s is already the primary", x.nw.InstanceName))
			}
			if !x.e.AgentLive(ctx, x.nw) || x.st[tgt].Role != instance.RoleStandby {
				return giveUp(cannotFailover("the secondary %s is not available", x.nw.InstanceName))
			}
			x.seeded = x.st[old].SeededGeneration
			return nil
		},
	},
	{
		Name:      StepFenced,
		Writes:    "epoch E+1, Switching, old: paused, immediate stop, rewind later",
		Waits:     "wait until the old primary is confirmed stopped in E+1 or its agent's lease expired",
		RollsBack: "epoch E+2, old primary again, Failed (it was stopped at once and recovers what it had)",
		OnFail:    RollBack, Point: failpoint.ForcedFenced, Waited: "confirmedFenced", WaitedPoint: failpoint.ForcedConfirmed,
		write: func(x *exec, g *FailoverGroup, next *Operation) {
			g.Epoch++
			g.Switching = true
			g.Members[1-x.op.Target] = Member{Role: instance.RoleStandby, Paused: true, StopImmediately: true, Rewind: true, KeepLostWAL: true, SeedGeneration: x.seeded}
			next.Epoch, next.Seeded = g.Epoch, x.seeded
		},
		wait: func(ctx context.Context, x *exec) error {
			// Never promote while the old primary could still accept a write through any path:
			// wait until its agent confirms it stopped, or its lease has surely expired (its
			// agent, or the guard if the agent is dead, has stopped it by then).
			var how string
			ow := x.ow
			err := x.e.WaitFor(ctx, instance.StatusKey(ow.Location, ow.InstanceUID), func() (bool, error) {
				var s instance.Status
				_, _ = store.Get(ctx, x.e.st, instance.StatusKey(ow.Location, ow.InstanceUID), &s)
				var done bool
				done, how = x.e.fenceDone(ctx, ow, x.op.Epoch, s.Epoch == x.op.Epoch && s.Phase == instance.PhaseStopped)
				return done, nil
			}, "leases/")
			if err != nil {
				return giveUp(fault.New(fault.Internal, "OperationTimedOut",
					"The old primary %s could not be fenced (%v); nothing was promoted and it is the primary again.", ow.InstanceName, err))
			}
			x.e.log.Info("forced failover: old primary fenced", "group", x.g.Name, "instance", ow.InstanceName, "how", how,
				"after", time.Since(x.op.StartTime).Round(time.Millisecond))
			return nil
		},
	},
	{
		Name:      StepPromoting,
		Writes:    "new: primary",
		Waits:     "wait for the new primary of epoch E+1",
		RollsBack: "as above, unless the new side did promote: then go on",
		OnFail:    RollBack, Point: failpoint.ForcedPromoting, Waited: "promoted", WaitedPoint: failpoint.ForcedPromoted,
		write: func(x *exec, g *FailoverGroup, next *Operation) {
			g.Members[x.op.Target] = Member{Role: instance.RolePrimary}
		},
		wait: func(ctx context.Context, x *exec) error {
			promoted, err := x.e.waitSide(ctx, x.nw, promoteTimeout, func(s instance.Status) bool {
				return s.Role == instance.RolePrimary && s.Epoch == x.op.Epoch
			})
			if err != nil {
				return giveUp(fault.New(fault.Internal, "OperationTimedOut",
					"The secondary %s was not promoted within %s (%v); %s is the primary again.", x.nw.InstanceName, promoteTimeout, err, x.ow.InstanceName))
			}
			x.promotedFrom = promoted.PromotedFrom
			return nil
		},
	},
	routedStep(failpoint.ForcedRouted, "Primary = Target, Switching off, lastForced", "old: rewind and follow"),
	rejoiningStep(failpoint.ForcedRejoining, "old: standby with rewind", "wait (bounded); record the lost range once rewound"),
}}

// routedStep names the target as the group's primary and lets the listener route to it; its
// wait is for the new primary to hold the old one's slot (slots do not follow a promotion).
func routedStep(point, writes, waits string) Step {
	return Step{
		Name: StepRouted, Writes: writes, Waits: waits, RollsBack: "(roles changed: no rollback)", OnFail: GoOn, Point: point,
		write: func(x *exec, g *FailoverGroup, next *Operation) {
			op := x.op
			g.Primary, g.Switching = op.Target, false
			g.Members[op.Target] = Member{Role: instance.RolePrimary}
			kind, msg := "Failover", fmt.Sprintf("planned failover: %s is primary (epoch %d)", x.nw.InstanceName, op.Epoch)
			if op.Kind == KindForceFailover {
				kind, msg = "ForcedFailover", fmt.Sprintf("forced failover: %s is primary (epoch %d), promoted from %s", x.nw.InstanceName, op.Epoch, x.promotedFrom)
				g.LastForced = &resource.ForcedFailover{Time: time.Now().UTC(), Epoch: op.Epoch, OperationID: op.ID}
			}
			g.EventBy(op.InitiatedBy(), kind, msg, nil)
		},
		entered: func(x *exec) {
			msg := fmt.Sprintf("planned failover: %s is primary (epoch %d)", x.nw.InstanceName, x.op.Epoch)
			if x.op.Kind == KindForceFailover {
				msg = fmt.Sprintf("forced failover: %s is primary (epoch %d), promoted from %s", x.nw.InstanceName, x.op.Epoch, x.promotedFrom)
			}
			x.e.log.Info(msg, "group", x.op.ResourceID, "took", time.Since(x.op.StartTime).Round(time.Millisecond))
		},
		wait: func(ctx context.Context, x *exec) error {
			slot := pgtypes.SlotName(x.ow.InstanceUID)
			if _, err := x.e.waitSide(ctx, x.nw, 30*time.Second, func(s instance.Status) bool { return hasSlot(s, slot) }); err != nil {
				x.e.log.Warn("new primary has no slot for the old one yet", "group", x.op.ResourceID, "err", err)
			}
			return nil
		},
	}
}

// rejoiningStep makes the old primary a standby of the new one. Its WAL goes on past the
// switch point (a drained primary's background records and shutdown checkpoint; a forced
// one's lost commits): it is rewound, and what a forced failover discarded is kept aside.
func rejoiningStep(point, writes, waits string) Step {
	return Step{
		Name: StepRejoining, Writes: writes, Waits: waits, RollsBack: "Succeeded either way", OnFail: GoOn, Point: point,
		write: func(x *exec, g *FailoverGroup, next *Operation) {
			g.Members[1-x.op.Target] = Member{Role: instance.RoleStandby, SeedGeneration: x.op.Seeded, Rewind: true, KeepLostWAL: x.op.Kind == KindForceFailover}
		},
		wait: func(ctx context.Context, x *exec) error {
			x.awaitRejoin(ctx)
			return nil
		},
	}
}

// awaitRejoin waits, bounded, for the old primary to stream from the new one. The roles have
// changed either way: an old primary whose agent is away rejoins when it returns.
func (x *exec) awaitRejoin(ctx context.Context) {
	op, ow := x.op, x.ow
	if !x.e.AgentLive(ctx, ow) {
		x.e.log.Warn("old primary's agent is not answering; it rejoins when it returns", "group", op.ResourceID, "instance", ow.InstanceName)
		return
	}
	if _, err := x.e.waitSide(ctx, ow, rejoinTimeout, Streaming); err != nil {
		x.e.log.Warn("old primary did not rejoin in time; it keeps trying", "group", op.ResourceID, "instance", ow.InstanceName, "err", err)
		return
	}
	x.e.log.Info("old primary follows the new one", "group", op.ResourceID, "instance", ow.InstanceName)
	if op.Kind == KindForceFailover {
		x.e.RecordLost(ctx, op.ResourceID)
	}
}

// rollback makes the old primary the primary again in a new epoch, unless the target did
// become primary of the operation's epoch after all, in which case the operation goes on
// (goOn): an operation ends with what happened. A planned failover's old primary shut down
// cleanly and lost nothing; a forced one's was stopped at once and recovers what it had.
func (x *exec) rollback(ctx context.Context, reason error) (goOn bool, err error) {
	op := x.op
	// The operation's own deadline may have passed (that is often why it rolls back); the
	// rollback's reads and write must still happen.
	wctx := context.WithoutCancel(ctx)
	if err := x.load(wctx); err != nil {
		return false, Internal(err)
	}
	if s := x.st[op.Target]; s.Role == instance.RolePrimary && s.Epoch == op.Epoch {
		x.e.log.Warn("failover: the target became primary after all; going on", "group", x.g.Name, "target", x.nw.InstanceName)
		return true, nil
	}
	old := 1 - op.Target
	// The operation record keeps the reason as the client is told it (and a failure's cause
	// is logged under the error id the record names: the record may be all that reports it,
	// if fog stops before the operation is finished).
	rec := arm.Report(x.e.log, reason, "operation", op.Name, "id", op.ID, "resource", op.ResourceID)
	_, err = x.e.advance(wctx, op, func(g *FailoverGroup, next *Operation) {
		g.Epoch++
		g.Switching = false
		g.Members[old] = Member{Role: instance.RolePrimary}
		g.Members[op.Target] = Member{Role: instance.RoleStandby, SeedGeneration: g.Members[op.Target].SeedGeneration}
		g.EventBy(op.InitiatedBy(), "FailoverRolledBack", fmt.Sprintf("failover to %s rolled back (%s); the primary is unchanged", x.nw.InstanceName, rec.Code), nil)
		next.Step = StepRolledBack
		next.setReason(reason)
	})
	if err != nil {
		x.e.log.Error("roll back failover", "group", x.g.Name, "err", err)
		return false, Internal(err)
	}
	return false, reason
}
