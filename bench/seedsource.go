package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/server"
)

// seedSourceScenario compares a secondary seeded from its region's backup repository with
// one seeded by pg_basebackup from the primary (docs/backups.md, "Seeding from the
// repository"), for a database of pgbench scale -seed-source-scale: each run creates the
// group with no copy of the stanza in the secondary's region (pg_basebackup), waits for the
// standby's own full backup there, deletes the group and creates it again (the repository).
// It reports each seed's time, from the PUT to the operation's success (the secondary
// streams), and the CPU time the primary's server spent meanwhile (the postmaster and its
// children, a WAL sender included).
func seedSourceScenario(ctx context.Context, o options) (*result, error) {
	res := newResult(fmt.Sprintf("seeding a secondary of pgbench scale %d: from its region's repository against pg_basebackup from the primary", o.seedSourceScale))
	f, err := startFog(ctx, "127.0.208.1", func(c *server.Config) { c.Agent.Backup.ArchiveTimeout = 2 * time.Second })
	if err != nil {
		return nil, err
	}
	defer f.stop()
	g, err := f.createPair(ctx, "seedsrc")
	if err != nil {
		return nil, err
	}
	if err := execSQL(ctx, f, addr(g.prim), "postgres", "CREATE DATABASE bench"); err != nil {
		return nil, err
	}
	fmt.Printf("  loading pgbench scale %d ...\n", o.seedSourceScale)
	if _, err := pgbench(ctx, addr(g.prim), "bench", "-i", "-q", "-s", strconv.Itoa(o.seedSourceScale)); err != nil {
		return nil, err
	}
	// The group's stanza is the primary's: its UID, the name of its instance directory.
	dirs, _ := filepath.Glob(filepath.Join(f.dir, "regions", "eastus", "*", "pgdata"))
	if len(dirs) != 1 {
		return nil, fmt.Errorf("the primary's data directory: %v", dirs)
	}
	westCopy := filepath.Join(f.dir, "regions", "backups", "westus", filepath.Base(filepath.Dir(dirs[0])))
	seed := func(want string) (time.Duration, float64, error) {
		cpu0, err := primaryCPU(f.dir)
		if err != nil {
			return 0, 0, err
		}
		t0 := time.Now()
		if err := f.do(ctx, "PUT", groupPath("rg-p", "eastus", g.name), g.body()); err != nil {
			return 0, 0, err
		}
		took := time.Since(t0)
		cpu1, err := primaryCPU(f.dir)
		if err != nil {
			return 0, 0, err
		}
		gr, err := f.getJSON(ctx, groupPath("rg-p", "eastus", g.name))
		if err != nil {
			return 0, 0, err
		}
		r, _ := gr["properties"].(map[string]any)["replication"].(map[string]any)
		if got, _ := r["seedSource"].(string); got != want {
			return 0, 0, fmt.Errorf("seedSource %q, want %q", got, want)
		}
		return took, cpu1 - cpu0, nil
	}
	undo := func() error {
		if err := f.do(ctx, "DELETE", groupPath("rg-p", "eastus", g.name), nil); err != nil {
			return err
		}
		return execSQL(ctx, f, addr(g.sec), "postgres", "DROP DATABASE bench WITH (FORCE)")
	}
	for run := 0; run < o.runs; run++ {
		// No copy of the stanza in westus: the seed copies from the primary.
		if err := os.RemoveAll(westCopy); err != nil {
			return nil, err
		}
		tp, cp, err := seed("primary")
		if err != nil {
			return nil, err
		}
		// The standby's own full backup in westus.
		secDB := miPath("rg-s", g.name+"-s") + "/databases/bench"
		deadline := time.Now().Add(30 * time.Minute)
		for {
			d, err := f.getJSON(ctx, secDB)
			if err == nil && d["properties"].(map[string]any)["lastBackupType"] == "Full" {
				break
			}
			if time.Now().After(deadline) {
				return nil, errors.New("no full backup of the standby in westus")
			}
			time.Sleep(time.Second)
		}
		if err := undo(); err != nil {
			return nil, err
		}
		tr, cr, err := seed("repository")
		if err != nil {
			return nil, err
		}
		if err := undo(); err != nil {
			return nil, err
		}
		res.add("basebackup_s", tp.Seconds())
		res.add("basebackup_primary_cpu_s", cp)
		res.add("repository_s", tr.Seconds())
		res.add("repository_primary_cpu_s", cr)
		fmt.Printf("  run %d: pg_basebackup %s (primary CPU %.2f s); repository %s (primary CPU %.2f s)\n", run+1,
			tp.Round(time.Millisecond), cp, tr.Round(time.Millisecond), cr)
	}
	fmt.Print(res.finish("basebackup_s", "basebackup_primary_cpu_s", "repository_s", "repository_primary_cpu_s"))
	return res, nil
}

// primaryCPU is the CPU time, in seconds, of eastus's one server: its postmaster's own and
// its ended children's, and its running children's.
func primaryCPU(dir string) (float64, error) {
	pids, _ := filepath.Glob(filepath.Join(dir, "regions", "eastus", "*", "pgdata", "postmaster.pid"))
	if len(pids) != 1 {
		return 0, fmt.Errorf("the primary's postmaster.pid: %v", pids)
	}
	b, err := os.ReadFile(pids[0])
	if err != nil {
		return 0, err
	}
	pm, _, _ := strings.Cut(string(b), "\n")
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var ticks int64
	for _, p := range procs {
		s, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// The fields after the command's closing parenthesis: state ppid ... utime(14) stime(15) cutime(16) cstime(17).
		i := strings.LastIndexByte(string(s), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(s)[i+1:])
		if len(f) < 15 {
			continue
		}
		pid := filepath.Base(filepath.Dir(p))
		num := func(k int) int64 { n, _ := strconv.ParseInt(f[k-2], 10, 64); return n }
		switch {
		case pid == pm:
			ticks += num(14) + num(15) + num(16) + num(17)
		case f[1] == pm:
			ticks += num(14) + num(15)
		}
	}
	return float64(ticks) / 100, nil
}
