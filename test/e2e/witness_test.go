package e2e

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestControlPlaneSurvivesRegionLoss runs the topology the README recommends: an etcd member
// and a `fog server` in each region, a third etcd member at a witness site, each site in a
// network namespace of its own. The primary's region vanishes from the network under a
// writer; the control plane keeps its quorum and a server in the other region, and the
// Automatic group fails over by itself after its grace period. When the region returns, its
// old primary rejoins as the secondary; nothing fails back.
func TestControlPlaneSurvivesRegionLoss(t *testing.T) {
	// Most of it waits out a grace period: it runs beside the other long waits, after the
	// package's other tests (waitBound).
	waitBound(t)
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd is not installed (apt-get install etcd-server); .ci/run installs it")
	}
	lab := newNetlab(t, 2)
	lab.add("eastus", 10, 12)
	lab.add("westus", 30, 12)
	lab.add("witness", 50, 1)
	root := t.TempDir()
	sites := []string{"eastus", "westus", "witness"}
	var initial, endpoints []string
	for _, s := range sites {
		a := lab.ns[s].addrs[0]
		initial = append(initial, fmt.Sprintf("%s=http://%s:2380", s, a))
		endpoints = append(endpoints, fmt.Sprintf("http://%s:2379", a))
	}
	for _, s := range sites {
		a := lab.ns[s].addrs[0]
		p := &proc{t: t, name: "etcd-" + s, ns: lab.ns[s], exe: bin, log: filepath.Join(root, "etcd-"+s+".log"), args: []string{
			"--name", s, "--data-dir", filepath.Join(root, "etcd-"+s),
			"--listen-client-urls", "http://" + a + ":2379", "--advertise-client-urls", "http://" + a + ":2379",
			"--listen-peer-urls", "http://" + a + ":2380", "--initial-advertise-peer-urls", "http://" + a + ":2380",
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new", "--log-level", "warn",
			// A member back from isolation must not depose the leader (etcd 3.5 has it on).
			"--pre-vote"}}
		p.start()
		t.Cleanup(p.kill9)
	}
	d := startDeploymentWith(t, 2, lab, endpoints, "--min-grace-period", "1m")
	d.use(1) // the westus server: the one that stays
	f := d.f
	p := newPair(t, f, "wt")
	p.create(t, map[string]any{"failoverPolicy": "Automatic", "failoverWithDataLossGracePeriodMinutes": 1})
	p.setupTable(t)
	wl := props(p.get(t, "rg-s", "westus"))["listeners"].(map[string]any)["readWrite"].(map[string]any)
	p.rw = net.JoinHostPort(wl["host"].(string), fmt.Sprint(wl["port"]))
	mustExecRW(t, p, "INSERT INTO w (id) VALUES (1)")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, waitW := p.runWriter(ctx, 10*time.Millisecond)
	time.Sleep(500 * time.Millisecond)

	lab.down("eastus")
	gone := time.Now()
	eventually(t, 3*time.Minute, "the Automatic group to fail over with eastus gone", func() bool {
		r := f.call("GET", groupPath("rg-s", "westus", p.name), nil)
		return r.Status == 200 && props(r.json(t))["replicationRole"] == "Primary"
	})
	took := time.Since(gone)
	t.Logf("eastus (an etcd member, a server, the agent and the primary) vanished; automatic failover after %s", took.Round(time.Second))
	if took < time.Minute {
		t.Errorf("failed over %s after the region vanished, before the grace period", took)
	}
	time.Sleep(time.Second)
	cancel()
	waitW()
	got := p.present(t)
	if !got[1] {
		t.Error("the row written before the outage is missing")
	}
	var lastAcked int64
	for id := range w.acked {
		lastAcked = max(lastAcked, id)
	}
	if !got[lastAcked] {
		t.Errorf("the writer's last acknowledged commit (%d), on the new primary, is missing", lastAcked)
	}

	lab.up("eastus")
	// The returning etcd member and server may make the store pause for a moment.
	eventually(t, 2*time.Minute, "the group to replicate again with eastus back", func() bool {
		r := f.call("GET", groupPath("rg-s", "westus", p.name), nil)
		return r.Status == 200 && props(r.json(t))["replicationState"] == "CATCH_UP"
	})
	if rg, _ := p.sideOf(t, "Primary"); rg != "rg-s" {
		t.Errorf("after eastus returned the primary is %s; nothing may fail back by itself", rg)
	}
	mustExecRW(t, p, "INSERT INTO w (id) VALUES (-1)")
}
