package controller

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/store"
)

// regionLease reads a region's lease record and reports whether it is live on this
// controller's clock (package lease: no two clocks are compared).
func (c *Controller) regionLease(ctx context.Context, region string) (lease.Record, bool) {
	var rec lease.Record
	kv, err := c.st.Get(ctx, lease.Key(region))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return rec, true // the store did not answer: assume the worst, that it may be held
	}
	if err == nil {
		_ = json.Unmarshal(kv.Value, &rec)
	}
	return rec, c.leases.Live(lease.Key(region), kv.Rev)
}

// agentLive reports whether the side's agent renews its lease.
func (c *Controller) agentLive(ctx context.Context, s GroupSide) bool {
	_, live := c.regionLease(ctx, s.Location)
	return live
}

// holdsLease reports whether side s's agent holds it as primary of epoch under a live lease.
func (c *Controller) holdsLease(ctx context.Context, s GroupSide, epoch int64) bool {
	rec, live := c.regionLease(ctx, s.Location)
	return live && rec.Claims[s.InstanceUID] == epoch
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
