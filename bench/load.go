package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fogdb/fog/internal/postgres"
)

// pgbench runs pgbench against addr and returns its output.
func pgbench(ctx context.Context, addr, db string, args ...string) (string, error) {
	bin, err := postgres.FindBinaries(ctx, "")
	if err != nil {
		return "", err
	}
	host, port, _ := net.SplitHostPort(addr)
	all := append([]string{"-h", host, "-p", port, "-U", "fogadmin"}, args...)
	all = append(all, db)
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "pgbench"), all...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+password, "PGSSLMODE=require")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("pgbench %v: %w: %s", args, err, out)
	}
	return string(out), nil
}

var (
	tpsRe = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	latRe = regexp.MustCompile(`latency average = ([0-9.]+) ms`)
)

func parsePgbench(out string) (tps, lat float64, err error) {
	m, l := tpsRe.FindStringSubmatch(out), latRe.FindStringSubmatch(out)
	if m == nil || l == nil {
		return 0, 0, fmt.Errorf("cannot read pgbench output: %s", out)
	}
	tps, _ = strconv.ParseFloat(m[1], 64)
	lat, _ = strconv.ParseFloat(l[1], 64)
	return tps, lat, nil
}

func execSQL(ctx context.Context, f *fog, addr, db, q string) error {
	c, err := connect(ctx, f.ca, addr, db)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, q)
	return err
}

// sampleLag reads the flush lag of the standby (ms and bytes) from primary every 100 ms.
func sampleLag(ctx context.Context, c *pgx.Conn, app string, ms, bytes *[]float64) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var l, b float64
		err := c.QueryRow(ctx, `SELECT coalesce(extract(epoch FROM flush_lag) * 1000, 0)::float8,
			coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn), 0)::float8
			FROM pg_stat_replication WHERE application_name LIKE $1 LIMIT 1`, app).Scan(&l, &b)
		if err == nil {
			*ms, *bytes = append(*ms, l), append(*bytes, b)
		}
	}
}

func lagRun(ctx context.Context, f *fog, writeAddr, primaryAddr, app string, seconds int) (ms, bytes []float64, err error) {
	c, err := connect(ctx, f.ca, primaryAddr, "postgres")
	if err != nil {
		return nil, nil, err
	}
	defer c.Close(context.Background())
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { sampleLag(sctx, c, app, &ms, &bytes) })
	_, err = pgbench(ctx, writeAddr, "bench", "-n", "-c", "8", "-j", "2", "-T", strconv.Itoa(seconds))
	cancel()
	wg.Wait()
	return ms, bytes, err
}

func lagScenario(ctx context.Context, o options) (*result, error) {
	res := newResult(fmt.Sprintf("replication lag under pgbench -c 8 -j 2 -T %d (TPC-B-like), sampled every 100 ms", o.lagSeconds))
	f, g, err := setupFogGroup(ctx, "127.0.204.1")
	if err != nil {
		return nil, err
	}
	defer f.stop()
	raw, err := newRawPair(ctx, "127.0.205.1,127.0.205.2")
	if err != nil {
		return nil, err
	}
	defer raw.close()
	if err := execSQL(ctx, f, g.rw, "postgres", "CREATE DATABASE bench"); err != nil {
		return nil, err
	}
	if _, err := pgbench(ctx, g.rw, "bench", "-i", "-q", "-s", "10"); err != nil {
		return nil, err
	}
	rf := &fog{ca: raw.ca}
	if err := execSQL(ctx, rf, raw.addr(0), "postgres", "CREATE DATABASE bench"); err != nil {
		return nil, err
	}
	if _, err := pgbench(ctx, raw.addr(0), "bench", "-i", "-q", "-s", "10"); err != nil {
		return nil, err
	}
	for run := range o.runs {
		ms, bytes, err := lagRun(ctx, f, g.rw, addr(g.prim), "fog\\_%", o.lagSeconds)
		if err != nil {
			return nil, err
		}
		rms, rbytes, err := lagRun(ctx, rf, raw.addr(0), raw.addr(0), "raw\\_%", o.lagSeconds)
		if err != nil {
			return nil, err
		}
		res.Samples["fog_flush_lag_ms"] = append(res.Samples["fog_flush_lag_ms"], ms...)
		res.Samples["fog_flush_lag_bytes"] = append(res.Samples["fog_flush_lag_bytes"], bytes...)
		res.Samples["raw_flush_lag_ms"] = append(res.Samples["raw_flush_lag_ms"], rms...)
		res.Samples["raw_flush_lag_bytes"] = append(res.Samples["raw_flush_lag_bytes"], rbytes...)
		res.add("fog_run_p99_ms", summarize(ms).P99)
		res.add("raw_run_p99_ms", summarize(rms).P99)
		fmt.Printf("  lag run %d: fog p99 %.1f ms (%d samples); raw p99 %.1f ms\n", run+1, summarize(ms).P99, len(ms), summarize(rms).P99)
	}
	out := res.finish("fog_flush_lag_ms", "fog_flush_lag_bytes", "raw_flush_lag_ms", "raw_flush_lag_bytes", "fog_run_p99_ms", "raw_run_p99_ms")
	fmt.Print(out)
	fmt.Printf("  all samples: fog p50 %.1f ms, p99 %.1f ms, max %.1f ms; raw p50 %.1f ms, p99 %.1f ms\n",
		res.Summary["fog_flush_lag_ms"].Median, res.Summary["fog_flush_lag_ms"].P99, res.Summary["fog_flush_lag_ms"].Max,
		res.Summary["raw_flush_lag_ms"].Median, res.Summary["raw_flush_lag_ms"].P99)
	return res, nil
}

func gatewayScenario(ctx context.Context, o options) (*result, error) {
	res := newResult(fmt.Sprintf("gateway overhead: pgbench -c 8 -j 2 -T %d through the read-write listener and directly", o.pgbenchSecs))
	f, g, err := setupFogGroup(ctx, "127.0.206.1")
	if err != nil {
		return nil, err
	}
	defer f.stop()
	if err := execSQL(ctx, f, g.rw, "postgres", "CREATE DATABASE bench"); err != nil {
		return nil, err
	}
	if _, err := pgbench(ctx, g.rw, "bench", "-i", "-q", "-s", "10"); err != nil {
		return nil, err
	}
	secs := strconv.Itoa(o.pgbenchSecs)
	for run := range o.runs {
		for _, mode := range []struct {
			name string
			args []string
		}{{"select", []string{"-S"}}, {"tpcb", nil}} {
			targets := [][2]string{{"listener", g.rw}, {"direct", addr(g.prim)}}
			if run%2 == 1 {
				targets[0], targets[1] = targets[1], targets[0]
			}
			got := map[string][2]float64{}
			for _, t := range targets {
				out, err := pgbench(ctx, t[1], "bench", append([]string{"-n", "-c", "8", "-j", "2", "-T", secs}, mode.args...)...)
				if err != nil {
					return nil, err
				}
				tps, lat, err := parsePgbench(out)
				if err != nil {
					return nil, err
				}
				got[t[0]] = [2]float64{tps, lat}
				res.add(mode.name+"_"+t[0]+"_tps", tps)
				res.add(mode.name+"_"+t[0]+"_latency_ms", lat)
			}
			ratio := got["listener"][0] / got["direct"][0]
			res.add(mode.name+"_tps_ratio_listener_to_direct", ratio)
			fmt.Printf("  gateway run %d %s: listener %.0f tps (%.2f ms), direct %.0f tps (%.2f ms), ratio %.3f\n", run+1, mode.name,
				got["listener"][0], got["listener"][1], got["direct"][0], got["direct"][1], ratio)
		}
	}
	fmt.Print(res.finish("select_listener_tps", "select_direct_tps", "select_tps_ratio_listener_to_direct", "select_listener_latency_ms", "select_direct_latency_ms",
		"tpcb_listener_tps", "tpcb_direct_tps", "tpcb_tps_ratio_listener_to_direct", "tpcb_listener_latency_ms", "tpcb_direct_latency_ms"))
	return res, nil
}
