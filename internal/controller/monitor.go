package controller

import (
	"context"
	"fmt"

	"github.com/fogdb/fog/internal/engine"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/store"
)

// monitor looks after groups between operations: it records what a forced failover lost once
// the old primary's rewind reports it, and reseeds a secondary whose slot the primary
// invalidated (max_slot_wal_keep_size), which leaves it SUSPENDED until then.
func (c *Controller) monitor(ctx context.Context, t *term) {
	st := t.eng.Store()
	groups, err := store.List[FailoverGroup](ctx, st, "fog/")
	if err != nil {
		return
	}
	for _, g := range groups {
		if g.ActiveOperation != "" || g.Deleting {
			continue
		}
		t.eng.RecordLost(ctx, g.Name)
		var prim, sec instance.Status
		ps, ss := g.Sides[g.Primary], g.Sides[g.Secondary()]
		primRev, _ := store.Get(ctx, st, instance.StatusKey(ps.Location, ps.InstanceUID), &prim)
		secRev, _ := store.Get(ctx, st, instance.StatusKey(ss.Location, ss.InstanceUID), &sec)
		seeded := sec.SeededGeneration >= g.Members[g.Secondary()].SeedGeneration
		// The store revision at which this controller first saw the current seed done: the
		// primary's view of the slot counts only if written after it (revisions, not two
		// agents' clocks, order the two).
		seedKey := fmt.Sprintf("%s/%d", g.ID, g.Members[g.Secondary()].SeedGeneration)
		seedRev, ok := t.seedSeen[seedKey]
		if seeded && !ok {
			seedRev = secRev
			t.seedSeen[seedKey] = seedRev
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
			_, _, err := t.eng.StepGroup(ctx, g.Name, func(g *FailoverGroup) {
				g.SeedGeneration = engine.NewSeedGeneration(g.SeedGeneration)
				g.Members[g.Secondary()].SeedGeneration = g.SeedGeneration
				g.EventBy(InitiatorSystem, "Reseed", "the secondary fell further behind than max_slot_wal_keep_size allows; reseeding it", nil)
			})
			if err != nil {
				c.log.Error("reseed", "group", g.Name, "err", err)
			}
		}
	}
}
