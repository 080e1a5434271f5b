package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/fogdb/fog/internal/standalone"
	"github.com/fogdb/fog/internal/store"
)

// etcdCluster is a three-member etcd in the test process; members can be stopped and
// started again on their data.
type etcdCluster struct {
	t       *testing.T
	cfgs    []*embed.Config
	members []*embed.Etcd
}

func startEtcdCluster(t *testing.T, n int) *etcdCluster {
	t.Helper()
	c := &etcdCluster{t: t}
	var initial []string
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = t.TempDir()
		client, peer := freeLoopbackURL(t), freeLoopbackURL(t)
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.LogLevel = "error"
		cfg.LogOutputs = []string{filepath.Join(cfg.Dir, "etcd.log")}
		initial = append(initial, cfg.Name+"="+peer.String())
		c.cfgs = append(c.cfgs, cfg)
	}
	for _, cfg := range c.cfgs {
		cfg.InitialCluster = strings.Join(initial, ",")
	}
	c.members = make([]*embed.Etcd, n)
	errs := make(chan error, n)
	for i := range c.cfgs {
		go func() { errs <- c.start(i) }()
	}
	for range c.cfgs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for i := range c.members {
			c.stop(i)
		}
	})
	return c
}

func (c *etcdCluster) start(i int) error {
	e, err := embed.StartEtcd(c.cfgs[i])
	if err != nil {
		return err
	}
	c.members[i] = e
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case <-time.After(60 * time.Second):
		return fmt.Errorf("etcd member %d did not become ready", i)
	}
}

func (c *etcdCluster) stop(i int) {
	if c.members[i] != nil {
		c.members[i].Close()
		c.members[i] = nil
	}
}

func (c *etcdCluster) endpoints() []string {
	var out []string
	for _, cfg := range c.cfgs {
		out = append(out, cfg.ListenClientUrls[0].String())
	}
	return out
}

func freeLoopbackURL(t *testing.T) url.URL {
	t.Helper()
	u := freeURLString(t)
	parsed, _ := url.Parse(u)
	return *parsed
}

// TestFogOnEtcdQuorumLoss runs Fog on a three-member etcd. One member down: nothing notices.
// Two down (no quorum): the API answers 503 ServiceUnavailable instead of hanging, the
// primary is fenced before its lease runs out (no primary stays writable without the store),
// and when the members are back everything resumes: the primary serves again and the group
// replicates.
func TestFogOnEtcdQuorumLoss(t *testing.T) {
	cl := startEtcdCluster(t, 3)
	f := startFog(t, "", func(c *standalone.Config) { c.Etcd = &store.EtcdConfig{Endpoints: cl.endpoints()} })
	p := newPair(t, f, "qu")
	p.create(t, nil)
	p.setupTable(t)

	cl.stop(2)
	f.mustSucceed(f.call("PUT", miPath("rg-p", "qu-p")+"/databases/withtwo", map[string]any{}))
	mustExecRW(t, p, "INSERT INTO w (id) VALUES (1)")

	pm := postmasterOf(t, f, p.prim)
	cl.stop(1)
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
		if err := cl.start(i); err != nil {
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
