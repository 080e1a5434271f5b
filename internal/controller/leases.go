package controller

import (
	"context"

	"github.com/fogdb/fog/internal/lease"
)

// regionLease reads a region's lease record and reports whether it is live on this
// controller's clock (package lease: no two clocks are compared).
func (c *Controller) regionLease(ctx context.Context, region string) (lease.Record, bool) {
	return c.leases.Read(ctx, c.st, region)
}

// agentLive reports whether the side's agent renews its lease.
func (c *Controller) agentLive(ctx context.Context, s GroupSide) bool {
	return c.leases.AgentLive(ctx, c.st, s.Location)
}

// fenceDone reports whether side s can no longer accept writes as a primary of an epoch
// before epoch: its agent confirmed it stopped in epoch, or its agent's lease has surely
// expired, which means the agent (or its guard) has stopped it.
func (c *Controller) fenceDone(ctx context.Context, s GroupSide, epoch int64, stopped bool) (bool, string) {
	if stopped {
		return true, "the agent stopped it"
	}
	rec, live := c.regionLease(ctx, s.Location)
	if rec.Fenced[s.InstanceUID] == epoch {
		return true, "the agent confirmed it stopped"
	}
	if !live {
		return true, "its agent's lease expired"
	}
	return false, ""
}
