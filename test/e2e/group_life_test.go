package e2e

import (
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/server"
)

func eventually(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFailoverGroupReplicatesEverything: databases created or dropped later, roles, and the
// link-status view all reach the secondary.
func TestFailoverGroupReplicatesEverything(t *testing.T) {
	f := startFog(t, "", withBackups)
	p := newPair(t, f, "rep")
	// A database that exists before the group is seeded.
	f.mustSucceed(f.call("PUT", miPath("rg-p", "rep-p")+"/databases/before", map[string]any{}))
	g := p.create(t, nil)
	ctx := context.Background()
	prim := mustConnect(t, f.info.CACert, p.prim, "postgres")
	for _, q := range []string{
		"CREATE DATABASE later",
		"CREATE ROLE app_user LOGIN PASSWORD 'App-User-Passw0rd-1'",
	} {
		if _, err := prim.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "databases on the secondary", func() bool {
		names := dbNames(t, f, "rg-s", "rep-s")
		return strings.Join(names, ",") == "before,later"
	})
	// The role logs in on the secondary with the password set on the primary.
	eventually(t, 10*time.Second, "role on the secondary", func() bool {
		c, err := connect(t, f.info.CACert, p.sec, "app_user", "App-User-Passw0rd-1", "later")
		if err == nil {
			c.Close(ctx)
		}
		return err == nil
	})
	if _, err := prim.Exec(ctx, "DROP DATABASE later"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "drop on the secondary", func() bool {
		return strings.Join(dbNames(t, f, "rg-s", "rep-s"), ",") == "before"
	})
	// The link-status view, in a user database, on both sides.
	for side, inst := range map[string]map[string]any{"primary": p.prim, "secondary": p.sec} {
		c := mustConnect(t, f.info.CACert, inst, "before")
		var partner, state, role, allow string
		var stateCode, roleCode int
		err := c.QueryRow(ctx, `SELECT partner_server, replication_state, replication_state_desc, role, role_desc, secondary_allow_connections_desc
			FROM fog.geo_replication_link_status`).Scan(&partner, &stateCode, &state, &roleCode, &role, &allow)
		if err != nil {
			t.Fatalf("%s: link view: %v", side, err)
		}
		wantPartner, wantRole, wantCode := "rep-s", "PRIMARY", 0
		if side == "secondary" {
			wantPartner, wantRole, wantCode = "rep-p", "SECONDARY", 1
		}
		if partner != wantPartner || state != "CATCH_UP" || stateCode != 2 || role != wantRole || roleCode != wantCode || allow != "All" {
			t.Errorf("%s: link view = %s %d %s %d %s %s", side, partner, stateCode, state, roleCode, role, allow)
		}
		c.Close(ctx)
	}
	// Lag figures on GET: the last hardened LSN, and a lag of zero once idle.
	rep := props(g)["replication"].(map[string]any)
	if rep["lastHardenedLsn"] == "" || rep["lagBytes"] == nil {
		t.Errorf("replication status = %v", rep)
	}
	if _, err := prim.Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "lag drains to zero", func() bool {
		r := props(p.get(t, "rg-p", "eastus"))["replication"].(map[string]any)
		return r["lagBytes"] == float64(0)
	})
	// The secondary is read-only.
	sec := mustConnect(t, f.info.CACert, p.sec, "before")
	if _, err := sec.Exec(ctx, "CREATE TABLE x (i int)"); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("write on the secondary: %v, want a read-only error", err)
	}
}

// TestFailoverGroupUpdateAndDelete covers policy updates, the read-only listener's policies
// and the Standby type, and delete: replication stops, the secondary becomes an independent
// read-write instance, the listeners go, all data stays.
func TestFailoverGroupUpdateAndDelete(t *testing.T) {
	f := startFog(t, "", withBackups)
	p := newPair(t, f, "upd")
	p.create(t, nil)
	p.setupTable(t)
	p.secondaryArchives(t)
	ctx := context.Background()
	roName := strings.Replace(p.rwFQDN, p.name+".", p.name+".secondary.", 1)

	put := func(body map[string]any) response {
		return f.call("PUT", groupPath("rg-p", "eastus", "upd"), body)
	}
	base := func(rw map[string]any, ro string, secType string) map[string]any {
		b := groupBody(p.prim["id"].(string), p.sec["id"].(string), "westus", rw)
		b["properties"].(map[string]any)["readOnlyEndpoint"] = map[string]any{"failoverPolicy": ro}
		if secType != "" {
			b["properties"].(map[string]any)["secondaryType"] = secType
		}
		return b
	}
	f.mustSucceed(put(base(map[string]any{"failoverPolicy": "Automatic", "failoverWithDataLossGracePeriodMinutes": 120}, "Enabled", "")))
	gp := props(p.get(t, "rg-s", "westus"))
	rw := gp["readWriteEndpoint"].(map[string]any)
	if rw["failoverPolicy"] != "Automatic" || rw["failoverWithDataLossGracePeriodMinutes"] != float64(120) ||
		gp["readOnlyEndpoint"].(map[string]any)["failoverPolicy"] != "Enabled" {
		t.Errorf("after update: %v %v", rw, gp["readOnlyEndpoint"])
	}
	moved := base(map[string]any{"failoverPolicy": "Manual"}, "Disabled", "")
	moved["properties"].(map[string]any)["partnerRegions"] = []any{map[string]any{"location": "eastus"}}
	if r := put(moved); r.code() != "InstanceFailoverGroupCreateOrUpdateRequestReadOnlyPropertyModified" {
		t.Errorf("changing partnerRegions = %d %s, want ReadOnlyPropertyModified", r.Status, r.Body)
	}

	// Read-only policy Enabled: with the secondary down, read-only sessions reach the primary.
	pm := postmasterOf(t, f, p.sec)
	if err := syscall.Kill(pm, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	sawPrimary := false
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !sawPrimary {
		c, err := p.listenerConn(ctx, p.ro, "app", roName)
		if err == nil {
			var rec bool
			_ = c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec)
			sawPrimary = !rec
			c.Close(ctx)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !sawPrimary {
		t.Error("with the secondary down and the read-only policy Enabled, no read-only session reached the primary")
	}
	p.waitState(t, "CATCH_UP", 30*time.Second)

	// Standby: DR only, the read-only listener refuses with a clear error.
	f.mustSucceed(put(base(map[string]any{"failoverPolicy": "Manual"}, "Disabled", "Standby")))
	if s := props(p.get(t, "rg-p", "eastus"))["secondaryType"]; s != "Standby" {
		t.Errorf("secondaryType = %v", s)
	}
	eventually(t, 5*time.Second, "read-only listener refuses", func() bool {
		c, err := p.listenerConn(ctx, p.ro, "app", roName)
		if err == nil {
			c.Close(ctx)
			return false
		}
		return strings.Contains(err.Error(), "Standby")
	})

	// Delete: both sides keep the data and accept writes; the listeners are gone.
	c, err := p.listenerConn(ctx, p.rw, "app", p.rwFQDN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO w (id) SELECT generate_series(1, 100)"); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	eventually(t, 10*time.Second, "rows on the secondary", func() bool {
		s, err := connect(t, f.info.CACert, p.sec, "fogadmin", password, "app")
		if err != nil {
			return false
		}
		defer s.Close(ctx)
		var n int
		_ = s.QueryRow(ctx, "SELECT count(*) FROM w").Scan(&n)
		return n == 100
	})
	d := f.call("DELETE", groupPath("rg-p", "eastus", "upd"), nil)
	f.mustSucceed(d)
	if r := f.call("GET", d.Header.Get("Location"), nil); r.Status != http.StatusNoContent {
		t.Errorf("delete result = %d, want 204", r.Status)
	}
	for _, side := range [][2]string{{"rg-p", "eastus"}, {"rg-s", "westus"}} {
		if r := f.call("GET", groupPath(side[0], side[1], "upd"), nil); r.Status != http.StatusNotFound {
			t.Errorf("GET %v after delete = %d, want 404", side, r.Status)
		}
	}
	for name, inst := range map[string]map[string]any{"old primary": p.prim, "old secondary": p.sec} {
		c := mustConnect(t, f.info.CACert, inst, "app")
		var n int
		var rec bool
		if err := c.QueryRow(ctx, "SELECT count(*), pg_is_in_recovery() FROM w").Scan(&n, &rec); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n != 100 || rec {
			t.Errorf("%s after delete: %d rows, in recovery %v; want 100 rows, read-write", name, n, rec)
		}
		if _, err := c.Exec(ctx, "INSERT INTO w (id) VALUES (1000)"); err != nil {
			t.Errorf("%s: write after delete: %v", name, err)
		}
		var slots int
		_ = c.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots").Scan(&slots)
		if slots != 0 {
			t.Errorf("%s keeps %d replication slots", name, slots)
		}
		var links int
		_ = c.QueryRow(ctx, "SELECT count(*) FROM fog.geo_replication_link_status").Scan(&links)
		if links != 0 {
			t.Errorf("%s: link view has %d rows after delete, want 0", name, links)
		}
		c.Close(ctx)
	}
	if _, err := p.listenerConn(ctx, p.rw, "app", p.rwFQDN); err == nil {
		t.Error("the read-write listener still accepts connections after delete")
	}
	// The same pair can form a group again: the former secondary, now diverged, is seeded
	// afresh (it must not be trusted as an old standby).
	if err := func() error {
		c := mustConnect(t, f.info.CACert, p.sec, "postgres")
		defer c.Close(ctx)
		_, err := c.Exec(ctx, "DROP DATABASE app WITH (FORCE)")
		return err
	}(); err != nil {
		t.Fatal(err)
	}
	p.create(t, nil)
	p.secondaryArchives(t)
	c2, err := p.listenerConn(ctx, p.rw, "app", p.rwFQDN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Exec(ctx, "INSERT INTO w (id) VALUES (2000)"); err != nil {
		t.Fatal(err)
	}
	c2.Close(ctx)
	eventually(t, 10*time.Second, "the re-created group replicates", func() bool {
		s, err := connect(t, f.info.CACert, p.sec, "fogadmin", password, "app")
		if err != nil {
			return false
		}
		defer s.Close(ctx)
		var n int
		_ = s.QueryRow(ctx, "SELECT count(*) FROM w WHERE id IN (1000, 2000)").Scan(&n)
		return n == 2
	})
}

// TestPlannedFailoverRollsBack: when the secondary cannot receive the old primary's last WAL,
// the planned failover times out, the old primary serves again, and nothing is lost.
func TestPlannedFailoverRollsBack(t *testing.T) {
	f := startFog(t, "", withBackups)
	p := newPair(t, f, "rb")
	p.create(t, nil)
	p.setupTable(t)
	ctx := context.Background()
	c, err := p.listenerConn(ctx, p.rw, "app", p.rwFQDN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO w (id) SELECT generate_series(1, 10)"); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	recv := func() int {
		s := mustConnect(t, f.info.CACert, p.sec, "postgres")
		defer s.Close(ctx)
		var pid int
		if err := s.QueryRow(ctx, "SELECT pid FROM pg_stat_wal_receiver").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		return pid
	}()
	if err := syscall.Kill(recv, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	r := f.call("POST", groupPath("rg-s", "westus", "rb")+"/failover", nil)
	st := f.wait(r)
	_ = syscall.Kill(recv, syscall.SIGCONT)
	if st["status"] != "Failed" || st["error"].(map[string]any)["code"] != "PlannedFailoverTimedOut" {
		t.Fatalf("planned failover with a stuck secondary = %v, want Failed PlannedFailoverTimedOut", st)
	}
	if role := props(p.get(t, "rg-p", "eastus"))["replicationRole"]; role != "Primary" {
		t.Errorf("after rollback eastus is %v, want Primary", role)
	}
	present := p.present(t)
	if len(present) != 10 {
		t.Errorf("rows after rollback = %d, want 10", len(present))
	}
	p.waitState(t, "CATCH_UP", 60*time.Second)
}

// TestSuspendedSecondaryIsReseeded: a secondary that falls further behind than
// max_slot_wal_keep_size loses its slot; the group shows SUSPENDED and reseeds it on its own.
func TestSuspendedSecondaryIsReseeded(t *testing.T) {
	f := startFog(t, "", withBackups, func(c *server.Config) {
		c.Agent.MaxSlotWALKeepSize = "32MB"
		c.Agent.Resync = time.Hour // a killed secondary stays down until the reseed
	})
	p := newPair(t, f, "sus")
	p.create(t, nil)
	p.setupTable(t)
	ctx := context.Background()
	if err := syscall.Kill(postmasterOf(t, f, p.sec), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c := mustConnect(t, f.info.CACert, p.prim, "app")
	for range 4 {
		if _, err := c.Exec(ctx, "INSERT INTO w (id) SELECT g FROM generate_series((SELECT coalesce(max(id), 0) + 1 FROM w), (SELECT coalesce(max(id), 0) + 200000 FROM w)) g"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	var status string
	_ = c.QueryRow(ctx, "SELECT coalesce(wal_status, '') FROM pg_replication_slots").Scan(&status)
	if status != "lost" {
		t.Fatalf("slot wal_status = %q after writing past max_slot_wal_keep_size, want lost", status)
	}
	var total int
	_ = c.QueryRow(ctx, "SELECT count(*) FROM w").Scan(&total)
	saw := map[string]bool{}
	eventually(t, 90*time.Second, "reseeded and streaming again", func() bool {
		s := props(p.get(t, "rg-p", "eastus"))["replicationState"].(string)
		saw[s] = true
		return s == "CATCH_UP" && (saw["SUSPENDED"] || saw["SEEDING"])
	})
	t.Logf("states seen: %v", saw)
	s := mustConnect(t, f.info.CACert, p.sec, "app")
	eventually(t, 10*time.Second, "rows on the reseeded secondary", func() bool {
		var n int
		err := s.QueryRow(ctx, "SELECT count(*) FROM w").Scan(&n)
		if n != total {
			t.Logf("secondary has %d rows of %d (%v)", n, total, err)
		}
		return n == total
	})
}
