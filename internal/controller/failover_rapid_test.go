package controller

import (
	"context"
	"flag"
	"os"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/failpoint"
	"github.com/fogdb/fog/internal/store"
)

// TestFailoverRandomFaults drives planned and forced failovers through random interleavings
// of controller crashes (at any step), agent outages of either region, and restarts, against
// the real agents over in-memory PostgreSQL, and checks after each operation: it ended; it succeeded with the side asked
// for as primary, or failed with the primary unchanged; the group is free and not switching;
// and no two servers ever accepted writes at once. FOG_FAULT_MATRIX=1 runs many more cases.
func TestFailoverRandomFaults(t *testing.T) {
	if f := flag.Lookup("rapid.checks"); f != nil && f.Value.String() == "100" {
		n := "12"
		if os.Getenv("FOG_FAULT_MATRIX") != "" {
			n = "300"
		}
		_ = f.Value.Set(n)
		defer func() { _ = f.Value.Set("100") }()
	}
	points := append([]string{""}, failpoint.Points[:len(failpoint.Points)-2]...) // controller steps; "" = no crash
	rapid.Check(t, func(rt *rapid.T) {
		ctx, w, c, stop := startWorld(t)
		defer stop()
		st := c.st
		regions := []string{"eastus", "westus"}
		for step := range rapid.IntRange(1, 3).Draw(rt, "operations") {
			var g FailoverGroup
			_, _ = store.Get(ctx, st, fogKey("fg"), &g)
			sec := g.Sides[g.Secondary()]
			before := g.Primary
			force := rapid.Bool().Draw(rt, "force")
			outage := rapid.SampledFrom([]string{"", "eastus", "westus"}).Draw(rt, "outage")
			outageFor := time.Duration(rapid.IntRange(0, 500).Draw(rt, "outageMillis")) * time.Millisecond
			crash := rapid.SampledFrom(points).Draw(rt, "crashAt")
			if outage != "" {
				w.setDown(outage, true)
				w.wg.Go(func() {
					select {
					case <-time.After(outageFor):
					case <-ctx.Done():
					}
					w.setDown(outage, false)
				})
			}
			op, aerr := c.Failover(ctx, sec.Subscription, sec.ResourceGroup, sec.Location, "fg", force)
			if aerr != nil {
				rt.Fatalf("operation %d: Failover refused: %v", step, aerr)
			}
			if crash != "" {
				cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
				crashAt(cctx, c, crash)
				ccancel()
				c = newTestController(t, st)
			}
			got := waitOutcome(t, c, op.ID, 45*time.Second)
			switch got.status {
			case arm.StatusSucceeded:
				if got.primary == before {
					rt.Errorf("operation %d succeeded but the primary is still side %d", step, before)
				}
			case arm.StatusFailed:
				if got.primary != before {
					rt.Errorf("operation %d failed (%v) but the primary moved to side %d", step, got.op.Error, got.primary)
				}
			}
			if got.g.Switching || got.g.ActiveOperation != "" {
				rt.Errorf("operation %d left the group switching=%v active=%q", step, got.g.Switching, got.g.ActiveOperation)
			}
			for _, r := range regions {
				w.setDown(r, false)
			}
			waitSettled(t, c)
		}
		if n := w.net.MostWriters(); n > 1 {
			rt.Errorf("%d servers accepted writes at once", n)
		}
	})
}
