package controller

import (
	"context"

	"github.com/fogdb/fog/internal/lease"
)

// regionLease reads a region's lease record and reports whether it is live on this
// controller's clock (package lease: no two clocks are compared).
func (c *Controller) regionLease(ctx context.Context, region string) (lease.Record, bool) {
	return c.eng.RegionLease(ctx, region)
}

// agentLive reports whether the side's agent renews its lease.
func (c *Controller) agentLive(ctx context.Context, s GroupSide) bool {
	return c.eng.AgentLive(ctx, s)
}
