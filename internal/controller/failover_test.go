package controller

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/failpoint"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// fakePG is a simulated PostgreSQL server: enough state to tell who accepts writes.
type fakePG struct {
	running, recovery bool
	drained           bool // no client may write
	lsn, received     int64
	upstream          string // the server it last followed
}

// world is a set of fake agents, one per region, reconciling fake servers to the desired
// state as the real agent does, and renewing leases. It fails the test if two servers ever
// accept writes at once.
type world struct {
	t  *testing.T
	st store.Store

	mu        sync.Mutex
	pg        map[string]*fakePG
	down      map[string]bool // regions whose agent is dead
	writers   int
	maxWriter int
	// guardAfter is how long after its agent died a primary is stopped by the guard.
	guardAfter time.Duration
	diedAt     map[string]time.Time
	wg         sync.WaitGroup // the fake agents and anything a test starts beside them
}

func newWorld(t *testing.T, st store.Store) *world {
	return &world{t: t, st: st, pg: map[string]*fakePG{}, down: map[string]bool{}, diedAt: map[string]time.Time{}, guardAfter: 150 * time.Millisecond}
}

func (w *world) countWriters() {
	n := 0
	for _, p := range w.pg {
		if p.running && !p.recovery && !p.drained {
			n++
		}
	}
	w.writers = n
	w.maxWriter = max(w.maxWriter, n)
}

func (w *world) run(ctx context.Context, region string) {
	events := w.st.Watch(ctx, instance.SpecPrefix(region))
	cmds := w.st.Watch(ctx, instance.CommandPrefix(region))
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var seq int64
	for {
		w.mu.Lock()
		dead := w.down[region]
		if dead {
			// The guard stops the region's primaries once the lease would have lapsed.
			if time.Since(w.diedAt[region]) > w.guardAfter {
				w.guard(ctx, region)
			}
		}
		w.mu.Unlock()
		if !dead {
			seq++
			w.reconcile(ctx, region, seq)
		}
		select {
		case <-ctx.Done():
			return
		case <-events:
		case <-cmds:
		case <-tick.C:
		}
	}
}

func (w *world) guard(ctx context.Context, region string) {
	specs, _ := store.List[instance.Spec](ctx, w.st, instance.SpecPrefix(region))
	for _, s := range specs {
		if p := w.pg[s.UID]; p != nil && p.running && !p.recovery {
			p.running = false
		}
	}
	w.countWriters()
}

func (w *world) reconcile(ctx context.Context, region string, seq int64) {
	kvs, err := w.st.List(ctx, instance.SpecPrefix(region))
	if err != nil {
		return
	}
	rec := lease.Record{Region: region, Seq: seq, Claims: map[string]int64{}, Fenced: map[string]int64{}}
	var conds []store.Cond
	for _, kv := range kvs {
		var s instance.Spec
		_ = json.Unmarshal(kv.Value, &s)
		st := w.apply(ctx, s)
		_ = store.Put(ctx, w.st, instance.StatusKey(region, s.UID), st)
		if s.Role == instance.RolePrimary && !s.Paused {
			rec.Claims[s.UID] = s.Epoch
			conds = append(conds, store.Cond{Key: kv.Key, Rev: kv.Rev})
		}
		if s.Paused && st.Phase == instance.PhaseStopped {
			rec.Fenced[s.UID] = s.Epoch
		}
	}
	_ = w.st.Txn(ctx, conds, []store.Op{store.PutOp(lease.Key(region), rec)})
	cmds, _ := store.List[instance.Command](ctx, w.st, instance.CommandPrefix(region))
	for _, c := range cmds {
		if !c.Done {
			c.Done = true
			_ = store.Put(ctx, w.st, instance.CommandKey(region, c.ID), c)
		}
	}
}

func lsn(n int64) string { return pgtypes.LSN(n).String() }

// apply reconciles one fake server to its spec and returns its observed state.
func (w *world) apply(ctx context.Context, s instance.Spec) instance.Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.pg[s.UID]
	if p == nil {
		p = &fakePG{running: true, recovery: s.Role == instance.RoleStandby, lsn: 1000}
		w.pg[s.UID] = p
	}
	defer w.countWriters()
	st := instance.Status{UID: s.UID, ObservedGeneration: s.Generation, Epoch: s.Epoch, Phase: instance.PhaseReady, SeededGeneration: s.SeedGeneration}
	if s.Upstream != nil {
		p.upstream = s.Upstream.UID
	}
	partner := w.pg[p.upstream]
	p.drained = s.Drain
	switch {
	case s.Drain:
		st.Role = instance.RolePrimary
		if !p.running {
			st.Phase = instance.PhaseStopped
			return st
		}
		st.Phase, st.DrainedLSN = instance.PhaseDrained, lsn(p.lsn)
		return st
	case s.Paused:
		p.running = false
		st.Phase, st.Role = instance.PhaseStopped, instance.RolePrimary
		return st
	case s.Role == instance.RolePrimary || s.Role == "":
		p.running = true
		if p.recovery {
			if partner != nil && partner.running && partner.drained {
				p.received = max(p.received, partner.lsn) // a drained primary's WAL sender runs on
			}
			if s.PromoteAfterLSN != "" {
				want, _ := pgtypes.ParseLSN(s.PromoteAfterLSN)
				if pgtypes.LSN(p.received) < want {
					st.Role, st.Error, st.Reason = instance.RoleStandby, "not caught up", instance.ReasonNotCaughtUp
					return st
				}
			}
			p.recovery = false
			p.lsn = max(p.lsn, p.received) + 1
			st.PromotedFrom = lsn(p.received)
		}
		p.lsn++ // clients write
		st.Role = instance.RolePrimary
		st.Replication = &pgtypes.Replication{CurrentLSN: lsn(p.lsn)}
		for _, slot := range s.Slots {
			st.Replication.Slots = append(st.Replication.Slots, pgtypes.Slot{Name: slot, Active: true, WALStatus: "reserved"})
			st.Replication.Replicas = append(st.Replication.Replicas, pgtypes.Replica{AppName: slot, State: "streaming", FlushLSN: lsn(p.lsn)})
		}
	case s.Role == instance.RoleStandby:
		if p.running && !p.recovery {
			p.running = false // a primary told to follow: stop, rewind
		}
		p.running, p.recovery = true, true
		st.Role = instance.RoleStandby
		st.Replication = &pgtypes.Replication{InRecovery: true}
		if partner != nil && partner.running && !partner.recovery {
			p.received = partner.lsn
			st.Replication.ReceiverStatus = "streaming"
		}
		if s.Rewind {
			st.Rewound = &instance.LostWAL{Epoch: s.Epoch, FromLSN: lsn(p.received), ToLSN: lsn(p.lsn)}
		}
	}
	return st
}

// startWorld opens a store, starts fake agents for both regions and a controller, and writes a
// replicating group. stop ends them all.
func startWorld(t *testing.T) (ctx context.Context, w *world, c *Controller, stop func()) {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w = newWorld(t, st)
	for _, r := range []string{"eastus", "westus"} {
		w.wg.Go(func() { w.run(ctx, r) })
	}
	stop = func() {
		cancel()
		w.wg.Wait()
		st.Close()
	}
	c = newTestController(t, st)
	setupGroup(t, c)
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
// and forced failover and starts a new one on the same store, with healthy fake agents: the
// failover must end Succeeded with the side asked for as primary, the group free and not
// switching, and never two servers accepting writes.
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
				w.mu.Lock()
				defer w.mu.Unlock()
				if w.maxWriter > 1 {
					t.Errorf("%d servers accepted writes at once", w.maxWriter)
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
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var g FailoverGroup
		_, _ = store.Get(context.Background(), c.st, fogKey("fg"), &g)
		st := c.statuses(context.Background(), &g)
		if streaming(st[g.Secondary()]) && st[g.Primary].Role == instance.RolePrimary {
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
	w.mu.Lock()
	w.down["eastus"], w.diedAt["eastus"] = true, time.Now()
	w.mu.Unlock()
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
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.maxWriter > 1 {
		t.Errorf("%d servers accepted writes at once", w.maxWriter)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
