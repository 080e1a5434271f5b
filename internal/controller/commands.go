package controller

import (
	"context"
	"time"

	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// runCommand hands a one-shot command to the agent of region, waits up to timeout until the
// agent marks it done, and removes it. The returned command carries the agent's error, if
// any; err reports a failure to get an answer at all.
func (c *Controller) runCommand(ctx context.Context, region string, cmd instance.Command, timeout time.Duration) (instance.Command, error) {
	cmd.ID, cmd.Created = resource.NewUID(), time.Now().UTC()
	key := instance.CommandKey(region, cmd.ID)
	if err := store.Put(ctx, c.st, key, cmd); err != nil {
		return cmd, err
	}
	defer func() { _ = c.st.Txn(context.WithoutCancel(ctx), nil, []store.Op{{Key: key, Delete: true}}) }()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var got instance.Command
	err := c.waitFor(wctx, key, func() (bool, error) {
		_, err := store.Get(wctx, c.st, key, &got)
		return got.Done, err
	})
	return got, err
}
