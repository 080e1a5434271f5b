package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childrenOf returns the pids of pid's children whose command line contains s.
func childrenOf(pid int, s string) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		_, rest, _ := strings.Cut(string(b), ") ")
		fields := strings.Fields(rest)
		if len(fields) < 2 || fields[1] != strconv.Itoa(pid) {
			continue
		}
		child, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(f), "cmdline"))
		if strings.Contains(string(cmd), s) {
			out = append(out, child)
		}
	}
	return out
}

// processesUnder returns the pids whose command line mentions dir.
func processesUnder(dir string) []int {
	var out []int
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(b), dir) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		out = append(out, pid)
	}
	return out
}

func events(t *testing.T, p *pair, rg, loc string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, e := range props(p.get(t, rg, loc))["events"].([]any) {
		out = append(out, e.(map[string]any))
	}
	return out
}

func hasEvent(t *testing.T, p *pair, kind, initiator string) (map[string]any, bool) {
	for _, e := range events(t, p, "rg-p", "eastus") {
		if e["kind"] == kind && e["initiator"] == initiator {
			return e, true
		}
	}
	return nil, false
}

// TestAutomaticFailover runs four groups with their primaries in eastus, on separate server
// and agent processes with the deployment's minimum grace period lowered to 1 minute: an
// Automatic group, a Manual one, an Automatic one whose secondary is past its data-loss
// budget, and an observe-only one. A blip of eastus shorter than the grace period does
// nothing. Then eastus vanishes (its agent, guard and PostgreSQL killed) under a writer: the
// Automatic group fails over by itself after the grace period and not before, with
// initiator "system"; the Manual group does not; the budget group records why not; the
// observe-only group records what it would have done. When eastus comes back the old
// primary rejoins, and the lost range is reported.
func TestAutomaticFailover(t *testing.T) {
	// Most of it waits out a grace period: it runs beside the other long waits, after the
	// package's other tests (waitBound).
	waitBound(t)
	d := startDeploymentWith(t, 1, nil, nil, "--min-grace-period", "1m")
	f := d.f
	auto := map[string]any{"failoverPolicy": "Automatic", "failoverWithDataLossGracePeriodMinutes": 1}
	au := newPair(t, f, "au")
	au.create(t, auto)
	ma := newPair(t, f, "ma")
	ma.create(t, nil)
	bu := newPair(t, f, "bu")
	bu.create(t, map[string]any{"failoverPolicy": "Automatic", "failoverWithDataLossGracePeriodMinutes": 1, "maxDataLossBytes": 1000})
	ob := newPair(t, f, "ob")
	ob.create(t, map[string]any{"failoverPolicy": "Automatic", "failoverWithDataLossGracePeriodMinutes": 1, "automaticFailoverMode": "ObserveOnly"})
	for _, p := range []*pair{au, bu} {
		p.setupTable(t)
	}
	wl := props(au.get(t, "rg-s", "westus"))["listeners"].(map[string]any)["readWrite"].(map[string]any)
	au.rw = net.JoinHostPort(wl["host"].(string), fmt.Sprint(wl["port"]))
	mustExecRW(t, au, "INSERT INTO w (id) VALUES (1)")

	// A blip: the eastus agent stops for 15 s (its guard fences the primaries meanwhile).
	agent := d.agents["eastus"]
	_ = agent.cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(15 * time.Second)
	_ = agent.cmd.Process.Signal(syscall.SIGCONT)
	eventually(t, 30*time.Second, "the blip to be recorded as pending and then cancelled", func() bool {
		_, pending := hasEvent(t, au, "AutomaticFailoverPending", "system")
		_, cancelled := hasEvent(t, au, "AutomaticFailoverCancelled", "system")
		return pending && cancelled
	})
	for _, p := range []*pair{au, ma, bu, ob} {
		p.waitState(t, "CATCH_UP", 60*time.Second)
		if rg, _ := p.sideOf(t, "Primary"); rg != "rg-p" {
			t.Fatalf("after a 15 s blip group %s has its primary at %s", p.name, rg)
		}
	}

	// The budget group's secondary falls behind: its WAL receiver is stopped.
	recv := childrenOf(postmasterOf(t, f, bu.sec), "walreceiver")
	if len(recv) != 1 {
		t.Fatalf("walreceiver of bu's secondary: %v", recv)
	}
	_ = syscall.Kill(recv[0], syscall.SIGSTOP)
	defer syscall.Kill(recv[0], syscall.SIGCONT)
	mustExecRW(t, bu, "INSERT INTO w (id) SELECT g FROM generate_series(1, 20000) g")
	time.Sleep(2500 * time.Millisecond) // the primary's view of the lag is published

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, waitW := au.runWriter(ctx, 10*time.Millisecond)
	time.Sleep(500 * time.Millisecond)

	// eastus vanishes.
	eastDir := filepath.Join(d.root, "regions", "eastus")
	agent.kill9()
	killed := time.Now()
	for _, pid := range processesUnder(eastDir) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	t.Logf("eastus killed")
	eventually(t, 3*time.Minute, "the Automatic group to fail over by itself", func() bool {
		rg, _ := au.sideOf(t, "Primary")
		if rg == "rg-s" {
			return true
		}
		if time.Since(killed) < 55*time.Second {
			return false
		}
		return false
	})
	took := time.Since(killed)
	t.Logf("the Automatic group failed over %s after its region vanished (grace period 1 minute)", took.Round(time.Second))
	if took < 60*time.Second {
		t.Errorf("automatic failover %s after the outage began, before the 1-minute grace period", took)
	}
	e, ok := hasEvent(t, au, "ForcedFailover", "system")
	if !ok {
		// The event kind of a forced failover is recorded by the engine; find it by initiator.
		for _, ev := range events(t, au, "rg-s", "westus") {
			t.Logf("event %v", ev)
		}
		t.Error("no forced failover event with initiator system")
	} else {
		t.Logf("event: %v", e["message"])
	}
	time.Sleep(time.Second)
	cancel()
	waitW()

	for _, c := range []struct {
		p    *pair
		kind string
	}{{ma, ""}, {bu, "AutomaticFailoverBlocked"}, {ob, "AutomaticFailoverObserved"}} {
		g := c.p.get(t, "rg-p", "eastus")
		if props(g)["replicationRole"] != "Primary" {
			t.Errorf("group %s failed over; it should not have", c.p.name)
		}
		if c.kind != "" {
			ev, ok := hasEvent(t, c.p, c.kind, "system")
			if !ok {
				t.Errorf("group %s has no %s event: %v", c.p.name, c.kind, events(t, c.p, "rg-p", "eastus"))
			} else {
				t.Logf("%s: %v", c.p.name, ev["message"])
			}
		}
	}
	if _, ok := hasEvent(t, ma, "AutomaticFailoverPending", "system"); ok {
		t.Error("the Manual group got an automatic failover event")
	}

	// eastus comes back: the old primary rejoins, the lost range is known.
	_ = syscall.Kill(recv[0], syscall.SIGCONT)
	d.restartAgent("eastus")
	au.waitState(t, "CATCH_UP", 2*time.Minute)
	eventually(t, 60*time.Second, "the lost range of the automatic failover", func() bool {
		lf, _ := props(au.get(t, "rg-s", "westus"))["lastForcedFailover"].(map[string]any)
		return lf != nil && lf["lostWal"] != nil
	})
	// The activity log has the failover, started by the system, with the range it lost.
	var found map[string]any
	for _, e := range activity(t, f, "eventTimestamp ge '"+killed.Format(time.RFC3339Nano)+"' and resourceGroupName eq 'rg-s'") {
		if e["operationName"].(map[string]any)["value"] == "Microsoft.Sql/locations/instanceFailoverGroups/forceFailoverAllowDataLoss/action" &&
			e["eventName"].(map[string]any)["value"] == "EndRequest" && strings.HasSuffix(e["resourceId"].(string), "/au") {
			found = e
		}
	}
	if found == nil {
		t.Error("the activity log has no end of the automatic failover")
	} else if found["caller"] != "system" || found["properties"].(map[string]any)["lostWal"] == nil || found["status"].(map[string]any)["value"] != "Succeeded" {
		t.Errorf("activity log entry of the automatic failover: caller %v, status %v, properties %v", found["caller"], found["status"], found["properties"])
	}
	present := au.present(t)
	if !present[1] {
		t.Error("the row written before the outage is missing")
	}
	t.Logf("writer: %d commits acknowledged, %d cuts", len(w.acked), w.cuts)
	if rg, _ := au.sideOf(t, "Primary"); rg != "rg-s" {
		t.Errorf("after eastus came back the primary is %s: nothing may fail back by itself", rg)
	}
}
