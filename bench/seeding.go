package main

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/fogdb/fog/internal/postgres"
)

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func seedingScenario(ctx context.Context, o options) (*result, error) {
	res := newResult(fmt.Sprintf("seeding a database of pgbench scale %d: Fog's group create against raw pg_basebackup", o.seedScale))
	f, err := startFog(ctx, "127.0.207.1")
	if err != nil {
		return nil, err
	}
	defer f.stop()
	g, err := f.createPair(ctx, "seed")
	if err != nil {
		return nil, err
	}
	if err := execSQL(ctx, f, addr(g.prim), "postgres", "CREATE DATABASE bench"); err != nil {
		return nil, err
	}
	fmt.Printf("  loading pgbench scale %d ...\n", o.seedScale)
	if _, err := pgbench(ctx, addr(g.prim), "bench", "-i", "-q", "-s", strconv.Itoa(o.seedScale)); err != nil {
		return nil, err
	}
	bin, err := postgres.FindBinaries(ctx, "")
	if err != nil {
		return nil, err
	}
	runner, err := postgres.NewRunner(bin, "postgres", slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	// A first, unmeasured pg_basebackup warms the page cache, so both are timed warm.
	for run := -1; run < o.runs; run++ {
		// Raw: pg_basebackup of the same instance, same options as Fog's seed.
		tmp, err := os.MkdirTemp("", "fog-bench-basebackup-")
		if err != nil {
			return nil, err
		}
		target := filepath.Join(tmp, "data")
		if err := runner.MkdirOwned(target, 0o700); err != nil {
			return nil, err
		}
		cmd := runner.Command(ctx, "pg_basebackup", "-D", target, "-d",
			fmt.Sprintf("host=%s port=%d user=fogadmin sslmode=require", g.prim.host, g.prim.port), "-X", "stream", "--checkpoint=fast")
		cmd.Env = append(cmd.Env, "PGPASSWORD="+password)
		t0 := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("pg_basebackup: %w: %s", err, out)
		}
		rawTime := time.Since(t0)
		size := dirSize(target)
		os.RemoveAll(tmp)
		if run < 0 {
			continue
		}

		// Fog: create the group (seed), measured from the PUT to the operation's success,
		// which Fog declares only once the secondary streams (CATCH_UP).
		t1 := time.Now()
		if err := f.do(ctx, "PUT", groupPath("rg-p", "eastus", g.name), g.body()); err != nil {
			return nil, err
		}
		fogTime := time.Since(t1)
		mb := float64(size) / (1 << 20)
		res.add("size_mb", mb)
		res.add("raw_mb_per_s", mb/rawTime.Seconds())
		res.add("fog_mb_per_s", mb/fogTime.Seconds())
		res.add("ratio_fog_to_raw", rawTime.Seconds()/fogTime.Seconds())
		fmt.Printf("  seeding run %d: %.0f MB; raw pg_basebackup %s (%.0f MB/s); fog create to CATCH_UP %s (%.0f MB/s)\n", run+1,
			mb, rawTime.Round(time.Millisecond), mb/rawTime.Seconds(), fogTime.Round(time.Millisecond), mb/fogTime.Seconds())
		// Undo for the next run: delete the group and empty the secondary.
		if err := f.do(ctx, "DELETE", groupPath("rg-p", "eastus", g.name), nil); err != nil {
			return nil, err
		}
		if err := execSQL(ctx, f, addr(g.sec), "postgres", "DROP DATABASE bench WITH (FORCE)"); err != nil {
			return nil, err
		}
	}
	fmt.Print(res.finish("size_mb", "raw_mb_per_s", "fog_mb_per_s", "ratio_fog_to_raw"))
	return res, nil
}
