package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestSmoke runs one short scenario so the harness cannot rot; the numbers are not checked
// against targets (benchmarks measure, tests assert behaviour).
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "results.json")
	if err := run(ctx, []string{"-runs", "1", "-cp-seconds", "0.5", "-cp-clients", "5", "-out", out, "controlplane"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Results []result `json:"results"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 1 || res.Results[0].Summary["get_instance_rps"].Median <= 0 || res.Results[0].Summary["get_instance_errors"].Max != 0 {
		t.Fatalf("smoke results = %+v", res.Results)
	}
	if err := run(ctx, []string{"nosuch"}); err == nil {
		t.Error("an unknown scenario was accepted")
	}
}

// TestMain checks that a whole in-process Fog (store, API, controller, agents, lease keepers,
// gateway) leaves no goroutine behind when it stops.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSignTest checks the p-values gatewaypairs prints against the binomial distribution.
func TestSignTest(t *testing.T) {
	for _, c := range []struct {
		k, n int
		want float64
	}{{10, 20, 1}, {20, 20, 1.9073e-6}, {15, 20, 0.041389}, {5, 20, 0.041389}, {0, 1, 1}} {
		if got := signTest(c.k, c.n); got < c.want*0.999 || got > c.want*1.001 {
			t.Errorf("signTest(%d, %d) = %g, want %g", c.k, c.n, got, c.want)
		}
	}
}
