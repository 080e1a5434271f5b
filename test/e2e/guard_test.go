package e2e

import (
	"testing"
	"time"
)

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
	killed := time.Now()
	for alive(pm) && time.Since(killed) < 10*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(killed)
	if alive(pm) {
		t.Fatal("the primary is still running 10 s after fog died: no guard fenced it")
	}
	t.Logf("primary fenced %s after fog died", took.Round(time.Millisecond))
	if took > 4*time.Second {
		t.Errorf("primary fenced %s after fog died; must be within the lease TTL (4 s)", took)
	}
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
