package controller

import (
	"context"

	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// The desired state of instances is computed by the engine (package engine), which writes it
// with every step; the API writes it through the same code when it accepts a request.

func (c *Controller) baseSpec(m *resource.ManagedInstance) instance.Spec { return c.eng.BaseSpec(m) }

func (c *Controller) groupSpec(base instance.Spec, g *FailoverGroup, i int, partner *resource.ManagedInstance) instance.Spec {
	return c.eng.GroupSpec(base, g, i, partner)
}

func (c *Controller) specFor(ctx context.Context, m *resource.ManagedInstance) (instance.Spec, error) {
	return c.eng.SpecFor(ctx, m)
}

func (c *Controller) specWrites(ctx context.Context, specs ...instance.Spec) ([]store.Cond, []store.Op, []int64, error) {
	return c.eng.SpecWrites(ctx, specs...)
}

// writeGroup stores g (if nobody changed it since rev) together with both members' specs and
// any extra ops, in one transaction.
func (c *Controller) writeGroup(ctx context.Context, g *FailoverGroup, rev int64, extra ...store.Op) error {
	_, err := c.eng.WriteGroup(ctx, g, rev, extra...)
	return err
}
