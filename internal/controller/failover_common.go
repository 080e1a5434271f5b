package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// Bounds of the failover steps. A planned failover gives up (and rolls back, losing nothing)
// when the old primary does not shut down, or the secondary does not receive its last WAL,
// within these.
const (
	fenceTimeout   = 30 * time.Second
	promoteTimeout = 30 * time.Second
	rejoinTimeout  = 90 * time.Second
)

// stepGroup applies fn to the stored group and writes it with both members' specs, retrying
// when someone else wrote in between.
func (c *Controller) stepGroup(ctx context.Context, name string, fn func(g *FailoverGroup)) (*FailoverGroup, [2]int64, error) {
	for {
		var g FailoverGroup
		rev, err := store.Get(ctx, c.st, fogKey(name), &g)
		if err != nil {
			return nil, [2]int64{}, err
		}
		fn(&g)
		gens, aerr := c.writeGroupGens(ctx, &g, rev)
		if aerr == nil {
			return &g, gens, nil
		}
		if !errors.Is(aerr, fault.ErrBusy) || ctx.Err() != nil {
			return nil, gens, aerr
		}
	}
}

// waitSide waits until side's observed state satisfies ok.
func (c *Controller) waitSide(ctx context.Context, s GroupSide, timeout time.Duration, ok func(st instance.Status) bool) (instance.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	key := instance.StatusKey(s.Location, s.InstanceUID)
	var st instance.Status
	err := c.waitFor(ctx, key, func() (bool, error) {
		st = instance.Status{}
		if _, err := store.Get(ctx, c.st, key, &st); err != nil && !errors.Is(err, store.ErrNotFound) {
			return false, err
		}
		return ok(st), nil
	})
	return st, err
}

func streaming(st instance.Status) bool {
	return st.Phase == instance.PhaseReady && st.Role == instance.RoleStandby && st.Replication != nil && st.Replication.ReceiverStatus == "streaming"
}

func hasSlot(st instance.Status, slot string) bool {
	if st.Replication == nil {
		return false
	}
	for _, s := range st.Replication.Slots {
		if s.Name == slot {
			return true
		}
	}
	return false
}

func (c *Controller) setPercent(ctx context.Context, id string, p float64) {
	_, _ = store.Update(ctx, c.st, opKey(id), func(o *Operation) error { o.Percent = &p; return nil })
}

// recordLost copies what a rewind reported it discarded into the group's last forced
// failover, once, with an event.
func (c *Controller) recordLost(ctx context.Context, name string) {
	var g FailoverGroup
	if _, err := store.Get(ctx, c.st, fogKey(name), &g); err != nil || g.LastForced == nil || g.LastForced.LostKnown {
		return
	}
	old := g.Sides[g.Secondary()]
	var st instance.Status
	if _, err := store.Get(ctx, c.st, instance.StatusKey(old.Location, old.InstanceUID), &st); err != nil {
		return
	}
	if st.Rewound == nil || st.Rewound.Epoch != g.LastForced.Epoch || st.Rewound.Decoded && !st.Rewound.Resolved {
		return // not rewound yet, or the relations are not named yet
	}
	lost := lostWAL(st.Rewound)
	_, _ = store.Update(ctx, c.st, fogKey(name), func(g *FailoverGroup) error {
		if g.LastForced == nil || g.LastForced.LostKnown {
			return nil
		}
		g.LastForced.LostWAL, g.LastForced.LostKnown = lost, true
		g.EventBy(InitiatorSystem, "LostWAL", fmt.Sprintf("the forced failover of epoch %d on %s: %s", g.LastForced.Epoch, old.InstanceName, lost.Summary()), lost)
		return nil
	})
	c.noteLostInActivity(ctx, g.LastForced.OperationID, lost)
	c.log.Warn("forced failover lost WAL", "group", name, "from", lost.FromLSN, "to", lost.ToLSN, "bytes", lost.Bytes, "transactions", lost.TransactionsLost)
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

// command sends a one-shot command to a side's agent and waits for it.
func (c *Controller) command(ctx context.Context, s GroupSide, kind string, timeout time.Duration) error {
	got, err := c.runCommand(ctx, s.Location, instance.Command{InstanceUID: s.InstanceUID, Kind: kind}, timeout)
	if err != nil {
		return err
	}
	if got.Error != "" {
		return errors.New(got.Error)
	}
	return nil
}

// monitor looks after groups between operations: it records what a forced failover lost once
// the old primary's rewind reports it, and reseeds a secondary whose slot the primary
// invalidated (max_slot_wal_keep_size), which leaves it SUSPENDED until then.
func (c *Controller) monitor(ctx context.Context) {
	groups, err := store.List[FailoverGroup](ctx, c.st, "fog/")
	if err != nil {
		return
	}
	for _, g := range groups {
		if g.ActiveOperation != "" || g.Deleting {
			continue
		}
		c.recordLost(ctx, g.Name)
		var prim, sec instance.Status
		ps, ss := g.Sides[g.Primary], g.Sides[g.Secondary()]
		primRev, _ := store.Get(ctx, c.st, instance.StatusKey(ps.Location, ps.InstanceUID), &prim)
		secRev, _ := store.Get(ctx, c.st, instance.StatusKey(ss.Location, ss.InstanceUID), &sec)
		seeded := sec.SeededGeneration >= g.Members[g.Secondary()].SeedGeneration
		// The store revision at which this controller first saw the current seed done: the
		// primary's view of the slot counts only if written after it (revisions, not two
		// agents' clocks, order the two).
		seedKey := fmt.Sprintf("%s/%d", g.ID, g.Members[g.Secondary()].SeedGeneration)
		seedRev, ok := c.seedSeen[seedKey]
		if seeded && !ok {
			seedRev = secRev
			c.seedSeen[seedKey] = seedRev
		}
		slot := pgtypes.SlotName(g.Sides[g.Secondary()].InstanceUID)
		lost := false
		if prim.Replication != nil {
			for _, s := range prim.Replication.Slots {
				lost = lost || (s.Name == slot && s.WALStatus == "lost")
			}
		}
		// The primary's view must postdate the last seed, which replaced the lost slot.
		if lost && seeded && primRev > seedRev {
			c.log.Warn("secondary fell too far behind (slot invalidated); reseeding it", "group", g.Name, "secondary", g.Sides[g.Secondary()].InstanceName)
			_, _, err := c.stepGroup(ctx, g.Name, func(g *FailoverGroup) {
				g.SeedGeneration = newSeedGeneration(g.SeedGeneration)
				g.Members[g.Secondary()].SeedGeneration = g.SeedGeneration
				g.EventBy(InitiatorSystem, "Reseed", "the secondary fell further behind than max_slot_wal_keep_size allows; reseeding it", nil)
			})
			if err != nil {
				c.log.Error("reseed", "group", g.Name, "err", err)
			}
		}
	}
}
