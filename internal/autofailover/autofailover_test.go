package autofailover

import (
	"testing"

	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/lease"
)

// The decision rule holds only when every observer agrees; each observer's own partition
// leaves it false.
func TestRegionDownRule(t *testing.T) {
	unreach := &lease.Probe{Reachable: false, Failures: 5}
	reach := &lease.Probe{Reachable: true}
	g := func(cp, live bool, p *lease.Probe) groupEvidence {
		return groupEvidence{Name: "g", ControlPlaneReached: cp, SecondaryAgentLive: live, Probe: p}
	}
	for _, c := range []struct {
		name string
		ev   regionEvidence
		down bool
	}{
		{"region vanished", regionEvidence{LeaseLost: true, Groups: []groupEvidence{g(false, true, unreach)}}, true},
		{"agent renews (secondary region cut from the primary)", regionEvidence{LeaseLost: false, Groups: []groupEvidence{g(false, true, unreach)}}, false},
		{"control plane cut from the region only: the partner still reaches the primary", regionEvidence{LeaseLost: true, Groups: []groupEvidence{g(false, true, reach)}}, false},
		{"control plane cut from everything: the partner's agent has no lease", regionEvidence{LeaseLost: true, Groups: []groupEvidence{g(false, false, unreach)}}, false},
		{"the control plane still reaches the primary", regionEvidence{LeaseLost: true, Groups: []groupEvidence{g(true, true, unreach)}}, false},
		{"too few failed probes yet", regionEvidence{LeaseLost: true, Groups: []groupEvidence{g(false, true, &lease.Probe{Failures: 2})}}, false},
		{"no probe reported", regionEvidence{LeaseLost: true, Groups: []groupEvidence{g(false, true, nil)}}, false},
		{"one partner confirms, none contradicts", regionEvidence{LeaseLost: true, Groups: []groupEvidence{g(false, false, nil), g(false, true, unreach)}}, true},
		{"one partner confirms, another reaches its primary", regionEvidence{LeaseLost: true, Groups: []groupEvidence{g(false, true, unreach), g(false, true, reach)}}, false},
	} {
		if down, why := regionDown(c.ev); down != c.down {
			t.Errorf("%s: down = %v (%s), want %v", c.name, down, why, c.down)
		}
	}
}

// The data-loss budget blocks a failover that would lose more than the group allows.
func TestOverBudget(t *testing.T) {
	b, s := int64(1000), 5
	secs := func(f float64) *float64 { return &f }
	g := &group.FailoverGroup{MaxLossBytes: &b}
	if over := overBudget(g, 999, nil, true); over != "" {
		t.Errorf("999 bytes with a 1000-byte budget: %s", over)
	}
	if over := overBudget(g, 1001, nil, true); over == "" {
		t.Error("1001 bytes passed a 1000-byte budget")
	}
	if over := overBudget(g, 0, nil, false); over == "" {
		t.Error("an unknown loss passed a budget")
	}
	g = &group.FailoverGroup{MaxLossSeconds: &s}
	if over := overBudget(g, 1<<40, secs(4.9), true); over != "" {
		t.Errorf("4.9 s with a 5 s budget: %s", over)
	}
	if over := overBudget(g, 0, secs(5.1), true); over == "" {
		t.Error("5.1 s passed a 5 s budget")
	}
	if over := overBudget(&group.FailoverGroup{}, 1<<40, nil, false); over != "" {
		t.Errorf("no budget: %s", over)
	}
}
