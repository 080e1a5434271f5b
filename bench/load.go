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
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fogdb/fog/internal/fogdns"
	"github.com/fogdb/fog/internal/gateway"
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
func startHAProxy(ctx context.Context, listen, backend string) (func(), int, error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		return nil, 0, errors.New("haproxy is not installed")
	}
	dir, err := os.MkdirTemp("", "fog-bench-haproxy-")
	if err != nil {
		return nil, 0, err
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
		return nil, 0, err
	}
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		os.RemoveAll(dir)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", listen, 200*time.Millisecond); err == nil {
			c.Close()
			return stop, cmd.Process.Pid, nil
		}
	}
	stop()
	return nil, 0, errors.New("haproxy did not listen on " + listen)
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

// setupPgbench starts Fog with a group on addresses from base and fills the database bench
// with pgbench's tables (scale 10) through the read-write listener.
func setupPgbench(ctx context.Context, base string) (*fog, *group, error) {
	f, g, err := setupFogGroup(ctx, base)
	if err != nil {
		return nil, nil, err
	}
	if err := execSQL(ctx, f, g.rw, "postgres", "CREATE DATABASE bench"); err == nil {
		_, err = pgbench(ctx, g.rw, "bench", "-i", "-q", "-s", "10")
	}
	if err != nil {
		f.stop()
		return nil, nil, err
	}
	return f, g, nil
}

func gatewayScenario(ctx context.Context, o options) (*result, error) {
	res := newResult(fmt.Sprintf("gateway overhead: pgbench -c 8 -j 2 -T %d directly, through Fog's read-write listener (relay), through HAProxy (TCP mode) and through the read-write DNS name in direct mode; select-only on the secondary directly, through the read-only listener and through HAProxy", o.pgbenchSecs))
	f, g, err := setupPgbench(ctx, "127.0.206.1")
	if err != nil {
		return nil, err
	}
	defer f.stop()
	// listener_loop is the same listener with kernel splicing off, its loop moving the
	// bytes: the two alternate in one run, which is the only comparison this machine's
	// noise allows.
	targets := [][2]string{{"direct", addr(g.prim)}, {"listener", g.rw}}
	if ok, why := gateway.KernelSplice(); ok {
		targets = append(targets, [2]string{"listener_loop", g.rw})
	} else {
		fmt.Printf("  the listener relays in user space (kernel splicing: %s); run as root for the spliced rows\n", why)
	}
	defer gateway.SetKernelSplice(true)
	var relayed []string // the targets through Fog's relay
	for _, t := range targets {
		if strings.HasPrefix(t[0], "listener") {
			relayed = append(relayed, t[0])
		}
	}
	// HAProxy in TCP mode in front of the primary: what Patroni's users put there.
	hp, haproxyPID, err := startHAProxy(ctx, "127.0.206.250:5432", addr(g.prim))
	if err != nil {
		haproxyPID = -1
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
		setVariant(t[0])
		if _, err := pgbench(ctx, t[1], "bench", "-n", "-c", "8", "-j", "2", "-T", "3", "-S"); err != nil {
			return nil, err
		}
	}
	// The read-only listener: select-only on the secondary, directly, through the listener and
	// through a second HAProxy in front of the secondary.
	roTargets := [][2]string{{"direct", addr(g.sec)}, {"listener", g.ro}}
	if hp, _, err := startHAProxy(ctx, "127.0.206.251:5432", addr(g.sec)); err == nil {
		defer hp()
		roTargets = append(roTargets, [2]string{"haproxy", "127.0.206.251:5432"})
	}
	secs := strconv.Itoa(o.pgbenchSecs)
	var keys []string
	for run := range o.runs {
		order := slices.Clone(roTargets)
		if run%2 == 1 {
			slices.Reverse(order)
		}
		ro := map[string]float64{}
		for _, t := range order {
			out, err := pgbench(ctx, t[1], "bench", "-n", "-c", "8", "-j", "2", "-T", secs, "-S")
			if err != nil {
				return nil, err
			}
			tps, _, err := parsePgbench(out)
			if err != nil {
				return nil, err
			}
			ro[t[0]] = tps
			res.add("readonly_"+t[0]+"_tps", tps)
		}
		line := fmt.Sprintf("  gateway run %d read-only select: direct %.0f tps, listener %.0f tps (%.3f)", run+1, ro["direct"], ro["listener"], ro["listener"]/ro["direct"])
		res.add("readonly_tps_ratio_listener_to_direct", ro["listener"]/ro["direct"])
		if ro["haproxy"] > 0 {
			res.add("readonly_tps_ratio_listener_to_haproxy", ro["listener"]/ro["haproxy"])
			line += fmt.Sprintf(", haproxy %.0f tps, listener/haproxy %.3f", ro["haproxy"], ro["listener"]/ro["haproxy"])
		}
		fmt.Println(line)

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
			// CPU the relay spends per transaction: Fog's relay runs in this process (its
			// background, measured during the direct run, is subtracted), HAProxy in its own.
			selfCPU, hpCPU, walls, txs := map[string]float64{}, map[string]float64{}, map[string]float64{}, map[string]float64{}
			// The whole machine's busy CPU per transaction, kernel included: the only figure
			// that sees a relay working in the kernel (softirq, kworker), as the splice does.
			machine := map[string]float64{}
			for _, t := range order {
				setVariant(t[0])
				self0, hp0, m0, wall0 := processCPU(0), processCPU(haproxyPID), machineCPU(), time.Now()
				out, err := pgbench(ctx, t[1], "bench", append([]string{"-n", "-c", "8", "-j", "2", "-T", secs}, mode.args...)...)
				if err != nil {
					return nil, err
				}
				tps, lat, err := parsePgbench(out)
				if err != nil {
					return nil, err
				}
				selfCPU[t[0]], hpCPU[t[0]] = processCPU(0)-self0, processCPU(haproxyPID)-hp0
				machine[t[0]] = machineCPU() - m0
				walls[t[0]], txs[t[0]] = time.Since(wall0).Seconds(), tps*float64(o.pgbenchSecs)
				got[t[0]] = [2]float64{tps, lat}
				res.add(mode.name+"_"+t[0]+"_tps", tps)
				res.add(mode.name+"_"+t[0]+"_latency_ms", lat)
			}
			line := fmt.Sprintf("  gateway run %d %s:", run+1, mode.name)
			for _, t := range targets {
				perTx := machine[t[0]] / txs[t[0]] * 1e6
				res.add(mode.name+"_machine_cpu_us_per_tx_"+t[0], perTx)
				line += fmt.Sprintf(" %s %.0f tps (%.2f ms, machine %.0f us/tx)", t[0], got[t[0]][0], got[t[0]][1], perTx)
				if t[0] != "direct" {
					r := got[t[0]][0] / got["direct"][0]
					res.add(mode.name+"_tps_ratio_"+t[0]+"_to_direct", r)
					line += fmt.Sprintf(" %.3f,", r)
				}
			}
			if _, ok := got["haproxy"]; ok {
				// This process's CPU without a relay (the direct run) is its background.
				background := selfCPU["direct"] / walls["direct"]
				hpRelay := hpCPU["haproxy"] / txs["haproxy"] * 1e6
				res.add(mode.name+"_relay_cpu_us_per_tx_haproxy", hpRelay)
				line += fmt.Sprintf("; haproxy CPU %.1f us/tx", hpRelay)
				for _, l := range relayed {
					r := got[l][0] / got["haproxy"][0]
					res.add(mode.name+"_tps_ratio_"+l+"_to_haproxy", r)
					relay := (selfCPU[l] - background*walls[l]) / txs[l] * 1e6
					res.add(mode.name+"_relay_cpu_us_per_tx_"+l, relay)
					res.add(mode.name+"_relay_cpu_ratio_"+l+"_to_haproxy", relay/hpRelay)
					line += fmt.Sprintf("; %s/haproxy %.3f, CPU %.1f us/tx", l, r, relay)
				}
			}
			fmt.Println(line)
		}
	}
	for _, t := range roTargets {
		keys = append(keys, "readonly_"+t[0]+"_tps")
	}
	keys = append(keys, "readonly_tps_ratio_listener_to_direct")
	if len(roTargets) == 3 {
		keys = append(keys, "readonly_tps_ratio_listener_to_haproxy")
	}
	for _, m := range []string{"select", "tpcb"} {
		for _, t := range targets {
			keys = append(keys, m+"_"+t[0]+"_tps")
		}
		for _, t := range targets[1:] {
			keys = append(keys, m+"_tps_ratio_"+t[0]+"_to_direct")
		}
		for _, t := range targets {
			keys = append(keys, m+"_machine_cpu_us_per_tx_"+t[0])
		}
		if slices.ContainsFunc(targets, func(t [2]string) bool { return t[0] == "haproxy" }) {
			keys = append(keys, m+"_relay_cpu_us_per_tx_haproxy")
			for _, l := range relayed {
				keys = append(keys, m+"_tps_ratio_"+l+"_to_haproxy", m+"_relay_cpu_us_per_tx_"+l, m+"_relay_cpu_ratio_"+l+"_to_haproxy")
			}
		}
	}
	fmt.Print(res.finish(keys...))
	return res, nil
}

// setVariant sets the relay up for target t: listener_loop without kernel splicing.
func setVariant(t string) { gateway.SetKernelSplice(t != "listener_loop") }

// machineCPU is the CPU seconds every core spent busy (user, nice, system, irq, softirq,
// steal), from /proc/stat.
func machineCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		x, _ := strconv.ParseFloat(v, 64)
		busy += x
	}
	return busy / 100 // USER_HZ
}

// processCPU is the CPU seconds (user and system) process pid has used; 0 is this process.
// A process that is gone, or pid -1, counts 0.
func processCPU(pid int) float64 {
	if pid == 0 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0
		}
		return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	}
	if pid < 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (in parentheses): utime and stime are the 12th and 13th.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // clock ticks: USER_HZ is 100 on Linux
}
