package group

import (
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/resource"
)

// Replication reads the lag from the primary's pg_stat_replication row for the secondary:
// bytes between the primary's WAL end and what the secondary flushed ("hardened"). st is
// both sides' observed state, indexed as Sides.
func (g *FailoverGroup) Replication(st [2]instance.Status) *resource.ReplicationStatus {
	sec := st[g.Secondary()]
	r := &resource.ReplicationStatus{Epoch: g.Epoch, SeedingPercentComplete: sec.SeedPercent, SeedSource: sec.SeedSource, SeedBackup: sec.SeedBackup,
		SeedFallback: sec.SeedFallback}
	prim := st[g.Primary].Replication
	if prim == nil || prim.InRecovery {
		return r
	}
	app := pgtypes.SlotName(g.Sides[g.Secondary()].InstanceUID)
	for _, rep := range prim.Replicas {
		if rep.AppName != app {
			continue
		}
		r.LastHardenedLSN = rep.FlushLSN
		r.LastHardenedTime = rep.ReplyTime
		lag := rep.FlushLag
		r.LagSeconds = &lag
		cur, err1 := pgtypes.ParseLSN(prim.CurrentLSN)
		fl, err2 := pgtypes.ParseLSN(rep.FlushLSN)
		if err1 == nil && err2 == nil {
			b := int64(0)
			if cur > fl {
				b = int64(cur - fl)
			}
			r.LagBytes = &b
		}
	}
	if r.LagBytes == nil {
		// The secondary is not connected (a partition, a restart): its slot still holds the
		// WAL it has not flushed, so the lag keeps being reported, and grows with every write.
		slot := pgtypes.SlotName(g.Sides[g.Secondary()].InstanceUID)
		for _, s := range prim.Slots {
			cur, err1 := pgtypes.ParseLSN(prim.CurrentLSN)
			rl, err2 := pgtypes.ParseLSN(s.RestartLSN)
			if s.Name != slot || err1 != nil || err2 != nil {
				continue
			}
			b := int64(0)
			if cur > rl {
				b = int64(cur - rl)
			}
			r.LagBytes, r.LastHardenedLSN = &b, s.RestartLSN
		}
	}
	return r
}
