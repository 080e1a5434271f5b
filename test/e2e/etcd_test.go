package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/server"
	"github.com/fogdb/fog/internal/store"
	"github.com/fogdb/fog/internal/store/storetest"
)

// TestFogOnEtcd runs Fog with its state in etcd instead of the embedded store file: a group
// is created, fails over planned and forced, and after Fog restarts on the same etcd the
// group is there as it was.
func TestFogOnEtcd(t *testing.T) {
	endpoints := storetest.StartEtcd(t, 1).Endpoints()
	dir := t.TempDir()
	onEtcd := func(c *server.Config) { c.Etcd = &store.EtcdConfig{Endpoints: endpoints} }
	f := startFog(t, dir, onEtcd)
	p := newPair(t, f, "ec")
	p.create(t, nil)
	p.setupTable(t)
	mustExecRW(t, p, "INSERT INTO w (id) VALUES (1)")
	if res := p.failover(t, false); !strings.Contains(res["id"].(string), "/resourceGroups/rg-s/") {
		t.Errorf("planned failover result %v, want the rg-s side", res["id"])
	}
	p.waitState(t, "CATCH_UP", 60*time.Second)
	if res := p.failover(t, true); !strings.Contains(res["id"].(string), "/resourceGroups/rg-p/") {
		t.Errorf("forced failover result %v, want the rg-p side", res["id"])
	}
	p.waitState(t, "CATCH_UP", 60*time.Second)
	f.stop()

	f2 := startFog(t, dir, onEtcd)
	p.f = f2
	if rg, _ := p.sideOf(t, "Primary"); rg != "rg-p" {
		t.Errorf("after a restart on the same etcd the primary is %s, want rg-p", rg)
	}
	p.waitState(t, "CATCH_UP", 60*time.Second)
	if !p.present(t)[1] {
		t.Error("the row written before the failovers is missing")
	}
	if _, err := os.Stat(filepath.Join(dir, "fog.db")); err == nil {
		t.Error("fog.db exists: the state went to the store file, not etcd")
	}
}
