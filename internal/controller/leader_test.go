package controller

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/election"
	"github.com/fogdb/fog/internal/failpoint"
	"github.com/fogdb/fog/internal/store"
)

// killable is one server's connection to the shared store: after kill, nothing it sends
// arrives, as after a kill -9 of that server.
type killable struct {
	store.Store
	dead atomic.Bool
}

var errDead = errors.New("server is dead")

func (k *killable) Txn(ctx context.Context, c []store.Cond, o []store.Op) error {
	if k.dead.Load() {
		return errDead
	}
	return k.Store.Txn(ctx, c, o)
}
func (k *killable) KeepAlive(ctx context.Context, id store.LeaseID) error {
	if k.dead.Load() {
		return errDead
	}
	return k.Store.KeepAlive(ctx, id)
}
func (k *killable) Grant(ctx context.Context, ttl time.Duration) (store.LeaseID, error) {
	if k.dead.Load() {
		return 0, errDead
	}
	return k.Store.Grant(ctx, ttl)
}

// TestLeaderDiesMidFailover runs two servers, each campaigning and driving operations only
// while it leads. The leader dies (nothing it sends arrives any more) right after recording
// a failover's promotion step; the other server leads once the old leader's lease has
// expired, and resumes the operation to Succeeded.
func TestLeaderDiesMidFailover(t *testing.T) {
	for _, force := range []bool{false, true} {
		point := failpoint.PlannedPromoting
		if force {
			point = failpoint.ForcedPromoting
		}
		t.Run(point, func(t *testing.T) {
			ctx, w, c, stop := startWorld(t)
			defer stop()
			servers := []*killable{{Store: c.st}, {Store: c.st}}
			var leader atomic.Int32
			leader.Store(-1)
			var crashed sync.Once
			failpoint.SetHook(func(name string) {
				if name != point {
					return
				}
				if i := leader.Load(); i == 0 {
					crashed.Do(func() { servers[0].dead.Store(true) })
					runtime.Goexit()
				}
			})
			defer failpoint.SetHook(nil)
			var wg sync.WaitGroup
			sctx, cancel := context.WithCancel(ctx)
			defer func() { cancel(); wg.Wait() }()
			// One controller per server: its API and, while it leads, its drivers.
			ctrls := make([]*Controller, len(servers))
			for i, s := range servers {
				e := election.New(election.Config{Key: "leader", ID: string(rune('a' + i)), TTL: time.Second}, s, slog.New(slog.DiscardHandler))
				ctrl := newTestController(t, s)
				ctrls[i] = ctrl
				wg.Go(func() {
					_ = e.Run(sctx, func(lctx context.Context, gst store.Store) {
						leader.Store(int32(i))
						_ = ctrl.Lead(lctx, gst)
					})
				})
				if i == 0 {
					waitFor(t, "server a leads", func() bool { return leader.Load() == 0 })
				}
			}
			// The request reaches the leader's API; any server's API would do.
			op, aerr := ctrls[0].Failover(ctx, "sub", "rg-s", "westus", "fg", force)
			if aerr != nil {
				t.Fatal(aerr)
			}
			start := time.Now()
			got := waitOutcomeOnly(t, c, op.ID, 30*time.Second)
			if leader.Load() != 1 {
				t.Errorf("the operation ended with server %d leading, want b", leader.Load())
			}
			if got.status != arm.StatusSucceeded || got.primary != 1 {
				t.Errorf("outcome = %s, primary side %d (%v); want Succeeded on side 1", got.status, got.primary, got.op.Error)
			}
			t.Logf("operation done %s after it was accepted, by the second leader", time.Since(start).Round(time.Millisecond))
			if n := w.net.MostWriters(); n > 1 {
				t.Errorf("%d servers accepted writes at once", n)
			}
		})
	}
}

// waitOutcomeOnly waits for an operation to end without running a controller of its own.
func waitOutcomeOnly(t *testing.T, c *Controller, id string, within time.Duration) outcome {
	t.Helper()
	var got outcome
	waitFor(t, "the operation to end", func() bool {
		var op Operation
		if _, err := store.Get(context.Background(), c.st, opKey(id), &op); err != nil || !op.Terminal() {
			return false
		}
		var g FailoverGroup
		_, _ = store.Get(context.Background(), c.st, fogKey("fg"), &g)
		got = outcome{status: op.Status, primary: g.Primary, g: g, op: op}
		return true
	}, within)
	return got
}

func waitFor(t *testing.T, what string, ok func() bool, within ...time.Duration) {
	t.Helper()
	d := 10 * time.Second
	if len(within) > 0 {
		d = within[0]
	}
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
