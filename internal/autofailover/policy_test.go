package autofailover_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/autofailover"
	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// The policy is tested through Deps: a real store (bbolt) holds the group, its primary's
// instance and the events the policy writes; the engine's leases and observed state, the
// control plane's probe, the clock and the start of a forced failover are fakes.

const (
	primaryRegion   = "eastus"
	secondaryRegion = "westus"
	primaryUID      = "uid-p"
	secondaryUID    = "uid-s"
	primaryAddr     = "10.0.0.1:5432"
)

// edges are the fakes a policy is made with.
type edges struct {
	st store.Store

	mu sync.Mutex
	// live: the regions whose agent renews its lease.
	live map[string]bool
	// partnerProbe is the secondary region's agent's last look at the primary (nil: none).
	partnerProbe *lease.Probe
	// reached: the control plane's probe reaches the primary.
	reached bool
	probed  []string
	status  map[string]instance.Status
	now     time.Time
	starts  []start
	// failStart makes StartForced fail.
	failStart bool
}

type start struct {
	group     string
	rev       int64
	target    int
	initiator string
}

func (e *edges) Store() store.Store { return e.st }

func (e *edges) RegionLease(_ context.Context, region string) (lease.Record, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec := lease.Record{Region: region}
	if region == secondaryRegion && e.partnerProbe != nil {
		rec.Probes = map[string]lease.Probe{secondaryUID: *e.partnerProbe}
	}
	return rec, e.live[region]
}

func (e *edges) Statuses(_ context.Context, g *group.FailoverGroup) [2]instance.Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return [2]instance.Status{e.status[g.Sides[0].InstanceUID], e.status[g.Sides[1].InstanceUID]}
}

func (e *edges) probe(_ context.Context, addr string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.probed = append(e.probed, addr)
	if e.reached {
		return nil
	}
	return errors.New("no answer")
}

// startForced records the failover as the controller does: the group is marked busy in a
// transaction conditional on the revision the policy read.
func (e *edges) startForced(ctx context.Context, g *group.FailoverGroup, rev int64, target int, initiator string) (string, error) {
	e.mu.Lock()
	fail := e.failStart
	e.starts = append(e.starts, start{g.Name, rev, target, initiator})
	e.mu.Unlock()
	if fail {
		return "", errors.New("the store does not answer")
	}
	g.ActiveOperation, g.OperationKind = "op-1", "ForceFailover"
	if err := e.st.Txn(ctx, []store.Cond{{Key: group.Key(g.Name), Rev: rev}}, []store.Op{store.PutOp(group.Key(g.Name), g)}); err != nil {
		return "", err
	}
	return "op-1", nil
}

func (e *edges) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *edges) advance(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = e.now.Add(d)
}

// regionVanishes makes every observer agree that the primary's region is gone.
func (e *edges) regionVanishes() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.live[primaryRegion] = false
	e.reached = false
	e.partnerProbe = &lease.Probe{Failures: 3}
}

// regionReturns makes the primary's agent renew its lease again.
func (e *edges) regionReturns() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.live[primaryRegion] = true
}

func (e *edges) started() []start {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]start(nil), e.starts...)
}

func (e *edges) policy(observeOnly bool) *autofailover.Policy {
	return autofailover.New(autofailover.Deps{Engine: e, StartForced: e.startForced, Probe: e.probe, ObserveOnly: observeOnly, Now: e.clock})
}

// newEdges stores one group, "fg", with its primary in eastus, as edit leaves it; both
// regions' agents renew their leases and nothing is unreachable.
func newEdges(t *testing.T, edit func(g *group.FailoverGroup)) *edges {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	grace := 60
	g := group.FailoverGroup{
		Name: "fg", ReadWritePolicy: "Automatic", GraceMinutes: &grace, Epoch: 1,
		Sides: [2]group.GroupSide{
			{Subscription: "sub", ResourceGroup: "rg-p", Location: primaryRegion, InstanceName: "mi-p", InstanceUID: primaryUID},
			{Subscription: "sub", ResourceGroup: "rg-s", Location: secondaryRegion, InstanceName: "mi-s", InstanceUID: secondaryUID},
		},
	}
	if edit != nil {
		edit(&g)
	}
	m := resource.ManagedInstance{Name: "mi-p", Location: primaryRegion, UID: primaryUID, Host: "10.0.0.1", Port: 5432}
	ctx := context.Background()
	if err := st.Txn(ctx, nil, []store.Op{store.PutOp(group.Key(g.Name), g), store.PutOp(g.Sides[0].InstanceKey(), m)}); err != nil {
		t.Fatal(err)
	}
	return &edges{
		st:   st,
		live: map[string]bool{primaryRegion: true, secondaryRegion: true},
		// The secondary is 4 KiB behind, with a flush lag of 2 s.
		status: map[string]instance.Status{
			primaryUID: {Replication: &pgtypes.Replication{CurrentLSN: "0/2000",
				Replicas: []pgtypes.Replica{{AppName: pgtypes.SlotName(secondaryUID), FlushLSN: "0/1000", FlushLag: 2}}}},
			secondaryUID: {Replication: &pgtypes.Replication{InRecovery: true, CurrentLSN: "0/1000"}},
		},
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

// events are the kinds of the events the policy recorded in the group, with their
// initiators.
func (e *edges) events(t *testing.T) []string {
	t.Helper()
	var g group.FailoverGroup
	if _, err := store.Get(context.Background(), e.st, group.Key("fg"), &g); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range g.Events {
		out = append(out, ev.Initiator+" "+ev.Kind)
	}
	return out
}

// lastMessage is the message of the group's last event.
func (e *edges) lastMessage(t *testing.T) string {
	t.Helper()
	var g group.FailoverGroup
	if _, err := store.Get(context.Background(), e.st, group.Key("fg"), &g); err != nil || len(g.Events) == 0 {
		t.Fatalf("no event (%v)", err)
	}
	return g.Events[len(g.Events)-1].Message
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func wantEvents(t *testing.T, e *edges, want ...string) {
	t.Helper()
	if got := e.events(t); !equal(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
}

// An outage every observer agrees on is an event at once and a forced failover to the
// secondary, with initiator system, once it has lasted the grace period; a failover that
// ends with the primary still in the region is started again.
func TestOutageLastingTheGracePeriodFailsOver(t *testing.T) {
	ctx := context.Background()
	e := newEdges(t, nil)
	p := e.policy(false)
	p.Tick(ctx)
	wantEvents(t, e)
	if len(e.probed) != 0 {
		t.Errorf("a region whose agent renews was probed: %q", e.probed)
	}

	e.regionVanishes()
	p.Tick(ctx)
	wantEvents(t, e, "system AutomaticFailoverPending")
	if len(e.probed) != 1 || e.probed[0] != primaryAddr {
		t.Errorf("probed %q, want the primary's address %s once", e.probed, primaryAddr)
	}
	e.advance(59*time.Minute + 59*time.Second)
	p.Tick(ctx)
	if s := e.started(); len(s) != 0 {
		t.Fatalf("a failover started before the grace period ended: %v", s)
	}

	e.advance(time.Second)
	var before group.FailoverGroup
	rev, _ := store.Get(ctx, e.st, group.Key("fg"), &before)
	p.Tick(ctx)
	s := e.started()
	if want := (start{"fg", rev, 1, "system"}); len(s) != 1 || s[0] != want {
		t.Fatalf("started %v, want %v", s, want)
	}
	wantEvents(t, e, "system AutomaticFailoverPending")

	// The group is busy with its failover: the policy leaves it alone.
	p.Tick(ctx)
	if s := e.started(); len(s) != 1 {
		t.Fatalf("a busy group was failed over again: %v", s)
	}

	// The failover failed: the group is free and its primary is still in the region.
	if _, err := store.Update(ctx, e.st, group.Key("fg"), func(g *group.FailoverGroup) error {
		g.ActiveOperation, g.OperationKind = "", ""
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	p.Tick(ctx)
	if s := e.started(); len(s) != 2 {
		t.Fatalf("a failed automatic failover was not tried again: %v", s)
	}
}

// A failover that cannot start is tried again at the next tick.
func TestFailoverThatCannotStartIsRetried(t *testing.T) {
	ctx := context.Background()
	e := newEdges(t, nil)
	p := e.policy(false)
	e.regionVanishes()
	e.failStart = true
	p.Tick(ctx)
	e.advance(time.Hour)
	p.Tick(ctx)
	e.failStart = false
	p.Tick(ctx)
	if s := e.started(); len(s) != 2 {
		t.Fatalf("starts = %v, want a failed start and a retry", s)
	}
}

// An outage that ends before the grace period is cancelled; the next one counts the grace
// period from its own start.
func TestBlipIsCancelled(t *testing.T) {
	ctx := context.Background()
	e := newEdges(t, nil)
	p := e.policy(false)
	e.regionVanishes()
	p.Tick(ctx)
	e.advance(30 * time.Minute)
	e.regionReturns()
	p.Tick(ctx)
	wantEvents(t, e, "system AutomaticFailoverPending", "system AutomaticFailoverCancelled")

	e.regionVanishes()
	p.Tick(ctx)
	e.advance(45 * time.Minute) // 75 minutes since the first outage began
	p.Tick(ctx)
	if s := e.started(); len(s) != 0 {
		t.Fatalf("the grace period counted from an earlier outage: %v", s)
	}
	wantEvents(t, e, "system AutomaticFailoverPending", "system AutomaticFailoverCancelled", "system AutomaticFailoverPending")
}

// A new leadership's policy counts the grace period afresh: it can only be later.
func TestNewLeaderCountsAfresh(t *testing.T) {
	ctx := context.Background()
	e := newEdges(t, nil)
	e.regionVanishes()
	e.policy(false).Tick(ctx)
	e.advance(59 * time.Minute)
	next := e.policy(false)
	next.Tick(ctx)
	e.advance(2 * time.Minute)
	next.Tick(ctx)
	if s := e.started(); len(s) != 0 {
		t.Fatalf("a new leader counted an outage it did not see: %v", s)
	}
	e.advance(58 * time.Minute)
	next.Tick(ctx)
	if s := e.started(); len(s) != 1 {
		t.Fatalf("starts = %v, want one after the new leader's grace period", s)
	}
}

// Each observer, cut off alone, keeps the region up: nothing is recorded or started.
func TestOneObserverCutOffDoesNothing(t *testing.T) {
	for _, c := range []struct {
		name string
		cut  func(e *edges)
	}{
		{"the primary's agent still renews (the partner is cut from the region)", func(e *edges) { e.live[primaryRegion] = true }},
		{"the partner still reaches the primary (the control plane is cut from the region)", func(e *edges) { e.partnerProbe = &lease.Probe{Reachable: true} }},
		{"the partner's agent has no lease (the control plane is cut from everything)", func(e *edges) { e.live[secondaryRegion] = false }},
		{"the control plane still reaches the primary", func(e *edges) { e.reached = true }},
		{"the partner has failed only twice", func(e *edges) { e.partnerProbe = &lease.Probe{Failures: 2} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEdges(t, nil)
			p := e.policy(false)
			e.regionVanishes()
			c.cut(e)
			p.Tick(ctx)
			e.advance(2 * time.Hour)
			p.Tick(ctx)
			wantEvents(t, e)
			if s := e.started(); len(s) != 0 {
				t.Errorf("started %v", s)
			}
		})
	}
}

// Observe-only, the group's or the deployment's, and a loss over the group's budget record
// why nothing was done, once per outage.
func TestRecordedInsteadOfActing(t *testing.T) {
	budget := int64(1000)
	for _, c := range []struct {
		name        string
		edit        func(g *group.FailoverGroup)
		observeOnly bool
		want        string
	}{
		{"the group observes only", func(g *group.FailoverGroup) { g.ObserveOnly = true }, false, "system AutomaticFailoverObserved"},
		{"the deployment observes only", nil, true, "system AutomaticFailoverObserved"},
		{"the secondary is 4096 bytes behind a 1000-byte budget", func(g *group.FailoverGroup) { g.MaxLossBytes = &budget }, false, "system AutomaticFailoverBlocked"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEdges(t, c.edit)
			p := e.policy(c.observeOnly)
			e.regionVanishes()
			p.Tick(ctx)
			e.advance(time.Hour)
			p.Tick(ctx)
			p.Tick(ctx)
			wantEvents(t, e, "system AutomaticFailoverPending", c.want)
			if s := e.started(); len(s) != 0 {
				t.Errorf("started %v", s)
			}
			// The event says what the failover would have lost: the WAL the secondary had
			// not received, and the primary's last flush lag.
			if msg := e.lastMessage(t); !strings.Contains(msg, "estimated loss 4096 bytes, 2.0 s") {
				t.Errorf("the event does not estimate the loss: %s", msg)
			}
		})
	}
}

// Manual groups, groups being deleted and busy groups are never touched.
func TestOnlyIdleAutomaticGroups(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(g *group.FailoverGroup)
	}{
		{"Manual", func(g *group.FailoverGroup) { g.ReadWritePolicy, g.GraceMinutes = "Manual", nil }},
		{"being deleted", func(g *group.FailoverGroup) { g.Deleting = true }},
		{"busy", func(g *group.FailoverGroup) { g.ActiveOperation = "op-0" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEdges(t, c.edit)
			p := e.policy(false)
			e.regionVanishes()
			p.Tick(ctx)
			e.advance(2 * time.Hour)
			p.Tick(ctx)
			wantEvents(t, e)
			if s := e.started(); len(s) != 0 || len(e.probed) != 0 {
				t.Errorf("started %v, probed %q", s, e.probed)
			}
		})
	}
}
