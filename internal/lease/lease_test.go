package lease

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fogdb/fog/internal/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTimingDefaultsAndRule(t *testing.T) {
	tm := Timing{}
	if err := tm.Validate(); err != nil {
		t.Fatal(err)
	}
	if tm.TTL != DefaultTTL || tm.Renew+2*tm.StoreTimeout > tm.FenceAfter || tm.FenceAfter >= tm.TTL {
		t.Errorf("defaults %+v break renew + 2*storeTimeout <= fenceAfter < ttl", tm)
	}
	for _, bad := range []Timing{{TTL: 500 * time.Millisecond}, {TTL: 4 * time.Second, FenceAfter: 5 * time.Second}, {TTL: 4 * time.Second, Renew: 3 * time.Second}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", bad)
		}
	}
}

// TestObserverCountsOnItsOwnClock: a lease is live until TTL passes, on the observer's clock,
// without a new revision; an observer that has just started counts every lease as renewed.
func TestObserverCountsOnItsOwnClock(t *testing.T) {
	now := time.Unix(1000, 0)
	o := NewObserver(4*time.Second, func() time.Time { return now })
	if !o.Live("leases/a", 7) {
		t.Fatal("a lease first seen now is not live")
	}
	now = now.Add(3 * time.Second)
	if !o.Live("leases/a", 7) {
		t.Fatal("lease not live 3 s after it was seen")
	}
	now = now.Add(2 * time.Second)
	if o.Live("leases/a", 7) {
		t.Fatal("lease live 5 s after its revision was first seen, TTL 4 s")
	}
	if !o.Live("leases/a", 8) {
		t.Fatal("a renewed lease (new revision) is not live")
	}
	if !o.Live("leases/b", 0) {
		t.Fatal("a lease the observer never saw must count as live for a TTL (it may be held)")
	}
}

// flaky is a store whose writes can be made to fail, as an unreachable store would.
type flaky struct {
	store.Store
	fail atomic.Bool
}

func (f *flaky) Txn(ctx context.Context, conds []store.Cond, ops []store.Op) error {
	if f.fail.Load() {
		return errors.New("store unreachable")
	}
	return f.Store.Txn(ctx, conds, ops)
}

type stops struct {
	mu  sync.Mutex
	uid []string
}

func (s *stops) stop(_ context.Context, uid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.uid = append(s.uid, uid)
	return nil
}

func (s *stops) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.uid)
}

func newKeeper(t *testing.T) (*Keeper, *flaky, *stops, func(Demands)) {
	t.Helper()
	b, err := store.OpenBolt(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	st := &flaky{Store: b}
	var mu sync.Mutex
	var d Demands
	set := func(x Demands) { mu.Lock(); d = x; mu.Unlock() }
	demands := func(context.Context) (Demands, error) { mu.Lock(); defer mu.Unlock(); return d, nil }
	s := &stops{}
	k, err := NewKeeper(KeeperConfig{Region: "r", Timing: Timing{TTL: time.Second}}, st, demands, s.stop,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return k, st, s, set
}

// TestKeeperFencesWhenItCannotRenew: a primary the agent holds is stopped once renewals have
// failed for FenceAfter, and not before.
func TestKeeperFencesWhenItCannotRenew(t *testing.T) {
	k, st, s, set := newKeeper(t)
	ctx := context.Background()
	if err := store.Put(ctx, st, "desired/r/u1", map[string]int{"x": 1}); err != nil {
		t.Fatal(err)
	}
	kv, _ := st.Get(ctx, "desired/r/u1")
	set(Demands{Claims: []Claim{{UID: "u1", Epoch: 3, Key: "desired/r/u1", Rev: kv.Rev}}})
	if !k.Acquire(ctx, "u1", 3) {
		t.Fatal("Acquire failed with the desired state unchanged")
	}
	if k.Holds("u1", 2) {
		t.Error("holds epoch 2; it claimed epoch 3")
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = k.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(2 * k.cfg.Timing.Renew)
	if s.count() != 0 {
		t.Fatal("fenced while renewals succeed")
	}
	inc := k.Incarnation()
	var rec Record
	if _, err := store.Get(ctx, st, Key("r"), &rec); err != nil || rec.Incarnation != inc {
		t.Fatalf("lease record incarnation %d (%v), keeper's %d", rec.Incarnation, err, inc)
	}
	st.fail.Store(true)
	failed := time.Now()
	for s.count() == 0 && time.Since(failed) < 3*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(failed)
	if s.count() == 0 {
		t.Fatal("the primary was not fenced after renewals failed")
	}
	if took > k.cfg.Timing.TTL {
		t.Errorf("fenced %s after renewals began to fail; must be before the TTL %s", took, k.cfg.Timing.TTL)
	}
	if k.Holds("u1", 3) {
		t.Error("still holds the lease after fencing")
	}
	// The store answers again: the renewed lease has a new incarnation, so what the agent
	// published before the fence (a primary that runs) no longer counts as current.
	if k.Incarnation() != inc {
		t.Errorf("incarnation changed to %d before any renewal succeeded", k.Incarnation())
	}
	st.fail.Store(false)
	eventually := time.Now().Add(3 * time.Second)
	for k.Incarnation() == inc && time.Now().Before(eventually) {
		time.Sleep(5 * time.Millisecond)
	}
	if k.Incarnation() != inc+1 {
		t.Fatalf("incarnation after the lapsed lease was renewed: %d, want %d", k.Incarnation(), inc+1)
	}
	if _, err := store.Get(ctx, st, Key("r"), &rec); err != nil || Current(rec, inc) || !Current(rec, inc+1) {
		t.Errorf("lease record incarnation %d (%v): a status of incarnation %d must not be current, one of %d must", rec.Incarnation, err, inc, inc+1)
	}
	time.Sleep(3 * k.cfg.Timing.Renew)
	if k.Incarnation() != inc+1 {
		t.Errorf("incarnation moved to %d while renewals succeed", k.Incarnation())
	}
}

// TestKeeperClaimGuardedByDesiredState: a claim read from desired state that changed since
// cannot be renewed, so a controller that demoted the primary sees no renewal of it.
func TestKeeperClaimGuardedByDesiredState(t *testing.T) {
	k, st, _, set := newKeeper(t)
	ctx := context.Background()
	_ = store.Put(ctx, st, "desired/r/u1", map[string]int{"x": 1})
	kv, _ := st.Get(ctx, "desired/r/u1")
	set(Demands{Claims: []Claim{{UID: "u1", Epoch: 3, Key: "desired/r/u1", Rev: kv.Rev}}})
	_ = store.Put(ctx, st, "desired/r/u1", map[string]int{"x": 2}) // demoted meanwhile
	if k.Acquire(ctx, "u1", 3) {
		t.Fatal("Acquire succeeded on stale desired state")
	}
}
