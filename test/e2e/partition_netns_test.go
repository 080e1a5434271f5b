package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/pgtypes"
)

// TestPartitions puts the control plane and each region in a network namespace of its own
// and cuts links between them, with a writer going through the secondary region's listener
// and a checker connected straight to both instances:
//
//   - primary region cut from the control plane: its agent cannot renew its lease and fences
//     its primary within the lease; the listener in the other region holds new connections,
//     then serves the new primary after a forced failover; no acknowledged commit up to the
//     reported switch point is lost, and the checker never sees two writers. Healed, the old
//     primary rejoins by rewind on its own.
//   - secondary region cut from the primary: replication stalls and the reported lag grows;
//     nothing else changes; healed, the lag drains.
func TestPartitions(t *testing.T) {
	// Most of it waits out a grace period: it runs beside the other long waits, after the
	// package's other tests (waitBound).
	waitBound(t)
	lab := newNetlab(t, 1)
	lab.add("cp", 2, 1)
	lab.add("eastus", 10, 12)
	lab.add("westus", 30, 12)
	d := startDeploymentWith(t, 1, lab, nil, "--min-grace-period", "1m")
	f := d.f
	p := newPair(t, f, "pt")
	// Automatic with the shortest grace period: only the last phase waits it out.
	p.create(t, map[string]any{"failoverPolicy": "Automatic", "failoverWithDataLossGracePeriodMinutes": 1})
	p.setupTable(t)
	mustExecRW(t, p, "CREATE TABLE chk (src text, at timestamptz DEFAULT clock_timestamp())")
	wl := props(p.get(t, "rg-s", "westus"))["listeners"].(map[string]any)["readWrite"].(map[string]any)
	p.rw = net.JoinHostPort(wl["host"].(string), fmt.Sprint(wl["port"]))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, waitW := p.runWriter(ctx, 5*time.Millisecond)
	chk := startChecker(ctx, f.info.CACert, p.prim, p.sec)
	time.Sleep(500 * time.Millisecond)
	pm := postmasterOf(t, f, p.prim)

	// 1. The primary's region loses the control plane.
	cutAt := time.Now()
	lab.cut("eastus", "cp")
	expectFenced(t, pm, "its region was cut from the control plane")
	t.Logf("primary fenced %s after the cut", time.Since(cutAt).Round(time.Millisecond))

	// A new session through the west listener now waits for a primary rather than fail.
	held := make(chan error, 1)
	go func() {
		cctx, ccancel := context.WithTimeout(ctx, 60*time.Second)
		defer ccancel()
		c, err := p.listenerConn(cctx, p.rw, "app", p.rwFQDN)
		if err == nil {
			_, err = c.Exec(cctx, "INSERT INTO w (id) VALUES (-1)")
			c.Close(context.Background())
		}
		held <- err
	}()
	time.Sleep(time.Second)
	select {
	case err := <-held:
		t.Fatalf("a session through the west listener ended (%v) before any failover; it should be held", err)
	default:
	}

	r := f.call("POST", groupPath("rg-s", "westus", p.name)+"/forceFailoverAllowDataLoss", nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("forced failover = %d %s", r.Status, r.Body)
	}
	if st := f.wait(r); st["status"] != "Succeeded" {
		t.Fatalf("forced failover with the primary's region cut off: %v", st)
	}
	// Every commit acknowledged from here on is the new primary's and must survive the heal.
	w.mu.Lock()
	var lastBefore int64
	for id := range w.acked {
		lastBefore = max(lastBefore, id)
	}
	w.mu.Unlock()
	if err := <-held; err != nil {
		t.Errorf("the held session failed after the forced failover: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // commits on the new primary

	lab.heal("eastus", "cp")
	p.waitState(t, "CATCH_UP", 90*time.Second)
	g := p.get(t, "rg-p", "eastus")
	if props(g)["replicationRole"] != "Secondary" {
		t.Errorf("after healing, the old primary's side is %v, want Secondary", props(g)["replicationRole"])
	}
	var switchPoint pgtypes.LSN
	eventually(t, 60*time.Second, "the lost range of the forced failover", func() bool {
		lf, _ := props(p.get(t, "rg-p", "eastus"))["lastForcedFailover"].(map[string]any)
		lw, _ := lf["lostWal"].(map[string]any)
		if lw == nil {
			return false
		}
		switchPoint, _ = pgtypes.ParseLSN(lw["fromLsn"].(string))
		return true
	})
	cancel()
	waitW()
	chk.wait()
	present := p.present(t)
	if !present[-1] {
		t.Error("the commit of the held session is missing")
	}
	var missing, beforeSwitch, afterFailover int
	for id, lsn := range w.acked {
		if !present[id] {
			missing++
			if lsn <= switchPoint {
				beforeSwitch++
			}
			if id > lastBefore {
				afterFailover++
			}
		}
	}
	if afterFailover > 0 {
		t.Errorf("%d commits acknowledged by the new primary are lost", afterFailover)
	}
	t.Logf("writer: %d commits acknowledged, %d missing (%d up to the switch point %s), %d cuts", len(w.acked), missing, beforeSwitch, switchPoint, w.cuts)
	if beforeSwitch > 0 {
		t.Errorf("%d acknowledged commits up to the reported switch point are lost", beforeSwitch)
	}
	if a, b, ok := chk.overlap(); ok {
		t.Errorf("both instances accepted writes in overlapping time: %v and %v", a, b)
	}
	if len(chk.ok[1]) == 0 {
		t.Error("the checker never wrote on the new primary")
	}

	// 2. The secondary's region (now eastus) loses the primary's (westus).
	lagOf := func() int64 {
		rep, _ := props(p.get(t, "rg-s", "westus"))["replication"].(map[string]any)
		lb, _ := rep["lagBytes"].(float64)
		return int64(lb)
	}
	epoch := props(p.get(t, "rg-s", "westus"))["replication"].(map[string]any)["epoch"]
	lab.cut("eastus", "westus")
	before := lagOf()
	for i := range 20 {
		mustExecRW(t, p, fmt.Sprintf("INSERT INTO w (id) SELECT g FROM generate_series(%d, %d) g", 10_000_000+i*1000, 10_000_000+i*1000+999))
	}
	eventually(t, 20*time.Second, "the lag to grow while the secondary is cut off", func() bool { return lagOf() > before+100_000 })
	t.Logf("lag while cut off: %d bytes", lagOf())
	g = p.get(t, "rg-s", "westus")
	if props(g)["replicationRole"] != "Primary" || props(g)["replication"].(map[string]any)["epoch"] != epoch {
		t.Errorf("cutting the secondary off changed the group: role %v, epoch %v (was %v)", props(g)["replicationRole"],
			props(g)["replication"].(map[string]any)["epoch"], epoch)
	}
	lab.heal("eastus", "westus")
	eventually(t, 60*time.Second, "the lag to drain after healing", func() bool { return lagOf() < 100_000 })
	p.waitState(t, "CATCH_UP", 30*time.Second)

	// 3. The control plane alone is cut off, for longer than the grace period. Every agent
	// loses its lease (so the primary is fenced: no lease authority, no writes), but no
	// agent in another region confirms an outage: the automatic policy does nothing.
	epoch = props(p.get(t, "rg-s", "westus"))["replication"].(map[string]any)["epoch"]
	lab.cut("cp", "eastus")
	lab.cut("cp", "westus")
	time.Sleep(75 * time.Second)
	lab.heal("cp", "eastus")
	lab.heal("cp", "westus")
	healed := time.Now()
	p.waitState(t, "CATCH_UP", 60*time.Second)
	g = p.get(t, "rg-s", "westus")
	if props(g)["replicationRole"] != "Primary" || props(g)["replication"].(map[string]any)["epoch"] != epoch {
		t.Errorf("a partition of the control plane alone changed the group: role %v, epoch %v (was %v)",
			props(g)["replicationRole"], props(g)["replication"].(map[string]any)["epoch"], epoch)
	}
	for _, e := range props(g)["events"].([]any) {
		if k := e.(map[string]any)["kind"]; k == "AutomaticFailoverPending" || k == "AutomaticFailoverObserved" {
			t.Errorf("the automatic policy saw an outage in a control-plane partition: %v", e)
		}
	}
	// Every primary was fenced while its agent had no lease; the agent starts it again once
	// the lease is back, and the group takes writes within seconds.
	execRWWithin(t, p, "INSERT INTO w (id) VALUES (-2)", 60*time.Second)
	t.Logf("writable again %s after the control plane came back", time.Since(healed).Round(time.Millisecond))
}
