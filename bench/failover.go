package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fogdb/fog/internal/fogdns"
)

// writer commits every interval through whatever address target returns, reconnecting on
// any error, and records when each acknowledged commit returned.
type writer struct {
	mu    sync.Mutex
	okAt  []time.Time
	onto  []string // the server address each commit ran on
	acked []int64
	errs  int
}

func startWriter(ctx context.Context, ca *x509.CertPool, target func() string, every time.Duration, idBase int64) (*writer, func()) {
	w := &writer{}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conn *pgx.Conn
		id := idBase
		for ctx.Err() == nil {
			if conn == nil {
				c, err := connect(ctx, ca, target(), "app")
				if err != nil {
					w.mu.Lock()
					w.errs++
					w.mu.Unlock()
					time.Sleep(time.Millisecond)
					continue
				}
				conn = c
			}
			id++
			var server string
			if err := conn.QueryRow(ctx, "INSERT INTO w (id) VALUES ($1) RETURNING host(inet_server_addr())", id).Scan(&server); err != nil {
				w.mu.Lock()
				w.errs++
				w.mu.Unlock()
				conn.Close(context.Background())
				conn = nil
				continue
			}
			w.mu.Lock()
			w.okAt = append(w.okAt, time.Now())
			w.onto = append(w.onto, server)
			w.acked = append(w.acked, id)
			w.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	return w, func() { cancel(); <-done }
}

// gap is the longest time without a successful commit after from: the write-unavailability
// window as a client committing every few milliseconds sees it.
func (w *writer) gap(from time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var longest time.Duration
	prev := from
	for _, t := range w.okAt {
		if t.Before(from) {
			prev = t
			continue
		}
		if d := t.Sub(prev); d > longest {
			longest = d
		}
		prev = t
	}
	return longest
}

// firstAfter is the first successful commit after t on server. (After a kill -9 of a
// postmaster its backends live on for a moment and may still commit: those do not count.)
func (w *writer) firstAfter(t time.Time, server string) (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, x := range w.okAt {
		if x.After(t) && w.onto[i] == server {
			return x.Sub(t), true
		}
	}
	return 0, false
}

func (w *writer) waitFirstAfter(ctx context.Context, t time.Time, server string, limit time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if d, ok := w.firstAfter(t, server); ok {
			return d, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return 0, errors.New("no commit succeeded")
}

// lost counts acknowledged ids missing from the table at addr.
func (w *writer) lost(ctx context.Context, ca *x509.CertPool, addr string) (int, error) {
	c, err := connect(ctx, ca, addr, "app")
	if err != nil {
		return 0, err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT id FROM w")
	if err != nil {
		return 0, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, err
	}
	have := map[int64]bool{}
	for _, id := range ids {
		have[id] = true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, id := range w.acked {
		if !have[id] {
			n++
		}
	}
	return n, nil
}

func createTable(ctx context.Context, ca *x509.CertPool, addr string) error {
	c, err := connect(ctx, ca, addr, "app")
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "CREATE TABLE IF NOT EXISTS w (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
	return err
}

// setupFogGroup starts a Fog with a replicating group and the writer's table.
func setupFogGroup(ctx context.Context, base string) (*fog, *group, error) {
	f, err := startFog(ctx, base)
	if err != nil {
		return nil, nil, err
	}
	g, err := f.setupGroup(ctx)
	if err != nil {
		f.stop()
		return nil, nil, err
	}
	return f, g, nil
}

// setupGroup makes the group "bench" on f, replicating, with the database app and the
// writer's table.
func (f *fog) setupGroup(ctx context.Context) (*group, error) {
	g, err := f.createPair(ctx, "bench")
	if err == nil {
		err = g.create(ctx)
	}
	if err == nil {
		err = f.do(ctx, "PUT", miPath("rg-p", "bench-p")+"/databases/app", map[string]any{})
	}
	if err == nil {
		err = createTable(ctx, f.ca, g.rw)
	}
	return g, err
}

// startWriter starts the writer on the raw pair's primary, with a warm-up, and returns the
// function that re-points it to the current primary (the perfect VIP of the baseline).
func (p *rawPair) startWriter(ctx context.Context, run int) (*writer, func(), func()) {
	var target atomic.Value
	target.Store(p.addr(p.primary))
	w, stop := startWriter(ctx, p.ca, func() string { return target.Load().(string) }, 5*time.Millisecond, int64(run)*1e7+5e6)
	time.Sleep(300 * time.Millisecond)
	return w, stop, func() { target.Store(p.addr(p.primary)) }
}

// setupBoth starts a Fog with a replicating group and a raw pair, each with the writer's table.
func setupBoth(ctx context.Context, fogBase, rawBase string) (*fog, *group, *rawPair, error) {
	f, g, err := setupFogGroup(ctx, fogBase)
	if err != nil {
		return nil, nil, nil, err
	}
	raw, err := newRawPair(ctx, rawBase)
	if err == nil {
		if err = createTable(ctx, raw.ca, raw.addr(0)); err != nil {
			raw.close()
		}
	}
	if err != nil {
		f.stop()
		return nil, nil, nil, err
	}
	return f, g, raw, nil
}

// plannedDNSScenario: planned failovers with the writer reaching the primary through the
// read-write name in direct mode (resolved by Fog's DNS server on every reconnection, no
// relay), alternating with the same writer through the listener.
func plannedDNSScenario(ctx context.Context, o options) (*result, error) {
	res := newResult("planned failover, writer every 5 ms through the read-write DNS name in direct mode (re-resolved on reconnect) and through the listener")
	f, g, err := setupFogGroup(ctx, "127.0.209.1")
	if err != nil {
		return nil, err
	}
	defer f.stop()
	if f.dns == "" || g.rwName == "" {
		return nil, errors.New("no DNS server")
	}
	_, port, _ := net.SplitHostPort(addr(g.prim))
	viaDNS := func() string {
		ips, err := fogdns.Resolve(ctx, f.dns, g.rwName)
		if err != nil || len(ips) == 0 {
			return "127.0.0.1:1" // refused: the writer tries again
		}
		return net.JoinHostPort(ips[0].String(), port)
	}
	for run := range o.runs {
		for _, via := range []string{"dns", "listener"} {
			target := func() string { return g.rw }
			if via == "dns" {
				target = viaDNS
			}
			gap, op, lost, err := g.measuredFailoverVia(ctx, res, run*2+map[string]int{"dns": 0, "listener": 1}[via], nil, target)
			if err != nil {
				return nil, err
			}
			res.add(via+"_unavailable_ms", ms(gap))
			res.add(via+"_lost_commits", float64(lost))
			fmt.Printf("  planned-dns run %d via %s: unavailable %s (op %s, lost %d)\n", run+1, via, gap.Round(time.Millisecond), op.Round(time.Millisecond), lost)
		}
	}
	fmt.Print(res.finish("dns_unavailable_ms", "listener_unavailable_ms", "dns_lost_commits", "listener_lost_commits"))
	return res, nil
}

func plannedScenario(ctx context.Context, o options) (*result, error) {
	res := newResult("planned failover (writer commits every 5 ms through the read-write listener)")
	f, g, raw, err := setupBoth(ctx, "127.0.200.1", "127.0.201.1,127.0.201.2")
	if err != nil {
		return nil, err
	}
	defer f.stop()
	defer raw.close()
	for run := range o.runs {
		// Fog.
		fogGap, opTime, lost, err := g.measuredFailover(ctx, res, run, nil)
		if err != nil {
			return nil, err
		}
		res.add("fog_unavailable_ms", ms(fogGap))
		res.add("fog_operation_ms", ms(opTime))
		res.add("fog_lost_commits", float64(lost))

		// Raw switchover.
		rawGap, rawOp, rawLost, err := raw.measuredSwitchover(ctx, run, nil)
		if err != nil {
			return nil, err
		}
		res.add("raw_unavailable_ms", ms(rawGap))
		res.add("raw_operation_ms", ms(rawOp))
		res.add("raw_lost_commits", float64(rawLost))
		res.add("ratio_unavailable_fog_to_raw", ms(fogGap)/ms(rawGap))
		fmt.Printf("  planned run %d: fog unavailable %s (op %s, lost %d); raw %s (lost %d)\n", run+1,
			fogGap.Round(time.Millisecond), opTime.Round(time.Millisecond), lost, rawGap.Round(time.Millisecond), rawLost)
	}
	fmt.Print(res.finish(append([]string{"fog_unavailable_ms", "raw_unavailable_ms", "ratio_unavailable_fog_to_raw", "fog_operation_ms", "raw_operation_ms", "fog_lost_commits", "raw_lost_commits"}, stepKeys(res, "fog")...)...))
	return res, nil
}

// endForced waits for a forced failover's operation r (towards side sec) to end, records its
// steps, lets the writer run a little on the new primary, stops it (stop is called once the
// operation has ended), and waits for the group to replicate again. ferr is the writer's
// error waiting for its first commit. It returns when the operation ended.
func (g *group) endForced(ctx context.Context, res *result, r response, sec [2]string, stop func(), ferr error) (time.Time, error) {
	st, err := g.f.wait(ctx, r)
	ended := time.Now()
	if err != nil {
		stop()
		return ended, fmt.Errorf("fog forced failover: %w", err)
	}
	addSteps(res, "fog", st)
	g.primSide = sec
	time.Sleep(200 * time.Millisecond)
	stop()
	if ferr != nil {
		return ended, ferr
	}
	return ended, g.waitCatchUp(ctx)
}

// measuredFailover runs a planned failover of the group while the 5 ms writer commits through
// the read-write listener, and returns the write gap, the operation's duration and the
// acknowledged commits lost; the step timeline goes into res. stopLoad, if set, is called once
// the operation has ended, before the group's rejoin is awaited.
func (g *group) measuredFailover(ctx context.Context, res *result, run int, stopLoad func()) (gap, op time.Duration, lost int, err error) {
	return g.measuredFailoverVia(ctx, res, run, stopLoad, func() string { return g.rw })
}

// measuredFailoverVia is measuredFailover with the writer connecting to target() on every
// (re)connection.
func (g *group) measuredFailoverVia(ctx context.Context, res *result, run int, stopLoad func(), target func() string) (gap, op time.Duration, lost int, err error) {
	f := g.f
	w, stop := startWriter(ctx, f.ca, target, 5*time.Millisecond, int64(run)*1e7)
	time.Sleep(300 * time.Millisecond)
	sec := g.secondarySide()
	t0 := time.Now()
	r, err := f.call(ctx, "POST", groupPath(sec[0], sec[1], g.name)+"/failover", nil)
	var st map[string]any
	if err == nil {
		st, err = f.wait(ctx, r)
	}
	op = time.Since(t0)
	if err != nil {
		stop()
		return 0, 0, 0, fmt.Errorf("fog failover: %w", err)
	}
	addSteps(res, "fog", st)
	g.primSide = sec
	time.Sleep(300 * time.Millisecond)
	stop()
	if stopLoad != nil {
		stopLoad()
	}
	if err := g.waitCatchUp(ctx); err != nil {
		return 0, 0, 0, err
	}
	if lost, err = w.lost(ctx, f.ca, g.rw); err != nil {
		return 0, 0, 0, err
	}
	return w.gap(t0), op, lost, nil
}

// measuredSwitchover switches the raw pair over by hand while the 5 ms writer runs (re-pointed
// the moment the new primary answers, a perfect VIP), calls repointed then, and returns the
// write gap, the switchover's duration and the acknowledged commits lost; the old primary
// follows the new one afterwards.
func (p *rawPair) measuredSwitchover(ctx context.Context, run int, repointed func()) (gap, op time.Duration, lost int, err error) {
	w, stop, repoint := p.startWriter(ctx, run)
	t1 := time.Now()
	if err := p.switchover(ctx); err != nil {
		stop()
		return 0, 0, 0, fmt.Errorf("raw switchover: %w", err)
	}
	repoint()
	if repointed != nil {
		repointed()
	}
	op = time.Since(t1)
	time.Sleep(300 * time.Millisecond)
	stop()
	if lost, err = w.lost(ctx, p.ca, p.addr(p.primary)); err != nil {
		return 0, 0, 0, err
	}
	if err := p.rejoin(ctx, false); err != nil {
		return 0, 0, 0, fmt.Errorf("raw rejoin: %w", err)
	}
	return w.gap(t1), op, lost, nil
}

// measuredPromote kills the raw pair's primary while the 5 ms writer runs, promotes the
// standby by hand (re-pointing the writer the moment it answers), and returns the time from
// the promotion call to the first commit on it and the acknowledged commits lost; the old
// primary then follows the new one.
func (p *rawPair) measuredPromote(ctx context.Context, run int) (first time.Duration, lost int, err error) {
	w, stop, repoint := p.startWriter(ctx, run)
	if err := p.killPrimary(); err != nil {
		stop()
		return 0, 0, err
	}
	t1 := time.Now()
	if err := p.promoteNow(ctx); err != nil {
		stop()
		return 0, 0, fmt.Errorf("raw promote: %w", err)
	}
	repoint()
	first, ferr := w.waitFirstAfter(ctx, t1, p.nodes[p.primary].Host, 30*time.Second)
	time.Sleep(200 * time.Millisecond)
	stop()
	if ferr != nil {
		return 0, 0, ferr
	}
	if lost, err = w.lost(ctx, p.ca, p.addr(p.primary)); err != nil {
		return 0, 0, err
	}
	if err := p.rejoin(ctx, true); err != nil {
		return 0, 0, fmt.Errorf("raw rejoin: %w", err)
	}
	return first, lost, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// postmasterFor finds the pid of the instance listening on host under dir.
func postmasterFor(dir, host string) (int, error) {
	files, _ := filepath.Glob(filepath.Join(dir, "regions", "*", "*", "pgdata", "postmaster.pid"))
	// A `fog agent` keeps its instances under its data directory's instances/.
	more, _ := filepath.Glob(filepath.Join(dir, "regions", "*", "instances", "*", "pgdata", "postmaster.pid"))
	files = append(files, more...)
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		if strings.Contains(string(b), "\n"+host+"\n") {
			return strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
		}
	}
	return 0, fmt.Errorf("no postmaster for %s", host)
}

func forcedScenario(ctx context.Context, o options) (*result, error) {
	res := newResult("forced failover after kill -9 of the primary (writer every 5 ms)")
	f, g, raw, err := setupBoth(ctx, "127.0.202.1", "127.0.203.1,127.0.203.2")
	if err != nil {
		return nil, err
	}
	defer f.stop()
	defer raw.close()
	hosts := map[string]string{"rg-p": g.prim.host, "rg-s": g.sec.host}
	for run := range o.runs {
		w, stop := startWriter(ctx, f.ca, func() string { return g.rw }, 5*time.Millisecond, int64(run)*1e7)
		time.Sleep(300 * time.Millisecond)
		pid, err := postmasterFor(f.dir, hosts[g.primSide[0]])
		if err != nil {
			stop()
			return nil, err
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			stop()
			return nil, err
		}
		sec := g.secondarySide()
		t0 := time.Now()
		r, err := f.call(ctx, "POST", groupPath(sec[0], sec[1], g.name)+"/forceFailoverAllowDataLoss", nil)
		if err != nil {
			stop()
			return nil, err
		}
		newHost := hosts[sec[0]]
		first, ferr := w.waitFirstAfter(ctx, t0, newHost, 30*time.Second)
		ended, err := g.endForced(ctx, res, r, sec, stop, ferr)
		if err != nil {
			return nil, err
		}
		opTime := ended.Sub(t0)
		lost, err := w.lost(ctx, f.ca, g.rw)
		if err != nil {
			return nil, err
		}
		res.add("fog_first_commit_ms", ms(first))
		res.add("fog_operation_ms", ms(opTime))
		res.add("fog_lost_commits", float64(lost))

		rfirst, rawLost, err := raw.measuredPromote(ctx, run)
		if err != nil {
			return nil, err
		}
		res.add("raw_first_commit_ms", ms(rfirst))
		res.add("raw_lost_commits", float64(rawLost))
		res.add("ratio_first_commit_fog_to_raw", ms(first)/ms(rfirst))
		fmt.Printf("  forced run %d: fog first commit %s after the call (op %s, lost %d); raw %s (lost %d)\n", run+1,
			first.Round(time.Millisecond), opTime.Round(time.Millisecond), lost, rfirst.Round(time.Millisecond), rawLost)
	}
	fmt.Print(res.finish(append([]string{"fog_first_commit_ms", "raw_first_commit_ms", "ratio_first_commit_fog_to_raw", "fog_operation_ms", "fog_lost_commits", "raw_lost_commits"}, stepKeys(res, "fog")...)...))
	return res, nil
}
