// Package lease is how a regional agent earns the right to keep a primary writable, and how
// the control plane knows when that right has surely lapsed.
//
// Each agent keeps one record per region, leases/<region>, which it rewrites every Renew
// interval from a loop of its own (Keeper.Run), so that nothing the agent does to PostgreSQL
// can delay it. The record claims, per instance, the epoch in which the store names it the
// primary; the write is guarded by the revisions of those instances' desired state, so a
// claim can only be renewed while the desired state it was read from is still current (the
// compare etcd's election Proclaim uses on the leader key). An agent that has not renewed for
// FenceAfter stops its primaries at once; a guard process that outlives the agent (package
// guard) does the same if the agent itself is dead.
//
// The control plane never compares its clock with an agent's. An Observer notes the store
// revision of each region's record and the local monotonic time at which it first saw that
// revision; the lease is live until TTL has passed on the observer's own clock without a new
// revision (CloudNativePG's lease runnable does the same). Because the agent fences at
// FenceAfter < TTL after it *sent* a renewal, and the observer counts TTL from when it *saw*
// one, the agent has always stopped writing before the observer calls the lease expired.
package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fogdb/fog/internal/store"
)

// Record is the stored lease of one region's agent.
type Record struct {
	Region string `json:"region"`
	// Seq counts renewals; every renewal changes the record and so its revision.
	Seq int64 `json:"seq"`
	// Incarnation changes with every agent process and whenever the agent renews a lease it
	// had let lapse (so fenced its primaries): observed state the agent published under an
	// earlier incarnation may describe servers that have been stopped since (Current).
	Incarnation int64 `json:"incarnation,omitempty"`
	// Claims maps an instance uid to the epoch in which the agent holds it as primary.
	Claims map[string]int64 `json:"claims,omitempty"`
	// Fenced maps an instance uid to the epoch in which the agent confirmed it stopped.
	Fenced map[string]int64 `json:"fenced,omitempty"`
	// Probes are, per standby uid, the agent's last looks at the standby's primary: the
	// partner region's testimony for the automatic failover policy, as fresh as the lease.
	Probes map[string]Probe `json:"probes,omitempty"`
}

// Current reports whether observed state published under incarnation describes the region's
// servers as they are under the lease record rec: the agent has not let its lease lapse
// since it published it.
func Current(rec Record, incarnation int64) bool { return rec.Incarnation == incarnation }

// Probe is an agent's last look at a standby's primary (its replication endpoint).
type Probe struct {
	Reachable bool `json:"reachable"`
	// Failures counts the looks in a row that failed (one a second).
	Failures int `json:"failures,omitempty"`
}

// Key is the store key of a region's lease.
func Key(region string) string { return "leases/" + region }

// Prefix is the prefix of every lease key.
const Prefix = "leases/"

// Timing of leases. Renew + 2*StoreTimeout <= FenceAfter < TTL (Patroni's rule
// loop_wait + 2*retry_timeout <= ttl, with the fence margin on top).
type Timing struct {
	// TTL is how long the control plane waits without seeing a renewal before it treats the
	// lease as expired and may promote another primary.
	TTL time.Duration
	// Renew is the interval between renewals.
	Renew time.Duration
	// StoreTimeout bounds one renewal.
	StoreTimeout time.Duration
	// FenceAfter is how long after its last successful renewal an agent stops its primaries.
	FenceAfter time.Duration
}

// DefaultTTL is the lease TTL unless configured.
const DefaultTTL = 4 * time.Second

// Validate fills the defaults from TTL and checks the timing rule.
func (t *Timing) Validate() error {
	if t.TTL == 0 {
		t.TTL = DefaultTTL
	}
	if t.TTL < time.Second {
		return fmt.Errorf("lease TTL %s is below the minimum of 1s", t.TTL)
	}
	if t.Renew == 0 {
		t.Renew = t.TTL / 8
	}
	if t.StoreTimeout == 0 {
		t.StoreTimeout = t.TTL / 4
	}
	if t.FenceAfter == 0 {
		t.FenceAfter = t.TTL * 3 / 4
	}
	if t.Renew+2*t.StoreTimeout > t.FenceAfter || t.FenceAfter >= t.TTL {
		return errors.New("lease timing must satisfy renew + 2*storeTimeout <= fenceAfter < ttl")
	}
	return nil
}

// Observer tells, on the control plane's own clock, whether a region's lease is live.
type Observer struct {
	ttl time.Duration
	now func() time.Time

	mu   sync.Mutex
	seen map[string]seen
}

type seen struct {
	rev int64
	at  time.Time
}

// NewObserver returns an observer for leases of the given TTL. now is the clock (nil: time.Now).
func NewObserver(ttl time.Duration, now func() time.Time) *Observer {
	if now == nil {
		now = time.Now
	}
	return &Observer{ttl: ttl, now: now, seen: map[string]seen{}}
}

// TTL is the lease TTL the observer counts with.
func (o *Observer) TTL() time.Duration { return o.ttl }

// Note records that key has revision rev now and returns how long ago, on the observer's
// clock, that revision was first seen. A key never seen before counts as just renewed: an
// observer that has just started waits a full TTL before it calls any lease expired.
func (o *Observer) Note(key string, rev int64) time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	s, ok := o.seen[key]
	if !ok || s.rev != rev {
		s = seen{rev: rev, at: now}
		o.seen[key] = s
	}
	return now.Sub(s.at)
}

// Live reports whether the lease at key, currently at revision rev, may still be held.
// rev 0 (no record) is live only until TTL after the observer first looked.
func (o *Observer) Live(key string, rev int64) bool { return o.Note(key, rev) < o.ttl }

// Read reads a region's lease record from st and reports whether the lease is live on the
// observer's clock. A store that does not answer counts as live: the lease may be held.
func (o *Observer) Read(ctx context.Context, st store.Store, region string) (Record, bool) {
	var rec Record
	kv, err := st.Get(ctx, Key(region))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return rec, true
	}
	if err == nil {
		_ = json.Unmarshal(kv.Value, &rec)
	}
	return rec, o.Live(Key(region), kv.Rev)
}

// AgentLive reports whether region's agent renews its lease.
func (o *Observer) AgentLive(ctx context.Context, st store.Store, region string) bool {
	_, live := o.Read(ctx, st, region)
	return live
}

// Holds reports whether region's agent holds instance uid as primary of epoch under a live
// lease.
func (o *Observer) Holds(ctx context.Context, st store.Store, region, uid string, epoch int64) bool {
	rec, live := o.Read(ctx, st, region)
	return live && rec.Claims[uid] == epoch
}
