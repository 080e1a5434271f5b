package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fogdb/fog/internal/server"
)

// seedSourceScenario compares a secondary seeded from its region's backup repository with
// one seeded by pg_basebackup from the primary (docs/backups.md, "Seeding from the
// repository"), for a database of pgbench scale -seed-source-scale: each run creates the
// group with no copy of the stanza in the secondary's region (pg_basebackup), waits for the
// standby's own full backup there, deletes the group and creates it again (the repository).
// It reports each seed's time, from the PUT to the operation's success (the secondary
// streams), and what the primary's server used meanwhile (the postmaster and its children,
// a WAL sender included): CPU time, and the bytes it read from the disk and in all, each
// seed starting with an empty page cache.
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
	// seed creates the group and reports its time and the primary's use meanwhile. The page
	// cache is emptied first (where the benchmark may: as root), so that what either source
	// reads comes from the disk, as it does for a database larger than the machine's memory.
	seed := func(want string) (time.Duration, primaryUse, error) {
		dropCaches()
		u0, err := primaryUsage(f.dir)
		if err != nil {
			return 0, primaryUse{}, err
		}
		t0 := time.Now()
		if err := f.do(ctx, "PUT", groupPath("rg-p", "eastus", g.name), g.body()); err != nil {
			return 0, primaryUse{}, err
		}
		took := time.Since(t0)
		u1, err := primaryUsage(f.dir)
		if err != nil {
			return 0, primaryUse{}, err
		}
		gr, err := f.getJSON(ctx, groupPath("rg-p", "eastus", g.name))
		if err != nil {
			return 0, primaryUse{}, err
		}
		r, _ := gr["properties"].(map[string]any)["replication"].(map[string]any)
		if got, _ := r["seedSource"].(string); got != want {
			return 0, primaryUse{}, fmt.Errorf("seedSource %q, want %q", got, want)
		}
		return took, u1.minus(u0), nil
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
		if err := waitNoVerify(ctx, 10*time.Minute); err != nil {
			return nil, err
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
		res.add("basebackup_primary_cpu_s", cp.cpu)
		res.add("basebackup_primary_disk_read_mb", cp.diskMB)
		res.add("basebackup_primary_read_mb", cp.readMB)
		res.add("repository_s", tr.Seconds())
		res.add("repository_primary_cpu_s", cr.cpu)
		res.add("repository_primary_disk_read_mb", cr.diskMB)
		res.add("repository_primary_read_mb", cr.readMB)
		fmt.Printf("  run %d: pg_basebackup %s (primary %s); repository %s (primary %s)\n", run+1,
			tp.Round(time.Millisecond), cp, tr.Round(time.Millisecond), cr)
	}
	fmt.Print(res.finish("basebackup_s", "basebackup_primary_cpu_s", "basebackup_primary_disk_read_mb", "basebackup_primary_read_mb",
		"repository_s", "repository_primary_cpu_s", "repository_primary_disk_read_mb", "repository_primary_read_mb"))
	return res, nil
}

// primaryUse is what eastus's one server used: CPU seconds, megabytes read from the disk
// (the block layer's read_bytes: page-cache misses) and megabytes read by any means (rchar:
// read(2) and the like, the page cache included).
type primaryUse struct{ cpu, diskMB, readMB float64 }

func (u primaryUse) minus(v primaryUse) primaryUse {
	return primaryUse{u.cpu - v.cpu, u.diskMB - v.diskMB, u.readMB - v.readMB}
}

func (u primaryUse) String() string {
	return fmt.Sprintf("CPU %.2f s, disk read %.0f MB, read %.0f MB", u.cpu, u.diskMB, u.readMB)
}

// dropCaches writes back and empties the page cache; it does nothing where the benchmark
// may not (not root).
func dropCaches() {
	syscall.Sync()
	_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0)
}

// primaryUsage is the use so far of eastus's one server: its postmaster's own and its
// ended children's (the kernel adds a reaped child's CPU time and I/O to its parent's), and
// its running children's.
func primaryUsage(dir string) (primaryUse, error) {
	pids, _ := filepath.Glob(filepath.Join(dir, "regions", "eastus", "*", "pgdata", "postmaster.pid"))
	if len(pids) != 1 {
		return primaryUse{}, fmt.Errorf("the primary's postmaster.pid: %v", pids)
	}
	b, err := os.ReadFile(pids[0])
	if err != nil {
		return primaryUse{}, err
	}
	pm, _, _ := strings.Cut(string(b), "\n")
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var ticks, disk, read int64
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
		default:
			continue
		}
		// /proc/<pid>/io of a process counts its reaped children's I/O too; reading it of
		// another user's process needs root, and without it both stay 0.
		io, err := os.ReadFile(filepath.Join(filepath.Dir(p), "io"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(io), "\n") {
			k, v, _ := strings.Cut(line, ": ")
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			switch k {
			case "read_bytes":
				disk += n
			case "rchar":
				read += n
			}
		}
	}
	return primaryUse{cpu: float64(ticks) / 100, diskMB: float64(disk) / 1e6, readMB: float64(read) / 1e6}, nil
}
