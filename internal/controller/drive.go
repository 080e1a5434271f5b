package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fogdb/fog/internal/activity"
	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/engine"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// drive runs one operation to its end through e, the engine over the leader's store: a
// failover-group operation by its table (package engine), an instance's or a database's
// here. Every step reads the state it expects first, so a driver started again after a
// restart picks up where the last one stopped.
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
	switch op.Kind {
	case KindPutInstance:
		aerr = c.drivePutInstance(ctx, e, &op)
	case KindDeleteInstance:
		aerr = c.driveDeleteInstance(ctx, e, &op)
	case KindPutDatabase, KindDeleteDatabase:
		aerr = c.driveDatabase(ctx, e, &op)
	case KindUpdateGroup:
		// An update ends in the transaction that accepts it.
	case KindCreateGroup, KindDeleteGroup, KindFailover, KindForceFailover:
		aerr = e.Run(ctx, &op)
	default:
		aerr = internalError(fmt.Errorf("unknown operation kind %q", op.Kind))
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

func (c *Controller) drivePutInstance(ctx context.Context, e *engine.Engine, op *Operation) error {
	db := e.Store()
	var st instance.Status
	err := e.WaitFor(ctx, instance.StatusKey(op.Region, op.InstanceUID), func() (bool, error) {
		_, err := store.Get(ctx, db, instance.StatusKey(op.Region, op.InstanceUID), &st)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return st.ObservedGeneration >= op.Generation && (st.Phase == instance.PhaseReady || st.Phase == instance.PhaseFailed), nil
	})
	if err != nil {
		return e.WaitErr(op, err)
	}
	if st.Phase == instance.PhaseReady {
		_, err := store.Update(ctx, db, op.InstanceKey, func(m *resource.ManagedInstance) error {
			if m.ActiveOperation == op.ID {
				m.ActiveOperation = ""
				m.ProvisioningState = resource.ProvisioningSucceeded
			}
			return nil
		})
		if err != nil {
			return internalError(err)
		}
		return nil
	}
	if !op.Create {
		_, _ = store.Update(ctx, db, op.InstanceKey, func(m *resource.ManagedInstance) error {
			if m.ActiveOperation == op.ID {
				m.ActiveOperation = ""
				m.ProvisioningState = resource.ProvisioningFailed
			}
			return nil
		})
		return fault.New(fault.BadRequest, "ProvisioningFailed", "Updating managed instance failed: %s. Fix the cause and send the update again.", st.Error)
	}
	// A create that failed is removed entirely: the agent has already removed the data
	// directory; the records go too, so the name can be used again.
	if err := c.removeInstance(ctx, e, op); err != nil {
		return e.WaitErr(op, err)
	}
	return fault.New(fault.BadRequest, "ProvisioningFailed",
		"Creating the managed instance failed and nothing was left behind: %s", st.Error)
}

func (c *Controller) driveDeleteInstance(ctx context.Context, e *engine.Engine, op *Operation) error {
	if err := c.removeInstance(ctx, e, op); err != nil {
		return e.WaitErr(op, err)
	}
	return nil
}

// removeInstance asks the agent to delete the instance, waits until it has, and then removes
// every record of it.
func (c *Controller) removeInstance(ctx context.Context, e *engine.Engine, op *Operation) error {
	st := e.Store()
	specKey := instance.SpecKey(op.Region, op.InstanceUID)
	var spec instance.Spec
	if _, err := store.Get(ctx, st, specKey, &spec); err == nil && !spec.Deleted {
		if _, err := store.Update(ctx, st, specKey, func(s *instance.Spec) error { s.Deleted = true; return nil }); err != nil {
			return err
		}
	}
	statusKey := instance.StatusKey(op.Region, op.InstanceUID)
	err := e.WaitFor(ctx, statusKey, func() (bool, error) {
		var s instance.Status
		_, err := store.Get(ctx, st, statusKey, &s)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return s.Phase == instance.PhaseDeleted, err
	})
	if err != nil {
		return err
	}
	var m resource.ManagedInstance
	ops := []store.Op{{Key: specKey, Delete: true}, {Key: statusKey, Delete: true}}
	if _, err := store.Get(ctx, st, op.InstanceKey, &m); err == nil && m.UID == op.InstanceUID {
		ops = append(ops, store.Op{Key: op.InstanceKey, Delete: true}, store.Op{Key: nameKey(m.Name), Delete: true})
	}
	cmds, err := store.List[instance.Command](ctx, st, instance.CommandPrefix(op.Region))
	if err != nil {
		return err
	}
	for _, cmd := range cmds {
		if cmd.InstanceUID == op.InstanceUID {
			ops = append(ops, store.Op{Key: instance.CommandKey(op.Region, cmd.ID), Delete: true})
		}
	}
	return st.Txn(ctx, nil, ops)
}
