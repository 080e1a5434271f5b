// Command bench measures what people choose a failover system on: how long writes stop in a
// planned failover, how fast a forced failover serves again and what it loses, replication
// lag under load, the gateway's cost, seeding speed and the control plane's latency. Every
// Fog figure comes with the raw PostgreSQL mechanism measured in the same run.
//
//	go run ./bench all              # every scenario, 5 runs each
//	go run ./bench planned forced   # some scenarios
//	go run ./bench -runs 3 lag
//
// Scenarios: planned, planneddns (planned with the writer on the DNS name in direct mode), loaded (planned under pgbench load), forced, silent (forced failover while the old primary's agent does not
// answer), settle (kill -9 of fog in the middle of a planned failover), lag, gateway, seeding, seedsource (a secondary seeded from its region's repository against pg_basebackup),
// controlplane, distributed (servers and agents as separate processes on etcd: planned and
// forced failovers, and kill -9 of the leader server), copysync (what fog.wait_for_copy_sync()
// adds to a commit), backup (a full backup Fog takes against pgbackrest backup by hand),
// archiving (pgbench with WAL archiving on and off, and the archive lag under it), pitr (a
// point-in-time restore through the API against the same steps by hand). Each prints min / median /
// p95 / max and the raw samples go to a JSON file (-out, default bench/results/<time>.json).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/fogdb/fog/internal/postgres"
)

// options are the knobs of a run.
type options struct {
	runs        int
	lagSeconds  int
	pgbenchSecs int
	archiveSecs int
	seedScale   int
	// seedSourceScale is the pgbench scale of the seedsource scenario.
	seedSourceScale int
	cpSeconds       float64
	cpClients       int
	pairs           int
	pairSecs        int
	out             string
}

// result is one scenario's output: named samples and the summaries printed.
type result struct {
	Scenario string               `json:"scenario"`
	Samples  map[string][]float64 `json:"samples"`
	Summary  map[string]summary   `json:"summary"`
	Notes    []string             `json:"notes,omitempty"`
}

func newResult(name string) *result {
	return &result{Scenario: name, Samples: map[string][]float64{}, Summary: map[string]summary{}}
}

func (r *result) add(key string, v float64) { r.Samples[key] = append(r.Samples[key], v) }

func (r *result) finish(keys ...string) string {
	rows := [][2]string{}
	for _, k := range keys {
		s := summarize(r.Samples[k])
		r.Summary[k] = s
		rows = append(rows, [2]string{k, s.String()})
	}
	out := table(r.Scenario, rows)
	for _, n := range r.Notes {
		out += "  " + n + "\n"
	}
	return out
}

type scenario func(ctx context.Context, o options) (*result, error)

var scenarios = map[string]scenario{
	"planned":      plannedScenario,
	"forced":       forcedScenario,
	"lag":          lagScenario,
	"gateway":      gatewayScenario,
	"gatewaypairs": gatewayPairsScenario,
	"planneddns":   plannedDNSScenario,
	"seeding":      seedingScenario,
	"seedsource":   seedSourceScenario,
	"controlplane": controlPlaneScenario,
	"silent":       silentScenario,
	"settle":       settleScenario,
	"loaded":       loadedScenario,
	"distributed":  distributedScenario,
	"copysync":     copySyncScenario,
	"backup":       backupScenario,
	"archiving":    archivingScenario,
	"pitr":         pitrScenario,
}

var order = []string{"planned", "planneddns", "loaded", "forced", "silent", "settle", "lag", "gateway", "gatewaypairs", "seeding", "seedsource", "controlplane", "distributed", "copysync", "backup", "archiving", "pitr"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Fog makes an OS user per instance when root; the benchmark's Fogs tag theirs, and only
	// those are removed when it ends.
	tag := fmt.Sprintf("bench-%d-%d", os.Getpid(), time.Now().UnixNano())
	os.Setenv(postgres.UserTagEnv, tag)
	err := run(ctx, os.Args[1:])
	postgres.RemoveTaggedUsers(tag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o options
	fs.IntVar(&o.runs, "runs", 5, "runs per scenario")
	fs.IntVar(&o.lagSeconds, "lag-seconds", 30, "pgbench duration of one lag run")
	fs.IntVar(&o.archiveSecs, "archive-seconds", 60, "pgbench duration of one archiving run (each mode)")
	fs.IntVar(&o.pgbenchSecs, "pgbench-seconds", 10, "pgbench duration of one gateway run")
	fs.IntVar(&o.pairs, "pairs", 20, "pairs of pgbench runs per mode in gatewaypairs")
	fs.IntVar(&o.pairSecs, "pair-seconds", 3, "pgbench duration of one run of a gatewaypairs pair")
	fs.IntVar(&o.seedScale, "seed-scale", 70, "pgbench scale of the seeding database (70 is about 1 GB)")
	fs.IntVar(&o.seedSourceScale, "seed-source-scale", 10, "pgbench scale of the seedsource database (10 is about 150 MB, 340 about 5 GB)")
	fs.Float64Var(&o.cpSeconds, "cp-seconds", 5, "duration of one control-plane run, per request kind")
	fs.IntVar(&o.cpClients, "cp-clients", 50, "concurrent API clients")
	fs.StringVar(&o.out, "out", "", "JSON file for the raw results (default bench/results/<time>.json)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (Fog runs in this process) to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuprofile != "" {
		pf, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	names := fs.Args()
	if len(names) == 0 || (len(names) == 1 && names[0] == "all") {
		names = order
	}
	for _, n := range names {
		if scenarios[n] == nil {
			return fmt.Errorf("unknown scenario %q: use all or %s", n, strings.Join(order, ", "))
		}
	}
	if o.out == "" {
		o.out = filepath.Join("bench", "results", time.Now().UTC().Format("20060102T150405Z")+".json")
	}
	host, _ := os.Hostname()
	fmt.Printf("Fog benchmarks: %d runs each; %s/%s, %d CPUs, host %s\n", o.runs, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), host)
	var all []*result
	for _, n := range names {
		start := time.Now()
		r, err := scenarios[n](ctx, o)
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		all = append(all, r)
		fmt.Printf("  (%s took %s)\n", n, time.Since(start).Round(time.Second))
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(map[string]any{"time": time.Now().UTC(), "runs": o.runs, "cpus": runtime.NumCPU(), "results": all}, "", "  ")
	if err := os.WriteFile(o.out, b, 0o644); err != nil {
		return err
	}
	fmt.Println("raw results:", o.out)
	return nil
}
