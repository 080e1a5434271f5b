package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/fogdb/fog/internal/store"
	"github.com/fogdb/fog/internal/store/storetest"
)

func TestBolt(t *testing.T) {
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) store.Store {
			s, err := store.OpenBolt(filepath.Join(t.TempDir(), "fog.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		// A Bolt keeps a bounded history of changes: enough writes push rev out of it.
		Compact: func(t *testing.T, s store.Store, rev int64) {
			ops := make([]store.Op, 0, 9000)
			for i := range 9000 {
				ops = append(ops, store.Op{Key: fmt.Sprintf("filler/%d", i), Value: []byte("x")})
			}
			if err := s.Txn(context.Background(), nil, ops); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// TestBoltLeasesEndWithTheProcess: keys written with a lease are gone when the file is
// opened again, since the leases lived in the process that closed it.
func TestBoltLeasesEndWithTheProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fog.db")
	s, err := store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id, _ := s.Grant(ctx, 1<<40)
	_ = s.Txn(ctx, nil, []store.Op{{Key: "leased", Value: []byte("x"), Lease: id}, {Key: "kept", Value: []byte("y")}})
	s.Close()
	s, err = store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Get(ctx, "leased"); err == nil {
		t.Error("a leased key survived the process")
	}
	if _, err := s.Get(ctx, "kept"); err != nil {
		t.Errorf("an ordinary key: %v", err)
	}
}
