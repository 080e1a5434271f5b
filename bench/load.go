package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fogdb/fog/internal/fogdns"
	"github.com/fogdb/fog/internal/postgres"
)

// pgbench runs pgbench against addr and returns its output.
func pgbench(ctx context.Context, addr, db string, args ...string) (string, error) {
	bin, err := postgres.FindBinaries(ctx, "")
	if err != nil {
		return "", err
	}
	// name@host:port connects to host:port with name as libpq's host (hostaddr from a
	// resolver of our own, as an application using Fog's DNS name does).
	name, addr, named := strings.Cut(addr, "@")
	if !named {
		addr = name
	}
	host, port, _ := net.SplitHostPort(addr)
	env := append(os.Environ(), "PGPASSWORD="+password, "PGSSLMODE=require")
	if named {
		env = append(env, "PGHOSTADDR="+host)
		host = name
	}
	all := append([]string{"-h", host, "-p", port, "-U", "fogadmin"}, args...)
	all = append(all, db)
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "pgbench"), all...)
	cmd.Env = env
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

// startHAProxy runs HAProxy in TCP mode on listen, forwarding to backend, with one thread per
// core as its defaults are; it returns a stop function.
func startHAProxy(ctx context.Context, listen, backend string) (func(), error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		return nil, errors.New("haproxy is not installed")
	}
	dir, err := os.MkdirTemp("", "fog-bench-haproxy-")
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend pg
    bind %s
    default_backend primary
backend primary
    server primary %s
`, listen, backend)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		os.RemoveAll(dir)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", listen, 200*time.Millisecond); err == nil {
			c.Close()
			return stop, nil
		}
	}
	stop()
	return nil, errors.New("haproxy did not listen on " + listen)
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
	res := newResult(fmt.Sprintf("gateway overhead: pgbench -c 8 -j 2 -T %d directly, through Fog's read-write listener (relay), through HAProxy (TCP mode) and through the read-write DNS name in direct mode", o.pgbenchSecs))
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
	targets := [][2]string{{"direct", addr(g.prim)}, {"listener", g.rw}}
	// HAProxy in TCP mode in front of the primary: what Patroni's users put there.
	if hp, err := startHAProxy(ctx, "127.0.206.250:5432", addr(g.prim)); err != nil {
		fmt.Printf("  HAProxy baseline skipped: %v (install it with apt-get install haproxy)\n", err)
	} else {
		defer hp()
		targets = append(targets, [2]string{"haproxy", "127.0.206.250:5432"})
	}
	// Direct mode: the read-write name, resolved by Fog's DNS server, is the primary itself.
	if f.dns != "" && g.rwName != "" {
		ips, err := fogdns.Resolve(ctx, f.dns, g.rwName)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", g.rwName, err)
		}
		_, port, _ := net.SplitHostPort(g.rw)
		targets = append(targets, [2]string{"dnsdirect", g.rwName + "@" + net.JoinHostPort(ips[0].String(), port)})
	}
	// Warm every path (caches, connections, HAProxy's and the relay's first sessions)
	// before anything is measured.
	for _, t := range targets {
		if _, err := pgbench(ctx, t[1], "bench", "-n", "-c", "8", "-j", "2", "-T", "3", "-S"); err != nil {
			return nil, err
		}
	}
	secs := strconv.Itoa(o.pgbenchSecs)
	var keys []string
	for run := range o.runs {
		for _, mode := range []struct {
			name string
			args []string
		}{{"select", []string{"-S"}}, {"tpcb", nil}} {
			// Alternate the order run by run, so that no target always goes first.
			order := slices.Clone(targets)
			if run%2 == 1 {
				slices.Reverse(order)
			}
			got := map[string][2]float64{}
			for _, t := range order {
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
			line := fmt.Sprintf("  gateway run %d %s:", run+1, mode.name)
			for _, t := range targets {
				line += fmt.Sprintf(" %s %.0f tps (%.2f ms)", t[0], got[t[0]][0], got[t[0]][1])
				if t[0] != "direct" {
					r := got[t[0]][0] / got["direct"][0]
					res.add(mode.name+"_tps_ratio_"+t[0]+"_to_direct", r)
					line += fmt.Sprintf(" %.3f,", r)
				}
			}
			if _, ok := got["haproxy"]; ok {
				r := got["listener"][0] / got["haproxy"][0]
				res.add(mode.name+"_tps_ratio_listener_to_haproxy", r)
				line += fmt.Sprintf(" listener/haproxy %.3f", r)
			}
			fmt.Println(line)
		}
	}
	for _, m := range []string{"select", "tpcb"} {
		for _, t := range targets {
			keys = append(keys, m+"_"+t[0]+"_tps")
		}
		for _, t := range targets[1:] {
			keys = append(keys, m+"_tps_ratio_"+t[0]+"_to_direct")
		}
		if len(targets) > 2 && targets[2][0] == "haproxy" {
			keys = append(keys, m+"_tps_ratio_listener_to_haproxy")
		}
	}
	fmt.Print(res.finish(keys...))
	return res, nil
}
