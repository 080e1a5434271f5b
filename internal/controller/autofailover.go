package controller

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/fogdb/fog/internal/engine"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// The automatic failover policy (readWriteEndpoint.failoverPolicy Automatic) runs in the
// leader's controller, once a second.
//
// # The decision rule
//
// A region R is down when all of these hold at once, and stays down while they do:
//
//  1. R's agent has lost its lease: the controller has seen no renewal for the lease TTL on
//     its own clock. (R's primaries are then fenced: the agent or its guard stopped them.)
//  2. The control plane's own probe of every Automatic group's primary in R fails (a TCP
//     connection and an SSLRequest to the primary's address, one second).
//  3. No secondary's agent reaches its primary in R, and at least one does not: a secondary
//     agent that holds its own lease reports, with every renewal, its last probes of the
//     primary's replication endpoint (one a second), and three failures in a row count as
//     "cannot reach".
//
// Each observer can be cut off on its own: the control plane from R (1 and 2 hold, but R's
// partner still reaches the primary: 3 fails), R's partner from R (3 holds, but R's agent
// renews: 1 fails), or the control plane from everything (the partner's agent has no live
// lease, so its reports do not count: 3 fails). Only R vanishing for all of them at once, or
// R's primary being unreachable for everyone (fenced), satisfies the rule. A primary that
// only the control plane cannot see is not down.
//
// After a group's grace period (failoverWithDataLossGracePeriodMinutes) of continuous
// outage, every Automatic group whose primary is in R is failed over by force, as a user's
// forced failover is, with initiator "system": unless its secondary is behind by more than
// the group's data-loss budget, or the group (or the deployment) runs the policy
// observe-only; both are recorded as events. Manual groups are never touched, and nothing
// fails back by itself. A new leader counts the grace period afresh.

// regionEvidence is what the observers say about one region.
type regionEvidence struct {
	// LeaseLost: the region's agent has not renewed its lease for the TTL.
	LeaseLost bool
	Groups    []groupEvidence
}

// groupEvidence is what the observers say about one group's primary in the region.
type groupEvidence struct {
	Name string
	// ControlPlaneReached: the control plane's probe reached the primary.
	ControlPlaneReached bool
	// SecondaryAgentLive: the secondary's agent holds its lease, so its probe counts.
	SecondaryAgentLive bool
	// Probe is the secondary agent's last look at the primary (nil: none).
	Probe *lease.Probe
}

// minProbeFailures is how many failed probes in a row a secondary's agent must report.
const minProbeFailures = 3

// regionDown applies the decision rule; why says which observer holds it back, or why
// the region counts as down.
func regionDown(ev regionEvidence) (down bool, why string) {
	if !ev.LeaseLost {
		return false, "the region's agent renews its lease"
	}
	confirmed := ""
	for _, g := range ev.Groups {
		if g.ControlPlaneReached {
			return false, fmt.Sprintf("the control plane reaches the primary of %s", g.Name)
		}
		if !g.SecondaryAgentLive || g.Probe == nil {
			continue
		}
		if g.Probe.Reachable {
			return false, fmt.Sprintf("the secondary's agent of %s reaches its primary", g.Name)
		}
		if g.Probe.Failures >= minProbeFailures && confirmed == "" {
			confirmed = g.Name
		}
	}
	if confirmed == "" {
		return false, "no live agent in another region confirms that the primaries are unreachable"
	}
	return true, fmt.Sprintf("the agent's lease expired, the control plane cannot reach the primaries, and the secondary's agent of %s cannot either", confirmed)
}

// outage is a region's outage as the leader has seen it.
type outage struct {
	since time.Time
	why   string
	// done: groups the policy has acted on (or decided not to) in this outage.
	done map[string]bool
	// started: the failover the policy started for a group; if it fails, the group is
	// tried again while the outage lasts.
	started map[string]string
}

// autoFailover runs the policy once.
func (c *Controller) autoFailover(ctx context.Context, t *term) {
	e := t.eng
	groups, err := store.List[FailoverGroup](ctx, e.Store(), "fog/")
	if err != nil {
		return
	}
	byRegion := map[string][]FailoverGroup{}
	for _, g := range groups {
		if g.ReadWritePolicy != "Automatic" || g.Deleting || g.GraceMinutes == nil {
			continue
		}
		r := g.Sides[g.Primary].Location
		byRegion[r] = append(byRegion[r], g)
	}
	for r, o := range t.outages {
		if len(byRegion[r]) == 0 {
			c.log.Info("automatic failover: no Automatic group has its primary in the region any more", "region", r, "outage", time.Since(o.since).Round(time.Second))
			delete(t.outages, r)
		}
	}
	for region, all := range byRegion {
		// A group whose operation runs is the engine's: its evidence changes as the failover
		// goes on (its standby becomes the primary), so only idle groups are looked at, and
		// an outage whose groups are all busy stays as it is.
		var gs []FailoverGroup
		for _, g := range all {
			if g.ActiveOperation == "" {
				gs = append(gs, g)
			}
		}
		if len(gs) == 0 {
			continue
		}
		ev := c.evidence(ctx, e, region, gs)
		down, why := regionDown(ev)
		if ev.LeaseLost && !down {
			c.log.Debug("automatic failover: region's lease lost, but the region does not count as down", "region", region, "because", why)
		}
		o := t.outages[region]
		if !down {
			if o != nil {
				delete(t.outages, region)
				c.log.Warn("automatic failover: the region is no longer down; nothing done", "region", region, "after", time.Since(o.since).Round(time.Second), "because", why)
				for _, g := range gs {
					if !o.done[g.Name] {
						groupEvent(ctx, e, g.Name, "AutomaticFailoverCancelled", fmt.Sprintf("region %s is reachable again after %s (%s), before the grace period ended; nothing was done", region, time.Since(o.since).Round(time.Second), why))
					}
				}
				continue
			}
			continue
		}
		fresh := o == nil
		if fresh {
			o = &outage{since: time.Now(), why: why, done: map[string]bool{}, started: map[string]string{}}
			t.outages[region] = o
		}
		if fresh {
			c.log.Warn("automatic failover: region looks down", "region", region, "because", why)
			for _, g := range gs {
				groupEvent(ctx, e, g.Name, "AutomaticFailoverPending", fmt.Sprintf("region %s looks down (%s); a forced failover follows if this lasts the grace period of %d minutes", region, why, *g.GraceMinutes))
			}
		}
		for _, g := range gs {
			if id, ok := o.started[g.Name]; ok {
				// Its failover ended and the primary is still here: it did not succeed.
				c.log.Warn("automatic failover did not succeed; trying again", "group", g.Name, "operation", id)
				delete(o.started, g.Name)
				delete(o.done, g.Name)
			}
			if o.done[g.Name] || time.Since(o.since) < time.Duration(*g.GraceMinutes)*time.Minute {
				continue
			}
			if c.actOnGroup(ctx, e, g, region, o) {
				o.done[g.Name] = true
			}
		}
	}
}

// actOnGroup fails g over by force, or records why not; false means try again next time.
func (c *Controller) actOnGroup(ctx context.Context, e *engine.Engine, g FailoverGroup, region string, o *outage) bool {
	cur, rev, err := loadGroup(ctx, e, g.Name)
	if err != nil || cur.Sides[cur.Primary].Location != region || cur.ActiveOperation != "" {
		return err == nil // the group moved on meanwhile; nothing to do
	}
	st := e.Statuses(ctx, cur)
	lossBytes, lossSecs, known := lossEstimate(cur, st)
	target := cur.Secondary()
	sec := cur.Sides[target]
	desc := fmt.Sprintf("estimated loss %d bytes", lossBytes)
	if lossSecs != nil {
		desc += fmt.Sprintf(", %.1f s", *lossSecs)
	}
	if !known {
		desc = "the loss cannot be estimated: the primary's last replication view is missing"
	}
	if over := overBudget(cur, lossBytes, lossSecs, known); over != "" {
		c.log.Warn("automatic failover blocked by the data-loss budget", "group", g.Name, "why", over)
		groupEvent(ctx, e, g.Name, "AutomaticFailoverBlocked", fmt.Sprintf("region %s has been down for %s, but %s (%s); the group waits for a person: force a failover of the secondary %s by hand to accept the loss",
			region, time.Since(o.since).Round(time.Second), over, desc, sec.InstanceName))
		return true
	}
	if cur.ObserveOnly || c.cfg.ObserveOnly {
		c.log.Warn("automatic failover observed, not acted on", "group", g.Name)
		groupEvent(ctx, e, g.Name, "AutomaticFailoverObserved", fmt.Sprintf("would force a failover to %s (%s) now: region %s has been down for %s (%s); %s. Observe-only: nothing was done",
			sec.InstanceName, sec.Location, region, time.Since(o.since).Round(time.Second), o.why, desc))
		return true
	}
	op, aerr := c.startFailover(ctx, e, cur, rev, target, true, InitiatorSystem)
	if aerr != nil {
		c.log.Error("automatic failover could not start; retrying", "group", g.Name, "err", aerr)
		return false
	}
	o.started[g.Name] = op.ID
	c.log.Warn("automatic failover started", "group", g.Name, "to", sec.InstanceName, "region down for", time.Since(o.since).Round(time.Second), "loss", desc)
	return true
}

// lossEstimate is how far the secondary was behind the primary's last report: the WAL the
// primary had written past what the secondary received, and the primary's last flush lag.
func lossEstimate(g *FailoverGroup, st [2]instance.Status) (bytes int64, secs *float64, known bool) {
	prim, sec := st[g.Primary].Replication, st[g.Secondary()].Replication
	if prim == nil || prim.InRecovery || sec == nil {
		return 0, nil, false
	}
	p, err1 := pgtypes.ParseLSN(prim.CurrentLSN)
	s, err2 := pgtypes.ParseLSN(sec.CurrentLSN)
	if err1 != nil || err2 != nil {
		return 0, nil, false
	}
	if p > s {
		bytes = int64(p - s)
	}
	return bytes, g.Replication(st).LagSeconds, true
}

// overBudget says how a loss exceeds the group's budget, or "" when it does not.
func overBudget(g *FailoverGroup, bytes int64, secs *float64, known bool) string {
	if g.MaxLossBytes == nil && g.MaxLossSeconds == nil {
		return ""
	}
	if !known {
		return "the group has a data-loss budget and the loss cannot be estimated"
	}
	if g.MaxLossBytes != nil && bytes > *g.MaxLossBytes {
		return fmt.Sprintf("the secondary is %d bytes behind, more than maxDataLossBytes %d", bytes, *g.MaxLossBytes)
	}
	if g.MaxLossSeconds != nil {
		if secs == nil {
			return "the secondary's lag in seconds is unknown and maxDataLossSeconds is set"
		}
		if *secs > float64(*g.MaxLossSeconds) {
			return fmt.Sprintf("the secondary is %.1f s behind, more than maxDataLossSeconds %d", *secs, *g.MaxLossSeconds)
		}
	}
	return ""
}

// evidence gathers what the observers say about region, probing the primaries at once.
func (c *Controller) evidence(ctx context.Context, e *engine.Engine, region string, gs []FailoverGroup) regionEvidence {
	ev := regionEvidence{LeaseLost: !c.leases.AgentLive(ctx, e.Store(), region), Groups: make([]groupEvidence, len(gs))}
	if !ev.LeaseLost {
		return ev // the rule needs nothing more
	}
	var wg sync.WaitGroup
	for i := range gs {
		g := &gs[i]
		sec := g.Sides[g.Secondary()]
		rec, live := e.RegionLease(ctx, sec.Location)
		ge := groupEvidence{Name: g.Name, SecondaryAgentLive: live}
		if p, ok := rec.Probes[sec.InstanceUID]; ok {
			ge.Probe = &p
		}
		ev.Groups[i] = ge
		var m resource.ManagedInstance
		if _, err := store.Get(ctx, e.Store(), g.Sides[g.Primary].InstanceKey(), &m); err != nil {
			continue
		}
		wg.Go(func() {
			ev.Groups[i].ControlPlaneReached = pgtypes.Probe(ctx, net.JoinHostPort(m.Host, strconv.Itoa(m.Port)), c.cfg.ProbeTimeout) == nil
		})
	}
	wg.Wait()
	return ev
}

// groupEvent records an event of the automatic policy in a group.
func groupEvent(ctx context.Context, e *engine.Engine, name, kind, msg string) {
	_, _ = store.Update(ctx, e.Store(), fogKey(name), func(g *FailoverGroup) error {
		g.EventBy(InitiatorSystem, kind, msg, nil)
		return nil
	})
}

// loadGroup reads a group and its revision.
func loadGroup(ctx context.Context, e *engine.Engine, name string) (*FailoverGroup, int64, error) {
	var g FailoverGroup
	rev, err := store.Get(ctx, e.Store(), fogKey(name), &g)
	return &g, rev, err
}
