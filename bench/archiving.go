package main

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/server"
)

// archivingScenario: pgbench TPC-B-like load on an instance that archives its WAL into the
// region's repository (Fog's default) against the same load on an instance of a Fog whose
// agents run no pgBackRest (archive_mode off), alternately; and, under the load, the archive
// lag: for each 100 ms sample of the instance's WAL position, the time until the WAL segment
// holding it is in the repository.
func archivingScenario(ctx context.Context, o options) (*result, error) {
	res := newResult(fmt.Sprintf("pgbench -c 8 -j 2 -T %d (TPC-B-like, scale 10) with WAL archived into the repository against archiving off; archive lag under that load", o.archiveSecs))
	on, err := startFog(ctx, "127.0.210.1")
	if err != nil {
		return nil, err
	}
	defer on.stop()
	off, err := startFog(ctx, "127.0.211.1", func(c *server.Config) {
		c.Agent.Backup.Off, c.Agent.Backup.OffReason = true, "archiving is off for the benchmark's baseline"
	})
	if err != nil {
		return nil, err
	}
	defer off.stop()
	storage := 256
	var insts [2]instance
	for i, f := range []*fog{on, off} {
		name := [2]string{"arch-on", "arch-off"}[i]
		if insts[i], err = f.createInstance(ctx, "rg-arch", name, "eastus", resource.InstanceProperties{StorageSizeInGB: &storage}); err != nil {
			return nil, err
		}
		if err := f.do(ctx, "PUT", miPath("rg-arch", name)+"/databases/bench", map[string]any{}); err != nil {
			return nil, err
		}
		if _, err := pgbench(ctx, addr(insts[i]), "bench", "-i", "-q", "-s", "10"); err != nil {
			return nil, err
		}
	}
	// The scheduler's first backup of the archiving instance is taken once it is Ready; the
	// runs start after it, so that no backup runs beside them.
	for deadline := time.Now().Add(5 * time.Minute); ; {
		m, err := on.getJSON(ctx, miPath("rg-arch", "arch-on")+"/databases/bench")
		if err != nil {
			return nil, err
		}
		if p, _ := m["properties"].(map[string]any); p != nil && p["lastBackupTime"] != nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no first backup of arch-on within 5 minutes")
		}
		time.Sleep(time.Second)
	}
	if err := waitNoVerify(ctx, 5*time.Minute); err != nil {
		return nil, err
	}
	archive, err := archiveDir(on.dir)
	if err != nil {
		return nil, err
	}
	// Each run: both instances, the order swapped every run, each after a CHECKPOINT (the
	// load starts with the same full-page writes) and, archiving on, after the archiver has
	// caught up with what the previous runs left.
	for run := range o.runs {
		var tpsOn, tpsOff float64
		var lags []float64
		var segs int
		for k := range 2 {
			i := (run + k) % 2
			f, in := [2]*fog{on, off}[i], insts[i]
			if err := checkpointAndSync(ctx, f, addr(in)); err != nil {
				return nil, err
			}
			if i == 0 {
				if err := waitArchiverIdle(ctx, f, addr(in), 2*time.Minute); err != nil {
					return nil, err
				}
				l, n, tps, err := archiveLagRun(ctx, f, addr(in), archive, o.archiveSecs)
				if err != nil {
					return nil, err
				}
				lags, segs, tpsOn = l, n, tps
				continue
			}
			out, err := pgbench(ctx, addr(in), "bench", "-n", "-c", "8", "-j", "2", "-T", strconv.Itoa(o.archiveSecs))
			if err != nil {
				return nil, err
			}
			if tpsOff, _, err = parsePgbench(out); err != nil {
				return nil, err
			}
		}
		res.add("tps_archiving_on", tpsOn)
		res.add("tps_archiving_off", tpsOff)
		res.add("ratio_on_to_off", tpsOn/tpsOff)
		res.Samples["archive_lag_s"] = append(res.Samples["archive_lag_s"], lags...)
		res.add("segments_per_run", float64(segs))
		s := summarize(lags)
		fmt.Printf("  archiving run %d: on %.0f tps, off %.0f tps, ratio %.3f; archive lag p50 %.2f s, p99 %.2f s, max %.2f s (%d samples, %d segments)\n",
			run+1, tpsOn, tpsOff, tpsOn/tpsOff, s.Median, s.P99, s.Max, len(lags), segs)
	}
	out := res.finish("tps_archiving_on", "tps_archiving_off", "ratio_on_to_off", "archive_lag_s", "segments_per_run")
	fmt.Print(out)
	s := res.Summary["archive_lag_s"]
	fmt.Printf("  archive lag, all samples: p50 %.2f s, p99 %.2f s, max %.2f s\n", s.Median, s.P99, s.Max)
	return res, nil
}

// archiveDir finds the repository's WAL directory of the deployment's one archiving stanza
// (<repository>/archive/<stanza>).
func archiveDir(dir string) (string, error) {
	var found []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "archive.info" && filepath.Base(filepath.Dir(filepath.Dir(p))) == "archive" {
			found = append(found, filepath.Dir(p))
		}
		return nil
	})
	if len(found) != 1 {
		return "", fmt.Errorf("the repository's archive directory under %s: %v", dir, found)
	}
	return found[0], nil
}

// archivedSegments lists the WAL segments in archive (a stanza's archive directory) by name.
func archivedSegments(archive string, into map[string]time.Time, now time.Time) {
	_ = filepath.WalkDir(archive, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		n := d.Name()
		// 000000010000000000000012-<sha1>.zst; .history and .backup files are not segments.
		if len(n) > 25 && n[24] == '-' && !strings.Contains(n, ".backup") {
			if _, ok := into[n[:24]]; !ok {
				into[n[:24]] = now
			}
		}
		return nil
	})
}

// waitArchiverIdle waits until the archiver has archived every segment before the current one.
func waitArchiverIdle(ctx context.Context, f *fog, address string, limit time.Duration) error {
	c, err := connect(ctx, f.ca, address, "postgres")
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var idle bool
		// Segment names of one timeline sort as their positions.
		err := c.QueryRow(ctx, `SELECT coalesce(last_archived_wal, '') >= pg_walfile_name(pg_current_wal_lsn() - 16777216)
			FROM pg_stat_archiver`).Scan(&idle)
		if err != nil {
			return err
		}
		if idle {
			return nil
		}
	}
	return fmt.Errorf("the archiver of %s did not catch up within %s", address, limit)
}

// archiveLagRun runs pgbench for seconds while sampling (time, current WAL segment) every
// 100 ms and listing the repository's segments every 100 ms. Each sample's lag is the time
// from the sample to the first listing that shows its segment: a commit at that moment is in
// that segment, so this is the time from a commit to the repository holding it. Samples in
// the segment still open when the load ends are left out: no more WAL fills it, and it waits
// for archive_timeout (60 s), which is not the lag under load.
func archiveLagRun(ctx context.Context, f *fog, address, archive string, seconds int) (lags []float64, segments int, tps float64, err error) {
	c, err := connect(ctx, f.ca, address, "postgres")
	if err != nil {
		return nil, 0, 0, err
	}
	defer c.Close(context.Background())
	type sample struct {
		at  time.Time
		seg string
	}
	var samples []sample
	seen := map[string]time.Time{}
	archivedSegments(archive, seen, time.Now())
	var mu sync.Mutex
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
			at := time.Now()
			var seg string
			if err := c.QueryRow(sctx, "SELECT pg_walfile_name(pg_current_wal_lsn())").Scan(&seg); err == nil {
				samples = append(samples, sample{at, seg})
			}
		}
	})
	watch := func(wctx context.Context) {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
			mu.Lock()
			archivedSegments(archive, seen, time.Now())
			mu.Unlock()
		}
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	var ww sync.WaitGroup
	ww.Go(func() { watch(wctx) })
	out, err := pgbench(ctx, address, "bench", "-n", "-c", "8", "-j", "2", "-T", strconv.Itoa(seconds))
	cancel()
	wg.Wait()
	if err != nil {
		return nil, 0, 0, err
	}
	if tps, _, err = parsePgbench(out); err != nil {
		return nil, 0, 0, err
	}
	if len(samples) == 0 {
		return nil, 0, 0, fmt.Errorf("no WAL position sampled")
	}
	// Preexisting segments (archived before the run) cannot be a sample's: each sample's
	// segment was being written during the run.
	open := samples[len(samples)-1].seg
	want := map[string]bool{}
	for _, s := range samples {
		if s.seg < open {
			want[s.seg] = true
		}
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		missing := 0
		for s := range want {
			if _, ok := seen[s]; !ok {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, 0, 0, fmt.Errorf("%d segments of the run not in the repository 2 minutes after it", missing)
		}
	}
	wcancel()
	ww.Wait()
	for _, s := range samples {
		if s.seg < open {
			lags = append(lags, seen[s.seg].Sub(s.at).Seconds())
		}
	}
	return lags, len(want), tps, nil
}
