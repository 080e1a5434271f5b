package engine

import (
	"context"
	"fmt"

	"github.com/fogdb/fog/internal/activity"
	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// RegionLease reads a region's lease record and reports whether it is live on this
// process's clock (package lease: no two clocks are compared).
func (e *Engine) RegionLease(ctx context.Context, region string) (lease.Record, bool) {
	return e.leases.Read(ctx, e.st, region)
}

// Current reports whether st, published by region's agent, describes its servers as they are
// now: the agent has not let its lease lapse (and fenced its primaries) since publishing it.
func (e *Engine) Current(ctx context.Context, region string, st instance.Status) bool {
	rec, _ := e.RegionLease(ctx, region)
	return lease.Current(rec, st.LeaseIncarnation)
}

// AgentLive reports whether the side's agent renews its lease.
func (e *Engine) AgentLive(ctx context.Context, s GroupSide) bool {
	return e.leases.AgentLive(ctx, e.st, s.Location)
}

// fenceDone reports whether side s can no longer accept writes as a primary of an epoch
// before epoch: its agent confirmed it stopped in epoch, or its agent's lease has surely
// expired, which means the agent (or its guard) has stopped it.
func (e *Engine) fenceDone(ctx context.Context, s GroupSide, epoch int64, stopped bool) (bool, string) {
	if stopped {
		return true, "the agent stopped it"
	}
	rec, live := e.RegionLease(ctx, s.Location)
	if rec.Fenced[s.InstanceUID] == epoch {
		return true, "the agent confirmed it stopped"
	}
	if !live {
		return true, "its agent's lease expired"
	}
	return false, ""
}

// RecordLost copies what a rewind reported it discarded into the group's last forced
// failover, once, with an event, and into the activity log.
func (e *Engine) RecordLost(ctx context.Context, name string) {
	var g FailoverGroup
	if _, err := store.Get(ctx, e.st, group.Key(name), &g); err != nil || g.LastForced == nil || g.LastForced.LostKnown {
		return
	}
	old := g.Sides[g.Secondary()]
	var st instance.Status
	if _, err := store.Get(ctx, e.st, instance.StatusKey(old.Location, old.InstanceUID), &st); err != nil {
		return
	}
	if st.Rewound == nil || st.Rewound.Epoch != g.LastForced.Epoch || st.Rewound.Decoded && !st.Rewound.Resolved {
		return // not rewound yet, or the relations are not named yet
	}
	lost := lostWAL(st.Rewound)
	_, _ = store.Update(ctx, e.st, group.Key(name), func(g *FailoverGroup) error {
		if g.LastForced == nil || g.LastForced.LostKnown {
			return nil
		}
		g.LastForced.LostWAL, g.LastForced.LostKnown = lost, true
		g.EventBy(InitiatorSystem, "LostWAL", fmt.Sprintf("the forced failover of epoch %d on %s: %s", g.LastForced.Epoch, old.InstanceName, lost.Summary()), lost)
		return nil
	})
	if err := activity.NoteLost(ctx, e.st, g.LastForced.OperationID, lost); err != nil {
		e.log.Warn("record the lost range in the activity log", "operation", g.LastForced.OperationID, "err", err)
	}
	e.log.Warn("forced failover lost WAL", "group", name, "from", lost.FromLSN, "to", lost.ToLSN, "bytes", lost.Bytes, "transactions", lost.TransactionsLost)
}

// lostWAL is the group's report of what an agent found in a rewound range.
func lostWAL(r *instance.LostWAL) *resource.LostWAL {
	lost := &resource.LostWAL{FromLSN: r.FromLSN, ToLSN: r.ToLSN, Bytes: r.Bytes, SavedIn: r.SavedIn}
	if r.Decoded {
		n := r.Committed
		lost.TransactionsLost = &n
		for _, t := range r.Transactions {
			lost.Transactions = append(lost.Transactions, resource.LostTransaction{XID: t.XID, CommitTime: t.CommitTime, Relations: t.Relations})
		}
	}
	return lost
}
