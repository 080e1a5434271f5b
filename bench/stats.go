package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// summary is min / median / p95 / max of a sample.
type summary struct {
	N      int     `json:"n"`
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	P95    float64 `json:"p95"`
	P99    float64 `json:"p99"`
	Max    float64 `json:"max"`
}

func summarize(xs []float64) summary {
	if len(xs) == 0 {
		return summary{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		if i < 0 {
			i = 0
		}
		return s[i]
	}
	return summary{N: len(s), Min: s[0], Median: q(0.5), P95: q(0.95), P99: q(0.99), Max: s[len(s)-1]}
}

func (s summary) String() string {
	return fmt.Sprintf("n=%d min=%s median=%s p95=%s max=%s", s.N, num(s.Min), num(s.Median), num(s.P95), num(s.Max))
}

func num(x float64) string {
	switch {
	case x == 0:
		return "0"
	case math.Abs(x) >= 100:
		return fmt.Sprintf("%.0f", x)
	case math.Abs(x) >= 1:
		return fmt.Sprintf("%.2f", x)
	default:
		return fmt.Sprintf("%.3f", x)
	}
}

// table prints rows of name and summary.
func table(title string, rows [][2]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n== %s\n", title)
	w := 0
	for _, r := range rows {
		w = max(w, len(r[0]))
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "  %-*s  %s\n", w, r[0], r[1])
	}
	return b.String()
}
