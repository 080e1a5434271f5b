package controller

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fogdb/fog/internal/agent"
	"github.com/fogdb/fog/internal/agent/agenttest"
	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/engine"
	"github.com/fogdb/fog/internal/failpoint"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// world is the real agent (package agent), one per region, reconciling in-memory PostgreSQL
// servers (package agenttest) to the desired state and renewing leases. A region whose agent
// is down has its agent stopped; its guard stops the region's primaries a moment later, as the
// guard process does once the lease would have lapsed. The servers count how many ever
// accepted writes at once.
type world struct {
	t   *testing.T
	st  store.Store
	net *agenttest.Net
	dir string
	ctx context.Context

	mu     sync.Mutex
	agents map[string]func() // the regions whose agent runs, and how to stop it
	// guardAfter is how long after its agent died a primary is stopped by the guard.
	guardAfter time.Duration
	wg         sync.WaitGroup // the agents and anything a test starts beside them
}

func newWorld(ctx context.Context, t *testing.T, st store.Store) *world {
	dir := t.TempDir()
	return &world{t: t, st: st, net: agenttest.NewNet(filepath.Join(dir, "instances")), dir: dir, ctx: ctx,
		agents: map[string]func(){}, guardAfter: 150 * time.Millisecond}
}

// issuer signs nothing: the servers are in memory.
type issuer struct{}

func (issuer) Issue([]string, []net.IP) ([]byte, []byte, error) {
	return []byte("crt"), []byte("key"), nil
}
func (issuer) IssueReplication(string) ([]byte, []byte, error) {
	return []byte("replication crt"), []byte("replication key"), nil
}

// start runs the agent of region. The caller holds w.mu.
func (w *world) start(region string) {
	a, err := agent.New(agent.Config{
		Region: region, Dir: filepath.Join(w.dir, region), Resync: 50 * time.Millisecond, Observe: 100 * time.Millisecond,
		// The controller's tests judge leases with a TTL of 300 ms: the agent renews well
		// within it and would fence its primaries before it ran out.
		Lease:   lease.Timing{TTL: time.Second, Renew: 50 * time.Millisecond, StoreTimeout: 100 * time.Millisecond, FenceAfter: 250 * time.Millisecond},
		Servers: w.net.Server,
	}, w.st, nil, issuer{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(w.ctx)
	done := make(chan struct{})
	w.wg.Go(func() { _ = a.Run(ctx); close(done) })
	w.agents[region] = func() { cancel(); <-done }
}

// setDown stops the agent of region (its guard fences its primaries after guardAfter unless it
// is back by then), or starts it again.
func (w *world) setDown(region string, down bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	stop, up := w.agents[region]
	switch {
	case down && up:
		stop()
		delete(w.agents, region)
		w.wg.Go(func() {
			select {
			case <-time.After(w.guardAfter):
				w.guard(region)
			case <-w.ctx.Done():
			}
		})
	case !down && !up:
		w.start(region)
	}
}

// guard stops the primaries of region if its agent is still down.
func (w *world) guard(region string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, up := w.agents[region]; up {
		return
	}
	specs, _ := store.List[instance.Spec](context.Background(), w.st, instance.SpecPrefix(region))
	for _, s := range specs {
		if p := w.net.PG(s.UID); p != nil {
			p.Do(func(p *agenttest.PG) {
				if p.Running && !p.Recovery {
					p.Running, p.Drained = false, false
				}
			})
		}
	}
}

// waitServers waits until the server of primary runs as a primary on a timeline after the
// first and the server of standby follows it.
func (w *world) waitServers(t *testing.T, primary, standby string) {
	t.Helper()
	var p, s agenttest.PG
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		w.net.PG(primary).Do(func(pg *agenttest.PG) { p = *pg })
		w.net.PG(standby).Do(func(pg *agenttest.PG) { s = *pg })
		if p.Running && !p.Recovery && p.Timeline > 1 && s.Running && s.Recovery && s.Timeline == p.Timeline {
			return
		}
	}
	t.Errorf("servers: %s running %v, in recovery %v, timeline %d; %s running %v, in recovery %v, timeline %d; want a primary on a new timeline and its standby",
		primary, p.Running, p.Recovery, p.Timeline, standby, s.Running, s.Recovery, s.Timeline)
}

// stopAll stops every agent.
func (w *world) stopAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for r, stop := range w.agents {
		stop()
		delete(w.agents, r)
	}
}

// startWorld opens a store, writes a replicating group, starts the agents of both regions
// (the secondary's once its primary is ready, since a standby whose first seed fails is a
// failed create) and a controller. stop ends them all.
func startWorld(t *testing.T) (ctx context.Context, w *world, c *Controller, stop func()) {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w = newWorld(ctx, t, st)
	stop = func() {
		w.stopAll()
		cancel()
		w.wg.Wait()
		st.Close()
	}
	c = newTestController(t, st)
	setupGroup(t, c)
	w.setDown("eastus", false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var p instance.Status
		if _, err := store.Get(ctx, st, instance.StatusKey("eastus", "uid-p"), &p); err == nil && p.Phase == instance.PhaseReady {
			break
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatal("the primary does not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.setDown("westus", false)
	waitSettled(t, c)
	return ctx, w, c, stop
}

// setupGroup writes two instances and a replicating group straight into the store.
func setupGroup(t *testing.T, c *Controller) {
	t.Helper()
	ctx := context.Background()
	ms := []resource.ManagedInstance{
		{UID: "uid-p", Subscription: "sub", ResourceGroup: "rg-p", Name: "mi-p", Location: "eastus", Host: "127.0.0.1", Port: 1, DNSZone: "zone", FailoverGroup: "fg", ProvisioningState: resource.ProvisioningSucceeded},
		{UID: "uid-s", Subscription: "sub", ResourceGroup: "rg-s", Name: "mi-s", Location: "westus", Host: "127.0.0.2", Port: 1, DNSZone: "zone", FailoverGroup: "fg", ProvisioningState: resource.ProvisioningSucceeded},
	}
	for _, m := range ms {
		if err := store.Put(ctx, c.st, miKey(m.Subscription, m.ResourceGroup, m.Name), m); err != nil {
			t.Fatal(err)
		}
	}
	g := &FailoverGroup{
		Name: "fg", ID: "gid", Epoch: 1, SeedGeneration: 1,
		Sides: [2]GroupSide{
			{Subscription: "sub", ResourceGroup: "rg-p", Location: "eastus", InstanceName: "mi-p", InstanceUID: "uid-p"},
			{Subscription: "sub", ResourceGroup: "rg-s", Location: "westus", InstanceName: "mi-s", InstanceUID: "uid-s"},
		},
		Members: [2]Member{{Role: instance.RolePrimary}, {Role: instance.RoleStandby, SeedGeneration: 1}},
	}
	if aerr := c.writeGroup(ctx, g, 0); aerr != nil {
		t.Fatal(aerr)
	}
}

func newTestController(t *testing.T, st store.Store) *Controller {
	t.Helper()
	c, err := New(Config{Regions: []string{"eastus", "westus"}, LeaseTTL: 300 * time.Millisecond, OperationTimeout: time.Minute},
		st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// crashAt runs a controller until it reaches failpoint point (where it stops dead, as a
// crash would: nothing after the point runs) or ctx ends.
func crashAt(ctx context.Context, c *Controller, point string) (crashed bool) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var once sync.Once
	hit := make(chan struct{})
	failpoint.SetHook(func(name string) {
		if name == point {
			once.Do(func() { close(hit) })
			runtime.Goexit()
		}
	})
	defer failpoint.SetHook(nil)
	done := make(chan struct{})
	go func() { _ = c.Run(cctx); close(done) }()
	select {
	case <-hit:
		crashed = true
	case <-ctx.Done():
	}
	cancel()
	<-done
	return crashed
}

type outcome struct {
	status  string
	primary int
	g       FailoverGroup
	op      Operation
}

func waitOutcome(t *testing.T, c *Controller, id string, within time.Duration) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for {
		var op Operation
		if _, err := store.Get(ctx, c.st, opKey(id), &op); err == nil && op.Terminal() {
			var g FailoverGroup
			_, _ = store.Get(ctx, c.st, fogKey("fg"), &g)
			return outcome{status: op.Status, primary: g.Primary, g: g, op: op}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("operation %s not finished within %s", id, within)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestFailoverResumesAfterCrashAtEveryStep crashes the controller at every step of planned
// and forced failover and starts a new one on the same store, with healthy agents over
// in-memory PostgreSQL: the failover must end Succeeded with the side asked for as primary,
// the group free and not switching, the servers following, and never two servers accepting
// writes.
func TestFailoverResumesAfterCrashAtEveryStep(t *testing.T) {
	points := map[bool][]string{
		false: {failpoint.PlannedAccepted, failpoint.PlannedCheckpoint, failpoint.PlannedFenced, failpoint.PlannedStopped,
			failpoint.PlannedPromoting, failpoint.PlannedPromoted, failpoint.PlannedRouted, failpoint.PlannedRejoining},
		true: {failpoint.ForcedAccepted, failpoint.ForcedFenced, failpoint.ForcedConfirmed, failpoint.ForcedPromoting,
			failpoint.ForcedPromoted, failpoint.ForcedRouted, failpoint.ForcedRejoining},
	}
	for _, force := range []bool{false, true} {
		for _, point := range points[force] {
			t.Run(point, func(t *testing.T) {
				ctx, w, c, stop := startWorld(t)
				defer stop()
				st := c.st
				op, aerr := c.Failover(ctx, "sub", "rg-s", "westus", "fg", force)
				if aerr != nil {
					t.Fatalf("Failover: %v", aerr)
				}
				cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
				crashed := crashAt(cctx, c, point)
				ccancel()
				if !crashed {
					t.Fatalf("the controller never reached %s", point)
				}
				// A new controller (as after a restart) takes over from the record.
				if busy := c.groupBusyAt(ctx); !errors.Is(busy, fault.ErrBusy) {
					t.Errorf("after the crash groupBusy = %v, want an error that is fault.ErrBusy: the group must stay busy", busy)
				}
				c2 := newTestController(t, st)
				got := waitOutcome(t, c2, op.ID, 30*time.Second)
				if got.status != arm.StatusSucceeded || got.primary != 1 {
					t.Errorf("outcome = %s with primary side %d, want Succeeded with side 1 (err %v)", got.status, got.primary, got.op.Error)
				}
				if got.g.Switching || got.g.ActiveOperation != "" {
					t.Errorf("group after the operation: switching %v, active operation %q; want neither", got.g.Switching, got.g.ActiveOperation)
				}
				// The servers come to say the same as the group: the secondary was promoted (a
				// new timeline) and the old primary follows it.
				w.waitServers(t, "uid-s", "uid-p")
				if n := w.net.MostWriters(); n > 1 {
					t.Errorf("%d servers accepted writes at once", n)
				}
			})
		}
	}
}

func (c *Controller) groupBusyAt(ctx context.Context) error {
	var g FailoverGroup
	if _, err := store.Get(ctx, c.st, fogKey("fg"), &g); err != nil {
		return internalError(err)
	}
	return c.groupBusy(ctx, &g)
}

// waitSettled waits until the group's secondary streams from its primary, so an operation
// starts from a healthy group.
func waitSettled(t *testing.T, c *Controller) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var g FailoverGroup
		_, _ = store.Get(context.Background(), c.st, fogKey("fg"), &g)
		st := c.statuses(context.Background(), &g)
		if engine.Streaming(st[g.Secondary()]) && st[g.Primary].Role == instance.RolePrimary {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the fake group does not replicate")
}

// TestForcedFailoverWaitsForLeaseWhenAgentIsDead: the old primary's agent is dead and its
// server keeps running until the guard stops it. The controller must not promote before the
// lease has expired on its own clock, and then must.
func TestForcedFailoverWaitsForLeaseWhenAgentIsDead(t *testing.T) {
	ctx, w, c, stop := startWorld(t)
	defer stop()
	w.setDown("eastus", true)
	start := time.Now()
	op, aerr := c.Failover(ctx, "sub", "rg-s", "westus", "fg", true)
	if aerr != nil {
		t.Fatal(aerr)
	}
	got := waitOutcome(t, c, op.ID, 10*time.Second)
	took := time.Since(start)
	if got.status != arm.StatusSucceeded || got.primary != 1 {
		t.Fatalf("outcome = %s primary %d (%v), want Succeeded on side 1", got.status, got.primary, got.op.Error)
	}
	if took < c.cfg.LeaseTTL {
		t.Errorf("forced failover took %s, less than the lease TTL %s: it promoted before the old lease surely expired", took, c.cfg.LeaseTTL)
	}
	if n := w.net.MostWriters(); n > 1 {
		t.Errorf("%d servers accepted writes at once", n)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestStatusFromBeforeALapsedLeaseIsNotNews: an agent that let its lease lapse has fenced
// its primaries since it last published; once it renews the lease (a new incarnation), what
// it published before does not show a stopped primary as Ready.
func TestStatusFromBeforeALapsedLeaseIsNotNews(t *testing.T) {
	ctx, w, c, stop := startWorld(t)
	defer stop()
	state := func() string {
		v, err := c.GetInstance(ctx, "sub", "rg-p", "mi-p")
		if err != nil {
			t.Fatal(err)
		}
		return v.Properties.State
	}
	if s := state(); s != "Ready" {
		t.Fatalf("primary instance state %q, want Ready", s)
	}
	// The agent is cut off: its guard stops the primary, and nothing publishes that.
	w.setDown("eastus", true)
	waitFor(t, "the guard to stop the primary", func() bool {
		var p agenttest.PG
		w.net.PG("uid-p").Do(func(pg *agenttest.PG) { p = *pg })
		return !p.Running
	})
	// The lease comes back (as a renewal after the lapse writes it) before any new status.
	var rec lease.Record
	if _, err := store.Get(ctx, c.st, lease.Key("eastus"), &rec); err != nil {
		t.Fatal(err)
	}
	rec.Seq++
	rec.Incarnation++
	if err := store.Put(ctx, c.st, lease.Key("eastus"), rec); err != nil {
		t.Fatal(err)
	}
	if s := state(); s == "Ready" {
		t.Error("a status published before the lease lapsed shows the fenced primary Ready")
	}
	// The agent returns, starts the primary again and publishes under its lease.
	w.setDown("eastus", false)
	waitFor(t, "the primary to be Ready again", func() bool { return state() == "Ready" }, 10*time.Second)
}
