package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// errTimeout means an operation did not see the state it waited for in time.
var errTimeout = errors.New("controller: operation timed out")

// drive runs one operation to its end. Every step reads the state it expects first, so a
// driver started again after a restart picks up where the last one stopped.
func (c *Controller) drive(ctx context.Context, id string) {
	var op Operation
	if _, err := store.Get(ctx, c.st, opKey(id), &op); err != nil || op.Terminal() {
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
		aerr = c.drivePutInstance(ctx, &op)
	case KindDeleteInstance:
		aerr = c.driveDeleteInstance(ctx, &op)
	case KindPutDatabase, KindDeleteDatabase:
		aerr = c.driveDatabase(ctx, &op)
	case KindCreateGroup:
		aerr = c.driveCreateGroup(ctx, &op)
	case KindUpdateGroup:
		aerr = c.driveUpdateGroup(ctx, &op)
	case KindDeleteGroup:
		aerr = c.driveDeleteGroup(ctx, &op)
	case KindFailover:
		aerr = c.drivePlannedFailover(ctx, &op)
	case KindForceFailover:
		aerr = c.driveForcedFailover(ctx, &op)
	default:
		aerr = internalError(fmt.Errorf("unknown operation kind %q", op.Kind))
	}
	if ctx.Err() != nil && aerr != nil && errors.Is(context.Cause(ctx), context.Canceled) {
		return // fog is stopping; the operation resumes on the next start
	}
	c.finish(&op, aerr)
}

// finish records the operation's outcome and, for a failover-group operation, releases the
// group's operation mark in the same transaction: a group is never free while its operation
// is still InProgress, nor busy after it ended.
func (c *Controller) finish(op *Operation, aerr error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.finishTxn(ctx, op.ID, aerr)
	if err != nil {
		c.log.Error("finish operation", "id", op.ID, "err", err)
		return
	}
	if aerr != nil {
		c.log.Warn("operation failed", "operation", op.Name, "id", op.ID, "resource", op.ResourceID, "err", aerr)
	} else {
		c.log.Info("operation succeeded", "operation", op.Name, "id", op.ID, "resource", op.ResourceID, "took", time.Since(op.StartTime).Round(time.Millisecond))
	}
}

func (c *Controller) finishTxn(ctx context.Context, id string, aerr error) error {
	for {
		var o Operation
		orev, err := store.Get(ctx, c.st, opKey(id), &o)
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		o.EndTime = &now
		o.Status = arm.StatusSucceeded
		if aerr != nil {
			// The record keeps what the client is told, as ARM says it.
			rec := arm.FromError(aerr)
			o.Status, o.Error, o.ErrorStatus = arm.StatusFailed, rec, rec.Status
		} else {
			done := 100.0
			o.Percent = &done
		}
		conds := []store.Cond{{Key: opKey(id), Rev: orev}}
		ops := []store.Op{store.PutOp(opKey(id), o), store.PutOp(activityKey(id), activityOf(&o))}
		if o.groupOp() {
			var g FailoverGroup
			grev, err := store.Get(ctx, c.st, fogKey(o.ResourceID), &g)
			switch {
			case err == nil && g.ActiveOperation == id:
				g.ActiveOperation, g.OperationKind = "", ""
				conds = append(conds, store.Cond{Key: fogKey(o.ResourceID), Rev: grev})
				ops = append(ops, store.PutOp(fogKey(o.ResourceID), g))
			case err != nil && !errors.Is(err, store.ErrNotFound):
				return err
			}
		}
		err = c.st.Txn(ctx, conds, ops)
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
}

// waitFor calls check whenever a key under one of the prefixes changes (and every 100 ms)
// until it reports done, fails, or ctx ends.
func (c *Controller) waitFor(ctx context.Context, prefix string, check func() (bool, error), more ...string) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, p := range append([]string{prefix}, more...) {
		ch := c.st.Watch(wctx, p)
		wg.Go(func() {
			for range ch {
				select {
				case events <- struct{}{}:
				default:
				}
			}
		})
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		done, err := check()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return errTimeout
			}
			return ctx.Err()
		case <-events:
		case <-tick.C:
		}
	}
}

func (c *Controller) waitErr(op *Operation, err error) error {
	if errors.Is(err, errTimeout) {
		return fault.New(fault.Internal, "OperationTimedOut",
			"The operation %s did not finish within %s. The region's agent may be down; the desired state is kept and applied when it returns.", op.Name, c.cfg.OperationTimeout)
	}
	return internalError(err)
}

func (c *Controller) drivePutInstance(ctx context.Context, op *Operation) error {
	var st instance.Status
	err := c.waitFor(ctx, instance.StatusKey(op.Region, op.InstanceUID), func() (bool, error) {
		_, err := store.Get(ctx, c.st, instance.StatusKey(op.Region, op.InstanceUID), &st)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return st.ObservedGeneration >= op.Generation && (st.Phase == instance.PhaseReady || st.Phase == instance.PhaseFailed), nil
	})
	if err != nil {
		return c.waitErr(op, err)
	}
	if st.Phase == instance.PhaseReady {
		_, err := store.Update(ctx, c.st, op.InstanceKey, func(m *resource.ManagedInstance) error {
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
		_, _ = store.Update(ctx, c.st, op.InstanceKey, func(m *resource.ManagedInstance) error {
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
	if err := c.removeInstance(ctx, op); err != nil {
		return c.waitErr(op, err)
	}
	return fault.New(fault.BadRequest, "ProvisioningFailed",
		"Creating the managed instance failed and nothing was left behind: %s", st.Error)
}

func (c *Controller) driveDeleteInstance(ctx context.Context, op *Operation) error {
	if err := c.removeInstance(ctx, op); err != nil {
		return c.waitErr(op, err)
	}
	return nil
}

// removeInstance asks the agent to delete the instance, waits until it has, and then removes
// every record of it.
func (c *Controller) removeInstance(ctx context.Context, op *Operation) error {
	specKey := instance.SpecKey(op.Region, op.InstanceUID)
	var spec instance.Spec
	if _, err := store.Get(ctx, c.st, specKey, &spec); err == nil && !spec.Deleted {
		if _, err := store.Update(ctx, c.st, specKey, func(s *instance.Spec) error { s.Deleted = true; return nil }); err != nil {
			return err
		}
	}
	statusKey := instance.StatusKey(op.Region, op.InstanceUID)
	err := c.waitFor(ctx, statusKey, func() (bool, error) {
		var st instance.Status
		_, err := store.Get(ctx, c.st, statusKey, &st)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return st.Phase == instance.PhaseDeleted, err
	})
	if err != nil {
		return err
	}
	var m resource.ManagedInstance
	ops := []store.Op{{Key: specKey, Delete: true}, {Key: statusKey, Delete: true}}
	if _, err := store.Get(ctx, c.st, op.InstanceKey, &m); err == nil && m.UID == op.InstanceUID {
		ops = append(ops, store.Op{Key: op.InstanceKey, Delete: true}, store.Op{Key: nameKey(m.Name), Delete: true})
	}
	cmds, err := store.List[instance.Command](ctx, c.st, instance.CommandPrefix(op.Region))
	if err != nil {
		return err
	}
	for _, cmd := range cmds {
		if cmd.InstanceUID == op.InstanceUID {
			ops = append(ops, store.Op{Key: instance.CommandKey(op.Region, cmd.ID), Delete: true})
		}
	}
	return c.st.Txn(ctx, nil, ops)
}
