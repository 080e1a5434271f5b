package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/fogdb/fog/internal/resource"
)

func controlPlaneScenario(ctx context.Context, o options) (*result, error) {
	res := newResult(fmt.Sprintf("control plane: %d concurrent API clients for %.0f s per request kind", o.cpClients, o.cpSeconds))
	f, err := startFog(ctx, "127.0.208.1")
	if err != nil {
		return nil, err
	}
	defer f.stop()
	if _, err := f.createInstance(ctx, "rg-cp", "cp1", "eastus", resource.InstanceProperties{}); err != nil {
		return nil, err
	}
	if err := f.do(ctx, "PUT", miPath("rg-cp", "cp1")+"/databases/db1", map[string]any{}); err != nil {
		return nil, err
	}
	kinds := []struct {
		name, method, path string
		body               any
		want               int
	}{
		{"get_instance", "GET", miPath("rg-cp", "cp1"), nil, http.StatusOK},
		{"put_database", "PUT", miPath("rg-cp", "cp1") + "/databases/db1", map[string]any{}, http.StatusOK},
	}
	d := time.Duration(o.cpSeconds * float64(time.Second))
	for run := range o.runs {
		for _, k := range kinds {
			var mu sync.Mutex
			var lat []float64
			errs := 0
			var wg sync.WaitGroup
			start := time.Now()
			for range o.cpClients {
				wg.Go(func() {
					for time.Since(start) < d && ctx.Err() == nil {
						t := time.Now()
						r, err := f.call(ctx, k.method, k.path, k.body)
						el := ms(time.Since(t))
						mu.Lock()
						if err != nil || r.status != k.want {
							errs++
						} else {
							lat = append(lat, el)
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start).Seconds()
			s := summarize(lat)
			res.add(k.name+"_p50_ms", s.Median)
			res.add(k.name+"_p99_ms", s.P99)
			res.add(k.name+"_rps", float64(len(lat))/elapsed)
			res.add(k.name+"_errors", float64(errs))
			fmt.Printf("  control plane run %d %s: %.0f req/s, p50 %.2f ms, p99 %.2f ms, errors %d\n", run+1, k.name, float64(len(lat))/elapsed, s.Median, s.P99, errs)
		}
	}
	fmt.Print(res.finish("get_instance_rps", "get_instance_p50_ms", "get_instance_p99_ms", "get_instance_errors",
		"put_database_rps", "put_database_p50_ms", "put_database_p99_ms", "put_database_errors"))
	return res, nil
}
