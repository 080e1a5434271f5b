package store

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openTest(t *testing.T) Store {
	t.Helper()
	s, err := OpenBolt(filepath.Join(t.TempDir(), "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestTxnCompare(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if err := s.Txn(ctx, []Cond{{Key: "a", Rev: 0}}, []Op{{Key: "a", Value: []byte("1")}}); err != nil {
		t.Fatalf("create a: %v", err)
	}
	if err := s.Txn(ctx, []Cond{{Key: "a", Rev: 0}}, []Op{{Key: "a", Value: []byte("2")}}); !errors.Is(err, ErrConflict) {
		t.Fatalf("second create of a = %v, want ErrConflict", err)
	}
	kv, err := s.Get(ctx, "a")
	if err != nil || string(kv.Value) != "1" {
		t.Fatalf("Get(a) = %q, %v, want 1", kv.Value, err)
	}
	if err := s.Txn(ctx, []Cond{{Key: "a", Rev: kv.Rev}}, []Op{{Key: "a", Delete: true}, {Key: "b", Value: []byte("x")}}); err != nil {
		t.Fatalf("delete a: %v", err)
	}
	if _, err := s.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(a) after delete = %v, want ErrNotFound", err)
	}
	kvs, _ := s.List(ctx, "b")
	if len(kvs) != 1 || kvs[0].Rev <= kv.Rev {
		t.Fatalf("List(b) = %+v, want one key with a newer revision than %d", kvs, kv.Rev)
	}
}

func TestUpdateConcurrent(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if err := Put(ctx, s, "n", 0); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := Update(ctx, s, "n", func(n *int) error { *n++; return nil }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var n int
	if _, err := Get(ctx, s, "n", &n); err != nil || n != 20 {
		t.Fatalf("n = %d, %v, want 20", n, err)
	}
}

func TestWatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openTest(t)
	ch := s.Watch(ctx, "x/")
	_ = Put(ctx, s, "y/1", 1)
	_ = Put(ctx, s, "x/1", 1)
	select {
	case ev := <-ch:
		if ev.Key != "x/1" {
			t.Fatalf("event key = %q, want x/1", ev.Key)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no event for x/1")
	}
}
