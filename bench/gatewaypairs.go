package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// gatewayPairsScenario puts the listeners against HAProxy in many short pairs: each pair runs
// pgbench for a few seconds through the listener and through HAProxy, back to back, the order
// alternating from pair to pair. This machine's speed drifts by 10 to 30 % between 8-second
// runs; within a pair the drift falls on both halves nearly alike, so the pairs' ratios are
// much tighter than ratios of medians taken over minutes. It reports the median ratio, how
// many pairs the listener won, and the sign test's two-sided p-value (the chance of a
// split at least that uneven if neither were faster).
func gatewayPairsScenario(ctx context.Context, o options) (*result, error) {
	res := newResult(fmt.Sprintf("listeners against HAProxy in %d pairs of %d-second pgbench runs (-c 8 -j 2, TLS): select-only and TPC-B-like through the read-write listener, select-only through the read-only listener", o.pairs, o.pairSecs))
	f, g, err := setupPgbench(ctx, "127.0.207.1")
	if err != nil {
		return nil, err
	}
	defer f.stop()
	hpRW, _, err := startHAProxy(ctx, "127.0.207.250:5432", addr(g.prim))
	if err != nil {
		return nil, fmt.Errorf("%w: this scenario compares against HAProxy (apt-get install haproxy)", err)
	}
	defer hpRW()
	hpRO, _, err := startHAProxy(ctx, "127.0.207.251:5432", addr(g.sec))
	if err != nil {
		return nil, err
	}
	defer hpRO()
	modes := []struct {
		name, listener, haproxy string
		args                    []string
	}{
		{"select", g.rw, "127.0.207.250:5432", []string{"-S"}},
		{"tpcb", g.rw, "127.0.207.250:5432", nil},
		{"readonly_select", g.ro, "127.0.207.251:5432", []string{"-S"}},
	}
	secs := strconv.Itoa(o.pairSecs)
	tps := func(target string, args []string) (float64, error) {
		out, err := pgbench(ctx, target, "bench", append([]string{"-n", "-c", "8", "-j", "2", "-T", secs}, args...)...)
		if err != nil {
			return 0, err
		}
		v, _, err := parsePgbench(out)
		return v, err
	}
	var keys []string
	for _, m := range modes {
		for _, t := range []string{m.listener, m.haproxy} { // warm both
			if _, err := tps(t, m.args); err != nil {
				return nil, err
			}
		}
		wins := 0
		var ratios []float64
		for i := range o.pairs {
			order := []string{m.listener, m.haproxy}
			if i%2 == 1 {
				slices.Reverse(order)
			}
			got := map[string]float64{}
			for _, t := range order {
				v, err := tps(t, m.args)
				if err != nil {
					return nil, err
				}
				got[t] = v
			}
			if got[m.haproxy] == 0 {
				return nil, errors.New("HAProxy ran no transactions")
			}
			r := got[m.listener] / got[m.haproxy]
			ratios = append(ratios, r)
			if r > 1 {
				wins++
			}
			res.add(m.name+"_listener_tps", got[m.listener])
			res.add(m.name+"_haproxy_tps", got[m.haproxy])
			res.add(m.name+"_ratio_listener_to_haproxy", r)
		}
		p := signTest(wins, len(ratios))
		res.add(m.name+"_pairs_won_by_listener", float64(wins))
		res.add(m.name+"_sign_test_p", p)
		fmt.Printf("  %s: listener/HAProxy median %.3f over %d pairs, the listener won %d (sign test p = %.3g)\n", m.name, median(ratios), len(ratios), wins, p)
		keys = append(keys, m.name+"_listener_tps", m.name+"_haproxy_tps", m.name+"_ratio_listener_to_haproxy", m.name+"_pairs_won_by_listener", m.name+"_sign_test_p")
	}
	fmt.Print(res.finish(keys...))
	return res, nil
}

// signTest is the two-sided p-value of k wins in n fair coin flips.
func signTest(k, n int) float64 {
	tail := func(lo, hi int) float64 {
		p := 0.0
		for i := lo; i <= hi; i++ {
			lg, _ := math.Lgamma(float64(n + 1))
			a, _ := math.Lgamma(float64(i + 1))
			b, _ := math.Lgamma(float64(n - i + 1))
			p += math.Exp(lg - a - b - float64(n)*math.Ln2)
		}
		return p
	}
	return math.Min(1, 2*math.Min(tail(0, k), tail(k, n)))
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
