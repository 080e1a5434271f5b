// Package autofailover is Fog's automatic failover policy (readWriteEndpoint.failoverPolicy
// Automatic). The leader's controller runs it once a second (Policy.Tick), and makes a new
// Policy for each leadership.
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
//
// # What it needs
//
// The policy does not import the controller; whoever runs it hands it its edges in Deps:
// the leader's engine (the store it reads groups, instances and observed state from and
// writes its events through, and leases judged on this process's clock), how to start a
// forced failover, the control plane's probe of a primary, and the deployment's
// observe-only switch. The lease TTL is the engine's lease observer's.
package autofailover

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/fogdb/fog/internal/engine"
	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// Engine is what the policy reads and writes through: the leader's engine (package engine).
type Engine interface {
	// Store is the leader's store, whose every write carries the leadership's token.
	Store() store.Store
	// RegionLease reads a region's lease record and reports whether it is live on this
	// process's clock.
	RegionLease(ctx context.Context, region string) (lease.Record, bool)
	// Statuses returns both sides' observed state.
	Statuses(ctx context.Context, g *group.FailoverGroup) [2]instance.Status
}

var _ Engine = (*engine.Engine)(nil)

// Deps are the policy's edges.
type Deps struct {
	Engine Engine
	// StartForced records a forced failover of g, read at store revision rev, to side
	// target, started by initiator, and has it driven; it returns the operation's id. It
	// fails, writing nothing, when the group changed since rev.
	StartForced func(ctx context.Context, g *group.FailoverGroup, rev int64, target int, initiator string) (opID string, err error)
	// Probe is the control plane's own probe of a primary at addr (host:port), bounded in
	// time: nil when it answered.
	Probe func(ctx context.Context, addr string) error
	// ObserveOnly runs every group's policy as events only (the deployment's switch; a group
	// has its own too).
	ObserveOnly bool
	Log         *slog.Logger
	// Now is the clock outages are timed on (nil: time.Now).
	Now func() time.Time
}

// Policy is the automatic failover policy of one leadership: it remembers the outages it
// has seen while the leadership lasts. Tick is called from one goroutine at a time.
type Policy struct {
	d Deps
	// outages are the regions the policy sees down.
	outages map[string]*outage
}

// New returns the policy of a new leadership: it has seen no outage yet.
func New(d Deps) *Policy {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	return &Policy{d: d, outages: map[string]*outage{}}
}

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

// since is how long ago t was on the policy's clock.
func (p *Policy) since(t time.Time) time.Duration { return p.d.Now().Sub(t) }

// Tick runs the policy once.
func (p *Policy) Tick(ctx context.Context) {
	groups, err := store.List[group.FailoverGroup](ctx, p.d.Engine.Store(), group.Prefix)
	if err != nil {
		return
	}
	byRegion := map[string][]group.FailoverGroup{}
	for _, g := range groups {
		if g.ReadWritePolicy != "Automatic" || g.Deleting || g.GraceMinutes == nil {
			continue
		}
		r := g.Sides[g.Primary].Location
		byRegion[r] = append(byRegion[r], g)
	}
	for r, o := range p.outages {
		if len(byRegion[r]) == 0 {
			p.d.Log.Info("automatic failover: no Automatic group has its primary in the region any more", "region", r, "outage", p.since(o.since).Round(time.Second))
			delete(p.outages, r)
		}
	}
	for region, all := range byRegion {
		// A group whose operation runs is the engine's: its evidence changes as the failover
		// goes on (its standby becomes the primary), so only idle groups are looked at, and
		// an outage whose groups are all busy stays as it is.
		var gs []group.FailoverGroup
		for _, g := range all {
			if g.ActiveOperation == "" {
				gs = append(gs, g)
			}
		}
		if len(gs) == 0 {
			continue
		}
		ev := p.evidence(ctx, region, gs)
		down, why := regionDown(ev)
		if ev.LeaseLost && !down {
			p.d.Log.Debug("automatic failover: region's lease lost, but the region does not count as down", "region", region, "because", why)
		}
		o := p.outages[region]
		if !down {
			if o != nil {
				delete(p.outages, region)
				p.d.Log.Warn("automatic failover: the region is no longer down; nothing done", "region", region, "after", p.since(o.since).Round(time.Second), "because", why)
				for _, g := range gs {
					if !o.done[g.Name] {
						p.event(ctx, g.Name, "AutomaticFailoverCancelled", fmt.Sprintf("region %s is reachable again after %s (%s), before the grace period ended; nothing was done", region, p.since(o.since).Round(time.Second), why))
					}
				}
				continue
			}
			continue
		}
		fresh := o == nil
		if fresh {
			o = &outage{since: p.d.Now(), why: why, done: map[string]bool{}, started: map[string]string{}}
			p.outages[region] = o
		}
		if fresh {
			p.d.Log.Warn("automatic failover: region looks down", "region", region, "because", why)
			for _, g := range gs {
				p.event(ctx, g.Name, "AutomaticFailoverPending", fmt.Sprintf("region %s looks down (%s); a forced failover follows if this lasts the grace period of %d minutes", region, why, *g.GraceMinutes))
			}
		}
		for _, g := range gs {
			if id, ok := o.started[g.Name]; ok {
				// Its failover ended and the primary is still here: it did not succeed.
				p.d.Log.Warn("automatic failover did not succeed; trying again", "group", g.Name, "operation", id)
				delete(o.started, g.Name)
				delete(o.done, g.Name)
			}
			if o.done[g.Name] || p.since(o.since) < time.Duration(*g.GraceMinutes)*time.Minute {
				continue
			}
			if p.actOnGroup(ctx, g, region, o) {
				o.done[g.Name] = true
			}
		}
	}
}

// actOnGroup fails g over by force, or records why not; false means try again next time.
func (p *Policy) actOnGroup(ctx context.Context, g group.FailoverGroup, region string, o *outage) bool {
	cur, rev, err := p.loadGroup(ctx, g.Name)
	if err != nil || cur.Sides[cur.Primary].Location != region || cur.ActiveOperation != "" {
		return err == nil // the group moved on meanwhile; nothing to do
	}
	st := p.d.Engine.Statuses(ctx, cur)
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
		p.d.Log.Warn("automatic failover blocked by the data-loss budget", "group", g.Name, "why", over)
		p.event(ctx, g.Name, "AutomaticFailoverBlocked", fmt.Sprintf("region %s has been down for %s, but %s (%s); the group waits for a person: force a failover of the secondary %s by hand to accept the loss",
			region, p.since(o.since).Round(time.Second), over, desc, sec.InstanceName))
		return true
	}
	if cur.ObserveOnly || p.d.ObserveOnly {
		p.d.Log.Warn("automatic failover observed, not acted on", "group", g.Name)
		p.event(ctx, g.Name, "AutomaticFailoverObserved", fmt.Sprintf("would force a failover to %s (%s) now: region %s has been down for %s (%s); %s. Observe-only: nothing was done",
			sec.InstanceName, sec.Location, region, p.since(o.since).Round(time.Second), o.why, desc))
		return true
	}
	id, aerr := p.d.StartForced(ctx, cur, rev, target, engine.InitiatorSystem)
	if aerr != nil {
		p.d.Log.Error("automatic failover could not start; retrying", "group", g.Name, "err", aerr)
		return false
	}
	o.started[g.Name] = id
	p.d.Log.Warn("automatic failover started", "group", g.Name, "to", sec.InstanceName, "region down for", p.since(o.since).Round(time.Second), "loss", desc)
	return true
}

// lossEstimate is how far the secondary was behind the primary's last report: the WAL the
// primary had written past what the secondary received, and the primary's last flush lag.
func lossEstimate(g *group.FailoverGroup, st [2]instance.Status) (bytes int64, secs *float64, known bool) {
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
func overBudget(g *group.FailoverGroup, bytes int64, secs *float64, known bool) string {
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
func (p *Policy) evidence(ctx context.Context, region string, gs []group.FailoverGroup) regionEvidence {
	_, live := p.d.Engine.RegionLease(ctx, region)
	ev := regionEvidence{LeaseLost: !live, Groups: make([]groupEvidence, len(gs))}
	if !ev.LeaseLost {
		return ev // the rule needs nothing more
	}
	var wg sync.WaitGroup
	for i := range gs {
		g := &gs[i]
		sec := g.Sides[g.Secondary()]
		rec, live := p.d.Engine.RegionLease(ctx, sec.Location)
		ge := groupEvidence{Name: g.Name, SecondaryAgentLive: live}
		if pr, ok := rec.Probes[sec.InstanceUID]; ok {
			ge.Probe = &pr
		}
		ev.Groups[i] = ge
		var m resource.ManagedInstance
		if _, err := store.Get(ctx, p.d.Engine.Store(), g.Sides[g.Primary].InstanceKey(), &m); err != nil {
			continue
		}
		wg.Go(func() {
			ev.Groups[i].ControlPlaneReached = p.d.Probe(ctx, net.JoinHostPort(m.Host, strconv.Itoa(m.Port))) == nil
		})
	}
	wg.Wait()
	return ev
}

// event records an event of the automatic policy in a group.
func (p *Policy) event(ctx context.Context, name, kind, msg string) {
	_, _ = store.Update(ctx, p.d.Engine.Store(), group.Key(name), func(g *group.FailoverGroup) error {
		g.EventBy(engine.InitiatorSystem, kind, msg, nil)
		return nil
	})
}

// loadGroup reads a group and its revision.
func (p *Policy) loadGroup(ctx context.Context, name string) (*group.FailoverGroup, int64, error) {
	var g group.FailoverGroup
	rev, err := store.Get(ctx, p.d.Engine.Store(), group.Key(name), &g)
	return &g, rev, err
}
