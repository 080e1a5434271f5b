package engine

import (
	"context"
	"errors"
	"strings"

	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// NameKey is the store key that reserves an instance's name: names are unique in the
// deployment, not per resource group, because they become DNS names.
func NameKey(name string) string { return "names/mi/" + strings.ToLower(name) }

// putInstance waits for the agent to apply the desired state the API wrote. A create that
// fails is removed entirely, so that its name can be used again: the agent has removed the
// data directory already; the desired state is marked deleted in the transaction that
// records the rollback, and the records go once the agent reports the instance deleted.
var putInstance = &Table{Kind: KindPutInstance, rollback: instanceFailed, Steps: []Step{
	{
		Name:      StepAccepted,
		Writes:    "the operation, the instance (Creating, its name reserved, or Updating), its desired state",
		Waits:     "wait for the agent to report the generation Ready or Failed; Ready: the instance Succeeded",
		RollsBack: "an update: the instance Failed, Failed; a create: rolledBack",
		OnFail:    RollBack,
		wait:      awaitInstance,
	},
}, RolledBack: &Step{
	Name: StepRolledBack, Writes: "a create's desired state deleted, the reason",
	Waits:     "wait for the agent to delete it; remove its records (the name is free again)",
	RollsBack: "Failed with the recorded reason",
	wait: func(ctx context.Context, x *exec) error {
		if err := x.e.removeInstance(ctx, x.op); err != nil {
			return x.e.WaitErr(x.op, err)
		}
		return nil
	},
}}

// deleteInstance waits for the agent to delete the instance the API marked deleted, and
// removes its records.
var deleteInstance = &Table{Kind: KindDeleteInstance, Steps: []Step{
	{
		Name: StepAccepted, Writes: "the operation, the instance Deleting, its desired state deleted",
		Waits:     "wait for the agent to delete it; remove its records (the name is free again)",
		RollsBack: "Failed; the desired state stays deleted and is applied when the agent returns",
		OnFail:    Fail,
		wait: func(ctx context.Context, x *exec) error {
			if err := x.e.removeInstance(ctx, x.op); err != nil {
				return x.e.WaitErr(x.op, err)
			}
			return nil
		},
	},
}}

// awaitInstance waits until the agent reports the operation's generation of the instance
// Ready or Failed. Ready ends the operation: the instance is Succeeded. Failed gives up with
// what the client is told.
func awaitInstance(ctx context.Context, x *exec) error {
	e, op := x.e, x.op
	key := instance.StatusKey(op.Region, op.InstanceUID)
	var st instance.Status
	err := e.WaitFor(ctx, key, func() (bool, error) {
		st = instance.Status{}
		_, err := store.Get(ctx, e.st, key, &st)
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
	if st.Phase == instance.PhaseFailed {
		if op.Create {
			return giveUp(fault.New(fault.BadRequest, "ProvisioningFailed",
				"Creating the managed instance failed and nothing was left behind: %s", st.Error))
		}
		return giveUp(fault.New(fault.BadRequest, "ProvisioningFailed", "Updating managed instance failed: %s. Fix the cause and send the update again.", st.Error))
	}
	if err := e.endInstanceOp(ctx, op, resource.ProvisioningSucceeded); err != nil {
		return Internal(err)
	}
	return nil
}

// endInstanceOp sets the instance's provisioning state to state and releases it, if op is
// still its operation.
func (e *Engine) endInstanceOp(ctx context.Context, op *Operation, state string) error {
	_, err := store.Update(ctx, e.st, op.InstanceKey, func(m *resource.ManagedInstance) error {
		if m.ActiveOperation == op.ID {
			m.ActiveOperation = ""
			m.ProvisioningState = state
		}
		return nil
	})
	return err
}

// instanceFailed is putInstance's rollback. An update that failed leaves the instance Failed.
// A create that failed is recorded rolledBack, with the reason, in the transaction that marks
// its desired state deleted; the runner goes on to remove it (the table's RolledBack).
func instanceFailed(x *exec, ctx context.Context, reason error) (bool, error) {
	e, op := x.e, x.op
	if !op.Create {
		_ = e.endInstanceOp(ctx, op, resource.ProvisioningFailed)
		return false, reason
	}
	specKey := instance.SpecKey(op.Region, op.InstanceUID)
	for {
		next := *op
		next.Step = StepRolledBack
		next.setReason(reason)
		next.Mark(next.Step)
		var spec instance.Spec
		rev, err := store.Get(ctx, e.st, specKey, &spec)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return false, e.WaitErr(op, err)
		}
		conds := []store.Cond{{Key: specKey, Rev: rev}}
		ops := []store.Op{store.PutOp(OpKey(op.ID), next)}
		if rev != 0 && !spec.Deleted {
			spec.Deleted = true
			ops = append(ops, store.PutOp(specKey, spec))
		}
		err = e.st.Txn(ctx, conds, ops)
		if err == nil {
			*op = next
			return true, nil
		}
		if !errors.Is(err, store.ErrConflict) || ctx.Err() != nil {
			return false, e.WaitErr(op, err)
		}
	}
}

// removeInstance asks the agent to delete the instance, waits until it has, and then removes
// every record of it.
func (e *Engine) removeInstance(ctx context.Context, op *Operation) error {
	st := e.st
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
		ops = append(ops, store.Op{Key: op.InstanceKey, Delete: true}, store.Op{Key: NameKey(m.Name), Delete: true})
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
	// Its databases' retention policies go with it (they are keyed by its UID, so that an
	// instance made again under the name starts with none).
	policies, err := st.List(ctx, resource.ShortTermRetentionPrefix(op.InstanceUID))
	if err != nil {
		return err
	}
	for _, kv := range policies {
		ops = append(ops, store.Op{Key: kv.Key, Delete: true})
	}
	return st.Txn(ctx, nil, ops)
}
