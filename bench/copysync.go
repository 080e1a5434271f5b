package main

import (
	"context"
	"fmt"
	"time"
)

// copySyncScenario measures what fog.wait_for_copy_sync() adds to a commit: one session on
// the primary (straight, not through a listener) commits a row, alternately alone and
// followed by the call, 1000 times per run.
func copySyncScenario(ctx context.Context, o options) (*result, error) {
	res := newResult("fog.wait_for_copy_sync(): a commit alone, and followed by the call (one session on the primary)")
	f, g, err := setupFogGroup(ctx, "127.0.222.1")
	if err != nil {
		return nil, err
	}
	defer f.stop()
	c, err := connect(ctx, f.ca, addr(g.prim), "app")
	if err != nil {
		return nil, err
	}
	defer c.Close(ctx)
	id := int64(0)
	for run := range o.runs {
		var plain, synced []float64
		for i := range 2000 {
			id++
			start := time.Now()
			if _, err := c.Exec(ctx, "INSERT INTO w (id) VALUES ($1)", id); err != nil {
				return nil, err
			}
			if i%2 == 1 {
				if _, err := c.Exec(ctx, "SELECT fog.wait_for_copy_sync()"); err != nil {
					return nil, err
				}
				synced = append(synced, ms(time.Since(start)))
			} else {
				plain = append(plain, ms(time.Since(start)))
			}
		}
		for _, v := range plain {
			res.add("commit_ms", v)
		}
		for _, v := range synced {
			res.add("commit_and_wait_ms", v)
		}
		p, s := summarize(plain), summarize(synced)
		res.add("added_p50_ms", s.Median-p.Median)
		res.add("added_p99_ms", s.P99-p.P99)
		fmt.Printf("  copysync run %d: commit p50 %.3f ms p99 %.3f ms; with the wait p50 %.3f ms p99 %.3f ms\n", run+1, p.Median, p.P99, s.Median, s.P99)
	}
	out := res.finish("commit_ms", "commit_and_wait_ms", "added_p50_ms", "added_p99_ms")
	cs, ws := res.Summary["commit_ms"], res.Summary["commit_and_wait_ms"]
	out += fmt.Sprintf("  p99: commit %.3f ms, with the wait %.3f ms\n", cs.P99, ws.P99)
	fmt.Print(out)
	return res, nil
}
