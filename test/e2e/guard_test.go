package e2e

import (
	"testing"
	"time"
)

// expectFenced waits for the postmaster pm to be stopped by a fence, which must come within
// the lease TTL (4 s) of what happened.
func expectFenced(t *testing.T, pm int, what string) {
	t.Helper()
	start := time.Now()
	for alive(pm) && time.Since(start) < 10*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)
	if alive(pm) {
		t.Fatalf("the primary is still running 10 s after %s: nothing fenced it", what)
	}
	t.Logf("primary fenced %s after %s", took.Round(time.Millisecond), what)
	if took > 4*time.Second {
		t.Errorf("primary fenced %s after %s; must be within the lease TTL (4 s)", took, what)
	}
}

// TestGuardFencesPrimaryWhenFogDies: with fog killed (kill -9) and not coming back, nothing
// renews the primary's lease, so the guard process stops the primary before the lease TTL
// (4 s) has passed, while the secondary, which accepts no writes, keeps running. Fog started
// again restarts the primary through its lease gate and the group replicates again. A fog
// that comes back within the lease re-adopts the running primary instead (same postmaster).
func TestGuardFencesPrimaryWhenFogDies(t *testing.T) {
	dir := t.TempDir()
	base := addressBase()
	proc := startFogProcess(t, dir, base)
	f := proc.asFog(t, dir)
	p := newPair(t, f, "gd")
	p.create(t, nil)
	p.setupTable(t)

	// Back within the lease: re-adopted, not restarted.
	pm := postmasterOf(t, f, p.prim)
	_ = proc.cmd.Process.Kill()
	_ = proc.cmd.Wait()
	proc = startFogProcess(t, dir, base)
	p.f = proc.asFog(t, dir)
	settle(t, p)
	if got := postmasterOf(t, p.f, p.prim); got != pm {
		t.Errorf("primary postmaster after a quick restart of fog = %d, want %d (re-adopted)", got, pm)
	}

	// Gone for good: the guard fences the primary before the lease TTL.
	sm := postmasterOf(t, p.f, p.sec)
	_ = proc.cmd.Process.Kill()
	_ = proc.cmd.Wait()
	expectFenced(t, pm, "fog died")
	if !alive(sm) {
		t.Error("the secondary was stopped too; only primaries are fenced")
	}
	if _, err := connect(t, p.f.info.CACert, p.prim, "fogadmin", password, "app"); err == nil {
		t.Error("connected straight to the fenced primary")
	}

	proc = startFogProcess(t, dir, base)
	p.f = proc.asFog(t, dir)
	eventually(t, 30*time.Second, "a write on the primary after fog came back", func() bool {
		c, err := connect(t, p.f.info.CACert, p.prim, "fogadmin", password, "app")
		if err != nil {
			return false
		}
		defer c.Close(t.Context())
		_, err = c.Exec(t.Context(), "INSERT INTO w (id) VALUES (-1)")
		return err == nil
	})
	settle(t, p)
}
