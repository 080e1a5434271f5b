package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
	// Each run: Fog creates the group (seeding the secondary), measured from the PUT to the
	// operation's success, which Fog declares only once the secondary streams (CATCH_UP);
	// then, while the group exists, a raw pg_basebackup of the same primary with the same
	// options, TLS and identity (the secondary's replication certificate, which the
	// primary's pg_hba.conf admits); then the group is deleted. A first, unmeasured round
	// warms the page cache, so both are timed warm.
	// Both copies start from a clean buffer pool: the checkpoint each asks for (fast) would
	// otherwise write whatever the load or the previous round left dirty, for whichever runs
	// first.
	// And from no dirty pages in the kernel: each copy's writes are still being written back
	// when the next one starts, and would slow it.
	checkpoint := func() error {
		err := execSQL(ctx, f, addr(g.prim), "bench", "CHECKPOINT")
		syscall.Sync()
		return err
	}
	if err := execSQL(ctx, f, addr(g.prim), "bench", "VACUUM ANALYZE"); err != nil {
		return nil, err
	}
	for run := -1; run < o.runs; run++ {
		if err := checkpoint(); err != nil {
			return nil, err
		}
		t1 := time.Now()
		if err := f.do(ctx, "PUT", groupPath("rg-p", "eastus", g.name), g.body()); err != nil {
			return nil, err
		}
		fogTime := time.Since(t1)

		certs, _ := filepath.Glob(filepath.Join(f.dir, "regions", "westus", "*", "replication.crt"))
		if len(certs) != 1 {
			return nil, fmt.Errorf("the secondary's replication certificate: %v", certs)
		}
		tmp, err := os.MkdirTemp("", "fog-bench-basebackup-")
		if err != nil {
			return nil, err
		}
		target := filepath.Join(tmp, "data")
		conn := fmt.Sprintf("host=%s port=%d user=%s sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s", g.prim.host, g.prim.port,
			postgres.ReplicationUser, filepath.Join(f.dir, "ca.crt"), certs[0], strings.TrimSuffix(certs[0], ".crt")+".key")
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "pg_basebackup"), "-D", target, "-d", conn, "-X", "stream", "--checkpoint=fast")
		// Fog deletes the secondary's old data while it copies; the raw copy is timed only
		// once that is done, so that it does not pay for Fog's cleanup.
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if left, _ := filepath.Glob(filepath.Join(f.dir, "regions", "westus", "*", "pgdata.discard-*")); len(left) == 0 {
				break
			}
		}
		if err := checkpoint(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("pg_basebackup: %w: %s", err, out)
		}
		rawTime := time.Since(t0)
		size := dirSize(target)
		os.RemoveAll(tmp)
		// Undo for the next run: delete the group and empty the secondary.
		if err := f.do(ctx, "DELETE", groupPath("rg-p", "eastus", g.name), nil); err != nil {
			return nil, err
		}
		if err := execSQL(ctx, f, addr(g.sec), "postgres", "DROP DATABASE bench WITH (FORCE)"); err != nil {
			return nil, err
		}
		if run < 0 {
			continue
		}
		mb := float64(size) / (1 << 20)
		res.add("size_mb", mb)
		res.add("raw_mb_per_s", mb/rawTime.Seconds())
		res.add("fog_mb_per_s", mb/fogTime.Seconds())
		res.add("ratio_fog_to_raw", rawTime.Seconds()/fogTime.Seconds())
		fmt.Printf("  seeding run %d: %.0f MB; raw pg_basebackup %s (%.0f MB/s); fog create to CATCH_UP %s (%.0f MB/s); ratio %.3f\n", run+1,
			mb, rawTime.Round(time.Millisecond), mb/rawTime.Seconds(), fogTime.Round(time.Millisecond), mb/fogTime.Seconds(), rawTime.Seconds()/fogTime.Seconds())
	}
	fmt.Print(res.finish("size_mb", "raw_mb_per_s", "fog_mb_per_s", "ratio_fog_to_raw"))
	return res, nil
}
