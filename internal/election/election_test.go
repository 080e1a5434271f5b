package election

import (
	"context"
	"errors"
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

func openStore(t *testing.T) store.Store {
	t.Helper()
	s, err := store.OpenBolt(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestOneLeaderAtATime runs three candidates: exactly one leads at any moment, and when it
// stops (resigning) another takes over at once.
func TestOneLeaderAtATime(t *testing.T) {
	st := openStore(t)
	var leading atomic.Int32
	var maxLeading atomic.Int32
	var leaders sync.Map
	cands := make([]context.CancelFunc, 3)
	var wg sync.WaitGroup
	for i := range cands {
		ctx, cancel := context.WithCancel(context.Background())
		cands[i] = cancel
		e := New(Config{Key: "leader", ID: string(rune('a' + i)), TTL: time.Second}, st, slog.New(slog.DiscardHandler))
		wg.Go(func() {
			_ = e.Run(ctx, func(lctx context.Context, _ store.Store) {
				n := leading.Add(1)
				if n > maxLeading.Load() {
					maxLeading.Store(n)
				}
				leaders.Store(i, true)
				<-lctx.Done()
				leading.Add(-1)
			})
		})
	}
	defer func() {
		for _, c := range cands {
			c()
		}
		wg.Wait()
	}()
	waitFor(t, "a leader", func() bool { return leading.Load() == 1 })
	for round := 0; round < 2; round++ {
		var current int
		leaders.Range(func(k, _ any) bool { current = k.(int); return false })
		leaders.Delete(current)
		start := time.Now()
		cands[current]()
		waitFor(t, "another leader", func() bool {
			n := 0
			leaders.Range(func(any, any) bool { n++; return true })
			return n == 1 && leading.Load() == 1
		})
		if took := time.Since(start); took > 500*time.Millisecond {
			t.Errorf("a resigned leader was replaced after %s; resigning must not wait for the lease", took)
		}
	}
	if maxLeading.Load() > 1 {
		t.Errorf("%d candidates led at once", maxLeading.Load())
	}
}

// TestGuardFencesADeposedLeader: a write with the token of an ended leadership fails with
// ErrNotLeader, even when its own compares hold; other conflicts stay ErrConflict.
func TestGuardFencesADeposedLeader(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	_ = st.Txn(ctx, nil, []store.Op{{Key: "leader", Value: []byte("a")}})
	kv, _ := st.Get(ctx, "leader")
	g := Guard(st, "leader", kv.Rev)
	if err := g.Txn(ctx, nil, []store.Op{{Key: "x", Value: []byte("1")}}); err != nil {
		t.Fatalf("write while leading: %v", err)
	}
	if err := g.Txn(ctx, []store.Cond{{Key: "x", Rev: 0}}, []store.Op{{Key: "x", Value: []byte("2")}}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("conflicting write while leading = %v, want ErrConflict", err)
	}
	// Another leadership: the key is written anew (its lease expired, b campaigned).
	_ = st.Txn(ctx, nil, []store.Op{{Key: "leader", Delete: true}})
	_ = st.Txn(ctx, nil, []store.Op{{Key: "leader", Value: []byte("b")}})
	err := g.Txn(ctx, nil, []store.Op{{Key: "x", Value: []byte("3")}})
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("write with an old token = %v, want ErrNotLeader", err)
	}
	var v string
	raw, _ := st.Get(ctx, "x")
	v = string(raw.Value)
	if v != "1" {
		t.Errorf("x = %q after the deposed leader's write, want 1", v)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
