package engine

import (
	"context"
	"errors"

	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/store"
)

// A database is created and dropped by its instance's agent, on a command the API writes
// with the operation (Operation.CommandID).
var (
	putDatabase = &Table{Kind: KindPutDatabase, Steps: []Step{
		databaseStep("the operation, the agent's command to create it (owned by the instance's admin)"),
	}}
	deleteDatabase = &Table{Kind: KindDeleteDatabase, Steps: []Step{
		databaseStep("the operation, the agent's command to drop it"),
	}}
	// A database restored to a point in time is a command too: the agent restores the
	// source's backup into a scratch cluster, recovers it to the time, and moves the
	// database into the instance under the new name (docs/backups.md).
	restoreDatabase = &Table{Kind: KindRestoreDatabase, Steps: []Step{{
		Name:      StepAccepted,
		Writes:    "the operation, the agent's command to restore the source database as it was at the time, as the new database (owned by the instance's admin)",
		Waits:     "wait for the agent to run the command, recording its progress; remove it",
		RollsBack: "Failed with the agent's error (the agent removed what it made)",
		OnFail:    Fail, wait: awaitDatabaseCommand,
	}}}
)

func databaseStep(writes string) Step {
	return Step{
		Name: StepAccepted, Writes: writes, Waits: "wait for the agent to run the command; remove it",
		RollsBack: "Failed with the agent's error", OnFail: Fail,
		wait: awaitDatabaseCommand,
	}
}

// awaitDatabaseCommand waits until the agent has run the operation's command, and removes it.
// A command that is gone was removed with its instance.
func awaitDatabaseCommand(ctx context.Context, x *exec) error {
	e, op := x.e, x.op
	key := instance.CommandKey(op.Region, op.CommandID)
	var cmd instance.Command
	last := -1.0
	err := e.WaitFor(ctx, key, func() (bool, error) {
		cmd = instance.Command{}
		_, err := store.Get(ctx, e.st, key, &cmd)
		if errors.Is(err, store.ErrNotFound) {
			cmd = instance.Command{Done: true, Error: "the command was lost (the instance was deleted)"}
			return true, nil
		}
		if err == nil && !cmd.Done && cmd.Progress != last && cmd.Progress > 0 {
			last = cmd.Progress
			e.setPercent(ctx, op.ID, cmd.Progress)
		}
		return cmd.Done, err
	})
	if err != nil {
		return e.WaitErr(op, err)
	}
	_ = e.st.Txn(ctx, nil, []store.Op{{Key: key, Delete: true}})
	if cmd.Error != "" {
		return giveUp(fault.Invalid("DatabaseOperationFailed", "%s of '%s' failed: %s", op.Name, op.Database, cmd.Error))
	}
	return nil
}
