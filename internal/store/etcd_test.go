package store_test

import (
	"context"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/fogdb/fog/internal/store"
	"github.com/fogdb/fog/internal/store/storetest"
)

func freeURL(t *testing.T) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}

// startEtcd runs a one-member etcd in this process on loopback until the test ends.
func startEtcd(t *testing.T) []string {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	client, peer := freeURL(t), freeURL(t)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(cfg.Dir, "etcd.log")}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		t.Fatal("etcd did not start")
	}
	t.Cleanup(e.Close)
	return []string{client.String()}
}

func TestEtcd(t *testing.T) {
	endpoints := startEtcd(t)
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
