package e2e

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/failpoint"
)

// TestAgentCutOffFencesItsPrimary cuts the primary region's agent off (its lease renewals
// and reconciles hang, as on a partition from the store) while a writer runs: the agent's
// own fence loop stops its primary before the lease TTL (4 s), no client can write anywhere
// meanwhile, a forced failover then promotes the secondary (after the lease has surely
// expired), and once the agent is back its old primary rejoins on its own. A checker writing
// straight to both instances never sees both accept writes.
func TestAgentCutOffFencesItsPrimary(t *testing.T) {
	var cut atomic.Bool
	failpoint.SetHook(func(name string) {
		for cut.Load() && name == failpoint.AgentStall("eastus") {
			time.Sleep(5 * time.Millisecond)
		}
	})
	defer failpoint.SetHook(nil)
	f := startFog(t, "")
	p := newPair(t, f, "cut")
	p.create(t, nil)
	p.setupTable(t)
	mustExecRW(t, p, "CREATE TABLE chk (src text, at timestamptz DEFAULT clock_timestamp())")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, waitW := p.runWriter(ctx, 5*time.Millisecond)
	chk := startChecker(ctx, f.info.CACert, p.prim, p.sec)
	time.Sleep(300 * time.Millisecond)
	pm := postmasterOf(t, f, p.prim)

	cut.Store(true)
	expectFenced(t, pm, "its agent was cut off")

	start := time.Now()
	r := f.call("POST", groupPath("rg-s", "westus", p.name)+"/forceFailoverAllowDataLoss", nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("force failover = %d %s", r.Status, r.Body)
	}
	if st := f.wait(r); st["status"] != "Succeeded" {
		t.Fatalf("forced failover with the old agent cut off: %v", st)
	}
	took := time.Since(start)
	t.Logf("forced failover with the old primary's agent cut off took %s", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("forced failover took %s; must be within the lease TTL + 1 s", took)
	}

	cut.Store(false)
	p.waitState(t, "CATCH_UP", 90*time.Second)
	time.Sleep(300 * time.Millisecond)
	cancel()
	waitW()
	chk.wait()
	if a, b, ok := chk.overlap(); ok {
		t.Errorf("both instances accepted writes in overlapping time: %v and %v", a, b)
	}
	if len(w.bad) > 0 {
		t.Errorf("writer saw %d errors other than cut connections, first: %v", len(w.bad), w.bad[0])
	}
	if len(chk.ok[1]) == 0 {
		t.Error("the checker never wrote on the new primary")
	}
}
