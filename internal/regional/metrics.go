package regional

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fogdb/fog/internal/gateway"
	"github.com/fogdb/fog/internal/lease"
)

var (
	descGwConns    = prometheus.NewDesc("fog_gateway_connections", "Listener connections now: active (relaying) or held (waiting for a primary or a route).", []string{"state"}, nil)
	descGwTotal    = prometheus.NewDesc("fog_gateway_connections_total", "Connections the region's listeners took.", nil, nil)
	descGwSpliced  = prometheus.NewDesc("fog_gateway_spliced_connections", "Active listener connections whose bytes the kernel moves (BPF sockmap) without the relay's loop.", nil, nil)
	descGwPassedUp = prometheus.NewDesc("fog_gateway_spliced_passed_up_total", "Directions of spliced connections handed back to the relay's loop because the receiving side fell a window (4 MiB) behind.", nil, nil)
	descGwRefused  = prometheus.NewDesc("fog_gateway_connections_refused_total", "Connections the region's listeners refused (no primary within the hold timeout, a disabled read-only listener).", nil, nil)
	descRenewalAge = prometheus.NewDesc("fog_agent_lease_renewal_age_seconds", "Time since the agent last renewed its lease; its primaries are fenced when this passes the fence time.", nil, nil)
)

// collector is a region's metrics: its listeners' connections and its agent's lease. It is
// registered with the region as a constant label.
type collector struct {
	gw     *gateway.Gateway
	keeper *lease.Keeper
}

func (m *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(m, ch) }

func (m *collector) Collect(ch chan<- prometheus.Metric) {
	s := m.gw.Stats()
	ch <- prometheus.MustNewConstMetric(descGwConns, prometheus.GaugeValue, float64(s.Active), "active")
	ch <- prometheus.MustNewConstMetric(descGwConns, prometheus.GaugeValue, float64(s.Held), "held")
	ch <- prometheus.MustNewConstMetric(descGwSpliced, prometheus.GaugeValue, float64(s.Spliced))
	ch <- prometheus.MustNewConstMetric(descGwPassedUp, prometheus.CounterValue, float64(s.PassedUp))
	ch <- prometheus.MustNewConstMetric(descGwTotal, prometheus.CounterValue, float64(s.Connections))
	ch <- prometheus.MustNewConstMetric(descGwRefused, prometheus.CounterValue, float64(s.Refused))
	if last := m.keeper.LastRenewal(); !last.IsZero() {
		ch <- prometheus.MustNewConstMetric(descRenewalAge, prometheus.GaugeValue, time.Since(last).Seconds())
	}
}
