package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestStatesDuringFailover: during a planned and a forced failover the group reports
// FAILOVER_IN_PROGRESS, then CATCH_UP while the old primary rejoins, and never SUSPENDED
// (which means a lost slot or a stopped link).
func TestStatesDuringFailover(t *testing.T) {
	f := startFog(t, "")
	p := newPair(t, f, "states")
	p.create(t, nil)
	for _, action := range []string{"failover", "forceFailoverAllowDataLoss"} {
		rg, loc := p.sideOf(t, "Secondary")
		r := f.call("POST", groupPath(rg, loc, p.name)+"/"+action, nil)
		if r.Status != http.StatusAccepted {
			t.Fatalf("%s = %d %s", action, r.Status, r.Body)
		}
		seen := map[string]int{}
		opDone := false
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if !opDone {
				st := f.call("GET", r.Header.Get("Azure-AsyncOperation"), nil).json(t)
				switch st["status"] {
				case "Succeeded":
					opDone = true
				case "InProgress":
				default:
					t.Fatalf("%s: operation %v", action, st)
				}
			}
			state, _ := props(p.get(t, rg, loc))["replicationState"].(string)
			seen[state]++
			if opDone && state == "CATCH_UP" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: states %v, never CATCH_UP after the operation", action, seen)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if seen["SUSPENDED"] > 0 || seen["FAILOVER_IN_PROGRESS"] == 0 {
			t.Errorf("%s: states seen %v; want FAILOVER_IN_PROGRESS, then CATCH_UP, never SUSPENDED", action, seen)
		}
		t.Logf("%s: %v", action, seen)
	}
	// The forced failover of this idle, caught-up group lost no transaction, and says so in
	// transactions, not bytes.
	rg, loc := p.sideOf(t, "Primary")
	var lw map[string]any
	eventually(t, time.Minute, "the lost range reported", func() bool {
		lf, _ := props(p.get(t, rg, loc))["lastForcedFailover"].(map[string]any)
		if lf == nil || lf["lostWalKnown"] != true {
			return false
		}
		lw, _ = lf["lostWal"].(map[string]any)
		return true
	})
	if lw["transactionsLost"] != float64(0) || lw["transactions"] != nil {
		t.Errorf("idle group's forced failover lost %v", lw)
	}
	evs, _ := props(p.get(t, rg, loc))["events"].([]any)
	found := false
	for _, e := range evs {
		if e := e.(map[string]any); e["kind"] == "LostWAL" {
			found = strings.Contains(fmt.Sprint(e["message"]), ": 0 transactions lost in ")
			t.Logf("event: %v", e["message"])
		}
	}
	if !found {
		t.Errorf("no LostWAL event saying 0 transactions lost: %v", evs)
	}
}
