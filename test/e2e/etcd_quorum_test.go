package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/server"
	"github.com/fogdb/fog/internal/store"
	"github.com/fogdb/fog/internal/store/storetest"
)

// TestFogOnEtcdQuorumLoss runs Fog on a three-member etcd. One member down: nothing notices.
// Two down (no quorum): the API answers 503 ServiceUnavailable instead of hanging, the
// primary is fenced before its lease runs out (no primary stays writable without the store),
// and when the members are back everything resumes: the primary serves again and the group
// replicates.
func TestFogOnEtcdQuorumLoss(t *testing.T) {
	cl := storetest.StartEtcd(t, 3)
	f := startFog(t, "", func(c *server.Config) { c.Etcd = &store.EtcdConfig{Endpoints: cl.Endpoints()} })
	p := newPair(t, f, "qu")
	p.create(t, nil)
	p.setupTable(t)

	cl.Stop(2)
	f.mustSucceed(f.call("PUT", miPath("rg-p", "qu-p")+"/databases/withtwo", map[string]any{}))
	mustExecRW(t, p, "INSERT INTO w (id) VALUES (1)")

	pm := postmasterOf(t, f, p.prim)
	cl.Stop(1)
	expectFenced(t, pm, "etcd lost its quorum")
	start := time.Now()
	r := f.call("GET", miPath("rg-p", "qu-p"), nil)
	if r.Status != http.StatusServiceUnavailable || r.code() != "ServiceUnavailable" {
		t.Errorf("GET without an etcd quorum = %d %s, want 503 ServiceUnavailable", r.Status, r.Body)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("GET without a quorum took %s to answer", took)
	}

	for _, i := range []int{1, 2} {
		if err := cl.Start(i); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 60*time.Second, "a write through the listener after etcd is back", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := p.listenerConn(ctx, p.rw, "app", p.rwFQDN)
		if err != nil {
			return false
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "INSERT INTO w (id) VALUES (2)")
		return err == nil
	})
	p.waitState(t, "CATCH_UP", 60*time.Second)
	if got := p.present(t); !got[1] || !got[2] {
		t.Errorf("rows after etcd came back: %v, want 1 and 2", got)
	}
}
