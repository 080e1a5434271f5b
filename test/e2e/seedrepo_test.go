package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/server"
)

// TestSeedFromTheRepository: a group's secondary region holds a backup of the group's stanza
// (the standby takes one after the group is created); the group is deleted and created
// again between the same two instances, which seeds the secondary afresh, and this time the
// seed comes from that backup and the WAL archived in the secondary's region, then streams
// the rest from the primary (docs/backups.md, "Seeding from the repository"): the group's
// GET says so, the agent copied nothing from the primary, and the secondary has every row,
// written before the first group, between the two groups and after the second.
func TestSeedFromTheRepository(t *testing.T) {
	if _, err := exec.LookPath("pgbackrest"); err != nil {
		t.Skip("pgBackRest is not installed (CI installs Debian's pgbackrest)")
	}
	// It waits for the standby's first backup: it runs beside the grace-period tests.
	waitBound(t)
	ctx := context.Background()
	start := time.Now()
	f := startFog(t, "", withQuickBackups, func(c *server.Config) { c.Agent.Backup.ArchiveTimeout = 2 * time.Second })
	p := newPair(t, f, "sr")
	p.create(t, nil)
	p.setupTable(t)
	run := func(inst map[string]any, sql string) {
		t.Helper()
		c := mustConnect(t, f.info.CACert, inst, "app")
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	run(p.prim, "INSERT INTO w (id) SELECT generate_series(1, 30)")
	replication := func() map[string]any {
		r, _ := props(p.get(t, "rg-p", "eastus"))["replication"].(map[string]any)
		return r
	}
	seedSource := func() (string, string) {
		r := replication()
		src, _ := r["seedSource"].(string)
		label, _ := r["seedBackup"].(string)
		return src, label
	}
	if src, _ := seedSource(); src != "primary" {
		t.Errorf("the first group's seedSource = %q, want primary (the secondary's region held no backup of the stanza)", src)
	}
	if why, _ := replication()["seedFallback"].(string); why == "" {
		t.Error("the first group's seedFallback is empty: the API does not say why the seed came from the primary")
	} else {
		t.Logf("seedFallback: %s", why)
	}

	// The standby's region takes its own full backup of the group's stanza.
	secDB := miPath("rg-s", "sr-s") + "/databases/app"
	eventually(t, 3*time.Minute, "a full backup in the secondary's region", func() bool {
		r := f.call("GET", secDB, nil)
		return r.Status == http.StatusOK && props(r.json(t))["lastBackupType"] == "Full"
	})
	t.Logf("the standby's region has its full backup: %s", time.Since(start).Round(time.Second))
	run(p.prim, "INSERT INTO w (id) SELECT generate_series(31, 40)")

	// Deleted: both are standalone; rows written on the primary meanwhile.
	f.mustSucceed(f.call("DELETE", groupPath("rg-p", "eastus", p.name), nil))
	run(p.prim, "INSERT INTO w (id) SELECT generate_series(41, 50)")

	// Created again (the former secondary's databases dropped first, as a group's secondary
	// must have none): the secondary is seeded from its region's repository.
	func() {
		c := mustConnect(t, f.info.CACert, p.sec, "postgres")
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE app WITH (FORCE)"); err != nil {
			t.Fatal(err)
		}
	}()
	recreated := time.Now()
	p.create(t, nil)
	p.waitState(t, "CATCH_UP", 90*time.Second)
	t.Logf("the group created again replicates: %s after the create", time.Since(recreated).Round(time.Second))
	run(p.prim, "INSERT INTO w (id) SELECT generate_series(51, 60)")
	src, label := seedSource()
	if src != "repository" || label == "" {
		b, _ := os.ReadFile(filepath.Join(f.dataDir, "fog.log"))
		var why []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "seeding") || strings.Contains(l, "seeded") {
				why = append(why, l)
			}
		}
		t.Fatalf("the group created again: seedSource %q, seedBackup %q; want repository and the backup's label\n%s", src, label, strings.Join(why, "\n"))
	}
	if why, ok := replication()["seedFallback"]; ok {
		t.Errorf("seeded from the repository, seedFallback still reads %v", why)
	}
	eventually(t, 30*time.Second, "rows 1-60 on the secondary", func() bool {
		c, err := connect(t, f.info.CACert, p.sec, "fogadmin", password, "app")
		if err != nil {
			return false
		}
		defer c.Close(ctx)
		var n, lo, hi int
		_ = c.QueryRow(ctx, "SELECT count(*), min(id), max(id) FROM w").Scan(&n, &lo, &hi)
		return n == 60 && lo == 1 && hi == 60
	})

	// restore_command was for the seed: pgBackRest's lines are gone from postgresql.auto.conf,
	// and Fog's configuration drops it once the standby streams.
	eventually(t, 30*time.Second, "the standby's configuration without restore_command", func() bool {
		for _, name := range []string{"postgresql.auto.conf", "fog.conf"} {
			files, _ := filepath.Glob(filepath.Join(f.dataDir, "regions", "westus", "*", "pgdata", name))
			if len(files) != 1 {
				return false
			}
			b, _ := os.ReadFile(files[0])
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(strings.TrimSpace(l), "restore_command") {
					return false
				}
			}
		}
		return true
	})

	// The primary copied nothing: the agent ran pg_basebackup for the first group only.
	b, err := os.ReadFile(filepath.Join(f.dataDir, "fog.log"))
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	if n := strings.Count(log, "seeding standby from its primary (pg_basebackup)"); n != 1 {
		t.Errorf("pg_basebackup ran %d times, want once (the first group)", n)
	}
	if !strings.Contains(log, "seeded standby from the region's backup repository") || !strings.Contains(log, label) {
		t.Errorf("the agent's log does not say the secondary was seeded from backup %s of the repository", label)
	}
	t.Logf("total: %s", time.Since(start).Round(time.Second))
}
