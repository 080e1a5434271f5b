package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fogdb/fog/internal/failpoint"
	"github.com/fogdb/fog/internal/lease"
)

// addSteps records, per step of the operation's timeline (properties.steps of its status),
// the milliseconds from the start of the operation.
func addSteps(res *result, prefix string, status map[string]any) {
	props, _ := status["properties"].(map[string]any)
	steps, _ := props["steps"].([]any)
	start, err := time.Parse(time.RFC3339Nano, fmt.Sprint(status["startTime"]))
	if err != nil {
		return
	}
	for _, s := range steps {
		m, _ := s.(map[string]any)
		at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["at"]))
		if err != nil {
			continue
		}
		res.add(fmt.Sprintf("%s_step_%s_ms", prefix, m["step"]), ms(at.Sub(start)))
	}
	if end, err := time.Parse(time.RFC3339Nano, fmt.Sprint(status["endTime"])); err == nil {
		res.add(prefix+"_step_end_ms", ms(end.Sub(start)))
	}
}

// stepKeys lists the step keys of res with prefix, ordered by their median.
func stepKeys(res *result, prefix string) []string {
	var keys []string
	for k := range res.Samples {
		if len(k) > len(prefix)+6 && k[:len(prefix)+6] == prefix+"_step_" {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		return summarize(res.Samples[keys[i]]).Median < summarize(res.Samples[keys[j]]).Median
	})
	return keys
}

// silentScenario forces a failover while the old primary's agent does not answer (its lease
// renewals and reconciles are stalled; its PostgreSQL keeps running): Fog must wait until the
// lease has surely expired before it promotes, so the call-to-first-commit time is bounded by
// the lease TTL plus the promotion.
func silentScenario(ctx context.Context, o options) (*result, error) {
	res := newResult(fmt.Sprintf("forced failover, old primary's agent silent (lease TTL %s)", lease.DefaultTTL))
	var stalled atomic.Value
	stalled.Store("")
	release := make(chan struct{})
	failpoint.SetHook(func(name string) {
		for r := stalled.Load().(string); r != "" && name == failpoint.AgentStall(r); r = stalled.Load().(string) {
			select {
			case <-ctx.Done():
				return
			case <-release:
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	defer failpoint.SetHook(nil)
	f, g, err := setupFogGroup(ctx, "127.0.206.1")
	if err != nil {
		return nil, err
	}
	defer f.stop()
	hosts := map[string]string{"rg-p": g.prim.host, "rg-s": g.sec.host}
	for run := range o.runs {
		w, stop := startWriter(ctx, f.ca, func() string { return g.rw }, 5*time.Millisecond, int64(run)*1e7)
		time.Sleep(300 * time.Millisecond)
		stalled.Store(g.primSide[1])
		time.Sleep(50 * time.Millisecond) // the agent is now between renewals
		sec := g.secondarySide()
		t0 := time.Now()
		r, err := f.call(ctx, "POST", groupPath(sec[0], sec[1], g.name)+"/forceFailoverAllowDataLoss", nil)
		if err != nil {
			stop()
			return nil, err
		}
		// API reads while the agent is silent: they answer from the store.
		gctx, gstop := context.WithCancel(ctx)
		gdone := make(chan []float64, 1)
		go func() {
			var lat []float64
			for gctx.Err() == nil {
				s := time.Now()
				if _, err := f.getJSON(gctx, groupPath(g.primSide[0], g.primSide[1], g.name)); err == nil {
					lat = append(lat, ms(time.Since(s)))
				}
			}
			gdone <- lat
		}()
		first, ferr := w.waitFirstAfter(ctx, t0, hosts[sec[0]], 60*time.Second)
		gstop()
		for _, l := range <-gdone {
			res.add("get_group_while_agent_silent_ms", l)
		}
		stalled.Store("")
		if _, err := g.endForced(ctx, res, r, sec, stop, ferr); err != nil {
			return nil, err
		}
		res.add("fog_first_commit_ms", ms(first))
		res.add("bound_ttl_plus_1s_ms", ms(lease.DefaultTTL+time.Second))
		fmt.Printf("  silent-agent run %d: first commit %s after the call\n", run+1, first.Round(time.Millisecond))
	}
	fmt.Print(res.finish(append([]string{"fog_first_commit_ms", "bound_ttl_plus_1s_ms", "get_group_while_agent_silent_ms"}, stepKeys(res, "fog")...)...))
	return res, nil
}

// settleScenario kills the fog process (kill -9, as a failpoint does it, right after the
// promotion step was recorded) in the middle of a planned failover, starts it again, and
// measures from the kill to the operation's end and to the group replicating again.
func settleScenario(ctx context.Context, o options) (*result, error) {
	res := newResult("settle after kill -9 of fog in the middle of a planned failover")
	bin, err := buildFog(ctx)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(filepath.Dir(bin))
	dir, err := os.MkdirTemp("", "fog-bench-settle-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if os.Getenv("FOG_BENCH_KEEP") == "" {
			os.RemoveAll(dir)
		}
	}()
	const base = "127.0.208.1"
	p, err := startFogProcess(ctx, bin, dir, base)
	if err != nil {
		return nil, err
	}
	defer func() { p.stop() }()
	f := p.fog
	g, err := f.createPair(ctx, "settle")
	if err == nil {
		err = g.create(ctx)
	}
	if err != nil {
		return nil, err
	}
	for run := range o.runs {
		p.stop()
		if p, err = startFogProcess(ctx, bin, dir, base, failpoint.Env+"="+failpoint.PlannedPromoting+"=kill"); err != nil {
			return nil, err
		}
		g.f = p.fog
		if err := g.waitCatchUp(ctx); err != nil {
			return nil, err
		}
		sec := g.secondarySide()
		// Right after a start the agents are still bringing the instances up; a failover
		// refused for that (ManagedInstanceGeoFailoverCannotBeExecuted) is asked again.
		var r response
		var opPath string
		for attempt := 0; ; attempt++ {
			if r, err = p.fog.call(ctx, "POST", groupPath(sec[0], sec[1], g.name)+"/failover", nil); err != nil {
				return nil, err
			}
			opPath = r.header.Get("Azure-AsyncOperation")
			if p.waitExit(5*time.Second) == nil || attempt == 5 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err := p.waitExit(30 * time.Second); err != nil {
			st, _ := p.fog.getJSON(ctx, pathOf(opPath))
			return nil, fmt.Errorf("%w (operation: %v; log in %s)", err, st, dir)
		}
		killed := time.Now()
		if p, err = startFogProcess(ctx, bin, dir, base); err != nil {
			return nil, err
		}
		started := time.Since(killed)
		g.f = p.fog
		r.header.Set("Azure-AsyncOperation", p.fog.client.APIURL+pathOf(opPath))
		if _, err := p.fog.wait(ctx, r); err != nil {
			return nil, err
		}
		opDone := time.Since(killed)
		g.primSide = sec
		if err := g.waitCatchUp(ctx); err != nil {
			return nil, err
		}
		res.add("restart_ms", ms(started))
		res.add("kill_to_operation_succeeded_ms", ms(opDone))
		res.add("kill_to_catch_up_ms", ms(time.Since(killed)))
		fmt.Printf("  settle run %d: fog up again %s after the kill, operation done %s, CATCH_UP %s\n", run+1,
			started.Round(time.Millisecond), opDone.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	}
	fmt.Print(res.finish("restart_ms", "kill_to_operation_succeeded_ms", "kill_to_catch_up_ms"))
	return res, nil
}

func pathOf(u string) string {
	for i := len("https://"); i < len(u); i++ {
		if u[i] == '/' {
			return u[i:]
		}
	}
	return u
}

func buildFog(ctx context.Context) (string, error) {
	dir, err := os.MkdirTemp("", "fog-bench-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "fog")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/fog").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build fog: %v: %s", err, out)
	}
	return bin, nil
}

// fogProcess is `fog up` as a process of its own.
type fogProcess struct {
	cmd  *exec.Cmd
	fog  *fog
	done chan struct{}
}

func startFogProcess(ctx context.Context, bin, dir, base string, env ...string) (*fogProcess, error) {
	_ = os.Remove(filepath.Join(dir, "client.json"))
	logf, err := os.OpenFile(filepath.Join(dir, "fog.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "up", "--data-dir", dir, "--listen", "127.0.0.1:0", "--address-base", base)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &fogProcess{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if f, err := fogFromDir(dir); err == nil {
			if _, err := f.call(ctx, "GET", "/subscriptions/"+f.client.Subscription+"/providers/Microsoft.Sql/managedInstances", nil); err == nil {
				p.fog = f
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("fog up did not start; see %s/fog.log", dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *fogProcess) waitExit(limit time.Duration) error {
	select {
	case <-p.done:
		return nil
	case <-time.After(limit):
		return fmt.Errorf("fog did not exit at the failpoint within %s", limit)
	}
}

func (p *fogProcess) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
}

// loadedScenario is the planned failover with pgbench TPC-B-like load (4 clients through the
// read-write listener) beside the 5 ms writer, against the by-hand switchover under the same
// load on the raw pair.
func loadedScenario(ctx context.Context, o options) (*result, error) {
	res := newResult("planned failover under pgbench TPC-B load (4 clients) beside the 5 ms writer")
	f, g, raw, err := setupBoth(ctx, "127.0.210.1", "127.0.211.1,127.0.211.2")
	if err != nil {
		return nil, err
	}
	defer f.stop()
	defer raw.close()
	if _, err := pgbench(ctx, g.rw, "app", "-i", "-s", "5", "-q"); err != nil {
		return nil, err
	}
	if _, err := pgbench(ctx, raw.addr(raw.primary), "app", "-i", "-s", "5", "-q"); err != nil {
		return nil, err
	}
	load := func(addr func() string) func() {
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for lctx.Err() == nil {
				// pgbench gives up on a cut connection; run it again at once.
				_, _ = pgbench(lctx, addr(), "app", "-c", "4", "-j", "2", "-T", "30", "-n")
			}
		}()
		return func() { cancel(); <-done }
	}
	for run := range o.runs {
		stopLoad := load(func() string { return g.rw })
		time.Sleep(700 * time.Millisecond)
		fogGap, _, lost, err := g.measuredFailover(ctx, res, run, stopLoad)
		if err != nil {
			stopLoad()
			return nil, err
		}
		res.add("fog_unavailable_ms", ms(fogGap))
		res.add("fog_lost_commits", float64(lost))

		var target atomic.Value
		target.Store(raw.addr(raw.primary))
		stopRawLoad := load(func() string { return target.Load().(string) })
		time.Sleep(700 * time.Millisecond)
		rawGap, _, rawLost, err := raw.measuredSwitchover(ctx, run, func() { target.Store(raw.addr(raw.primary)) })
		stopRawLoad()
		if err != nil {
			return nil, err
		}
		res.add("raw_unavailable_ms", ms(rawGap))
		res.add("raw_lost_commits", float64(rawLost))
		res.add("ratio_unavailable_fog_to_raw", ms(fogGap)/ms(rawGap))
		fmt.Printf("  loaded planned run %d: fog unavailable %s (lost %d); raw %s (lost %d)\n", run+1,
			fogGap.Round(time.Millisecond), lost, rawGap.Round(time.Millisecond), rawLost)
	}
	fmt.Print(res.finish(append([]string{"fog_unavailable_ms", "raw_unavailable_ms", "ratio_unavailable_fog_to_raw", "fog_lost_commits", "raw_lost_commits"}, stepKeys(res, "fog")...)...))
	return res, nil
}
