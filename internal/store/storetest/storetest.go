// Package storetest is the conformance suite every store.Store implementation passes: the
// embedded bbolt store of `fog up` and etcd run the same tests.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/store"
)

// Backend opens a fresh, empty store for one test, and makes the store forget the history
// before rev (etcd's compaction; for a store that keeps a bounded history, enough writes).
type Backend struct {
	Open    func(t *testing.T) store.Store
	Compact func(t *testing.T, s store.Store, rev int64)
}

// Run runs the suite.
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store, b Backend)
	}{
		{"TxnCompare", testTxnCompare},
		{"UpdateConcurrent", testUpdateConcurrent},
		{"Watch", testWatch},
		{"WatchFrom", testWatchFrom},
		{"WatchFromCompacted", testWatchFromCompacted},
		{"Snapshot", testSnapshot},
		{"Lease", testLease},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, b.Open(t), b) })
	}
}

func testTxnCompare(t *testing.T, s store.Store, _ Backend) {
	ctx := context.Background()
	if err := s.Txn(ctx, []store.Cond{{Key: "a", Rev: 0}}, []store.Op{{Key: "a", Value: []byte("1")}}); err != nil {
		t.Fatalf("create a: %v", err)
	}
	if err := s.Txn(ctx, []store.Cond{{Key: "a", Rev: 0}}, []store.Op{{Key: "a", Value: []byte("2")}}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second create of a = %v, want ErrConflict", err)
	}
	kv, err := s.Get(ctx, "a")
	if err != nil || string(kv.Value) != "1" {
		t.Fatalf("Get(a) = %q, %v, want 1", kv.Value, err)
	}
	if err := s.Txn(ctx, []store.Cond{{Key: "a", Rev: kv.Rev + 100}}, []store.Op{{Key: "a", Delete: true}}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("delete a at a wrong revision = %v, want ErrConflict", err)
	}
	if err := s.Txn(ctx, []store.Cond{{Key: "a", Rev: kv.Rev}}, []store.Op{{Key: "a", Delete: true}, {Key: "b", Value: []byte("x")}}); err != nil {
		t.Fatalf("delete a: %v", err)
	}
	if _, err := s.Get(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(a) after delete = %v, want ErrNotFound", err)
	}
	kvs, _ := s.List(ctx, "b")
	if len(kvs) != 1 || kvs[0].Rev <= kv.Rev || kvs[0].Key != "b" {
		t.Fatalf("List(b) = %+v, want key b with a newer revision than %d", kvs, kv.Rev)
	}
}

func testUpdateConcurrent(t *testing.T, s store.Store, _ Backend) {
	ctx := context.Background()
	if err := store.Put(ctx, s, "n", 0); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := store.Update(ctx, s, "n", func(n *int) error { *n++; return nil }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var n int
	if _, err := store.Get(ctx, s, "n", &n); err != nil || n != 10 {
		t.Fatalf("n = %d, %v, want 10", n, err)
	}
}

func testWatch(t *testing.T, s store.Store, _ Backend) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(ctx, "x/")
	time.Sleep(50 * time.Millisecond) // an etcd watch is established asynchronously
	_ = store.Put(ctx, s, "y/1", 1)
	_ = store.Put(ctx, s, "x/1", 1)
	select {
	case ev := <-ch:
		if ev.Key != "x/1" {
			t.Fatalf("event key = %q, want x/1", ev.Key)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event for x/1")
	}
	cancel()
	for range ch { //nolint:revive // drain until closed
	}
}

func testWatchFrom(t *testing.T, s store.Store, _ Backend) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rev, _, err := s.Snapshot(ctx, "w/")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		_ = store.Put(ctx, s, fmt.Sprintf("w/%d", i), i)
		_ = store.Put(ctx, s, fmt.Sprintf("other/%d", i), i)
	}
	_ = s.Txn(ctx, nil, []store.Op{{Key: "w/0", Delete: true}})
	ch := s.WatchFrom(ctx, "w/", rev)
	_ = store.Put(ctx, s, "w/late", 1)
	want := []string{"w/0", "w/1", "w/2", "w/3", "w/4", "w/0", "w/late"}
	var last int64
	for i, k := range want {
		select {
		case ev := <-ch:
			if ev.Key != k || ev.Rev <= last || ev.Compacted {
				t.Fatalf("event %d = %+v, want key %s with a revision above %d", i, ev, k, last)
			}
			if i == 5 && !ev.Deleted {
				t.Fatalf("event %d = %+v, want the delete of w/0", i, ev)
			}
			last = ev.Rev
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d (%s) did not come", i, k)
		}
	}
	cancel()
	for range ch { //nolint:revive // drain until closed
	}
}

func testWatchFromCompacted(t *testing.T, s store.Store, b Backend) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rev, _, _ := s.Snapshot(ctx, "c/")
	_ = store.Put(ctx, s, "c/1", 1)
	_ = store.Put(ctx, s, "c/2", 1)
	b.Compact(t, s, rev+2)
	ch := s.WatchFrom(ctx, "c/", rev)
	select {
	case ev := <-ch:
		if !ev.Compacted {
			t.Fatalf("event = %+v, want Compacted", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no Compacted event")
	}
	cancel()
	for range ch { //nolint:revive // drain until closed
	}
}

func testSnapshot(t *testing.T, s store.Store, _ Backend) {
	ctx := context.Background()
	_ = store.Put(ctx, s, "p/1", 1)
	_ = store.Put(ctx, s, "q/1", 1)
	_ = store.Put(ctx, s, "r/1", 1)
	rev, kvs, err := s.Snapshot(ctx, "p/", "q/")
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 2 || kvs[0].Key != "p/1" || kvs[1].Key != "q/1" {
		t.Fatalf("Snapshot(p/, q/) = %+v, want p/1 and q/1", kvs)
	}
	for _, kv := range kvs {
		if kv.Rev > rev {
			t.Fatalf("key %s has revision %d above the snapshot's %d", kv.Key, kv.Rev, rev)
		}
	}
	r, _ := s.Get(ctx, "r/1")
	if r.Rev > rev {
		t.Fatalf("the snapshot's revision %d is older than a write before it (%d)", rev, r.Rev)
	}
}

func testLease(t *testing.T, s store.Store, _ Backend) {
	ctx := context.Background()
	const ttl = 2 * time.Second
	id, err := s.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Txn(ctx, nil, []store.Op{{Key: "l/held", Value: []byte("x"), Lease: id}}); err != nil {
		t.Fatal(err)
	}
	// Kept alive past its TTL, the key stays.
	for range 4 {
		time.Sleep(ttl / 3)
		if err := s.KeepAlive(ctx, id); err != nil {
			t.Fatalf("KeepAlive: %v", err)
		}
	}
	if _, err := s.Get(ctx, "l/held"); err != nil {
		t.Fatalf("key of a kept-alive lease: %v", err)
	}
	// Left alone, it expires and its key goes.
	deadline := time.Now().Add(ttl + 3*time.Second)
	for {
		if _, err := s.Get(ctx, "l/held"); errors.Is(err, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("key of an expired lease still there")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.KeepAlive(ctx, id); !errors.Is(err, store.ErrLeaseNotFound) {
		t.Errorf("KeepAlive of an expired lease = %v, want ErrLeaseNotFound", err)
	}
	if err := s.Txn(ctx, nil, []store.Op{{Key: "l/late", Value: []byte("x"), Lease: id}}); !errors.Is(err, store.ErrLeaseNotFound) {
		t.Errorf("write with an expired lease = %v, want ErrLeaseNotFound", err)
	}
	// Revoked, its keys go at once.
	id2, _ := s.Grant(ctx, time.Minute)
	_ = s.Txn(ctx, nil, []store.Op{{Key: "l/r", Value: []byte("x"), Lease: id2}})
	if err := s.Revoke(ctx, id2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "l/r"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("key of a revoked lease: %v, want ErrNotFound", err)
	}
}
