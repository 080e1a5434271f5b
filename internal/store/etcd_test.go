package store_test

import (
	"context"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fogdb/fog/internal/store"
	"github.com/fogdb/fog/internal/store/storetest"
)

func TestEtcd(t *testing.T) {
	endpoints := storetest.StartEtcd(t, 1).Endpoints()
	n := 0
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) store.Store {
			n++
			// Each test its own prefix: an empty store on the shared member.
			s, err := store.OpenEtcd(context.Background(), store.EtcdConfig{Endpoints: endpoints, Prefix: "/t" + string(rune('a'+n)) + "/"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		Compact: func(t *testing.T, s store.Store, rev int64) {
			if _, err := s.(*store.Etcd).Client().Compact(context.Background(), rev, clientv3.WithCompactPhysical()); err != nil {
				t.Fatal(err)
			}
		},
	})
}
