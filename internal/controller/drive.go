package controller

import (
	"context"
	"errors"
	"time"

	"github.com/fogdb/fog/internal/activity"
	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/engine"
	"github.com/fogdb/fog/internal/store"
)

// drive runs one operation to its end through e, the engine over the leader's store, by its
// kind's table (package engine), and records its outcome. Every step reads the state it
// expects first, so a driver started again after a restart picks up where the last one
// stopped.
func (c *Controller) drive(ctx context.Context, e *engine.Engine, id string) {
	var op Operation
	if _, err := store.Get(ctx, e.Store(), opKey(id), &op); err != nil || op.Terminal() {
		return
	}
	timeout := c.cfg.OperationTimeout
	if op.Kind == KindCreateGroup {
		timeout = 24 * time.Hour // seeding is size-of-data
	}
	// A resumed operation gets at least a little time of its own: one that was interrupted
	// by a long outage of fog still ends with what its steps find, not a bare timeout.
	deadline := op.StartTime.Add(timeout)
	if minimum := time.Now().Add(2 * time.Minute); deadline.Before(minimum) {
		deadline = minimum
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var aerr error
	if op.Kind != KindUpdateGroup { // an update ends in the transaction that accepts it
		aerr = e.Run(ctx, &op)
	}
	if ctx.Err() != nil && aerr != nil && errors.Is(context.Cause(ctx), context.Canceled) {
		return // fog is stopping; the operation resumes on the next start
	}
	c.finish(e.Store(), &op, aerr)
}

// finish records the operation's outcome and, for a failover-group operation, releases the
// group's operation mark in the same transaction: a group is never free while its operation
// is still InProgress, nor busy after it ended.
//
// The record keeps what the client is told, as ARM says it; the cause of a failure of Fog's
// own, which the record names only by its error id, is logged here under that id.
func (c *Controller) finish(st store.Store, op *Operation, aerr error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec := arm.Report(c.log, aerr, "operation", op.Name, "id", op.ID, "resource", op.ResourceID)
	err := finishTxn(ctx, st, op.ID, rec)
	if err != nil {
		c.log.Error("finish operation", "id", op.ID, "err", err)
		return
	}
	if rec != nil {
		c.log.Warn("operation failed", "operation", op.Name, "id", op.ID, "resource", op.ResourceID, "err", rec)
	} else {
		c.log.Info("operation succeeded", "operation", op.Name, "id", op.ID, "resource", op.ResourceID, "took", time.Since(op.StartTime).Round(time.Millisecond))
	}
}

// finishTxn records operation id's outcome: success when rec is nil, else failed with rec.
func finishTxn(ctx context.Context, st store.Store, id string, rec *arm.Error) error {
	for {
		var o Operation
		orev, err := store.Get(ctx, st, opKey(id), &o)
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		o.EndTime = &now
		o.Status = arm.StatusSucceeded
		if rec != nil {
			o.Status, o.Error, o.ErrorStatus = arm.StatusFailed, rec, rec.Status
		} else {
			done := 100.0
			o.Percent = &done
		}
		conds := []store.Cond{{Key: opKey(id), Rev: orev}}
		ops := []store.Op{store.PutOp(opKey(id), o), store.PutOp(activity.Key(id), activityOf(&o))}
		if o.GroupOp() {
			var g FailoverGroup
			grev, err := store.Get(ctx, st, fogKey(o.ResourceID), &g)
			switch {
			case err == nil && g.ActiveOperation == id:
				g.ActiveOperation, g.OperationKind = "", ""
				conds = append(conds, store.Cond{Key: fogKey(o.ResourceID), Rev: grev})
				ops = append(ops, store.PutOp(fogKey(o.ResourceID), g))
			case err != nil && !errors.Is(err, store.ErrNotFound):
				return err
			}
		}
		err = st.Txn(ctx, conds, ops)
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
}
