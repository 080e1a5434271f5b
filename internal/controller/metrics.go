package controller

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fogdb/fog/internal/activity"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// Collector returns the control plane's metrics, read from the store at each scrape: every
// group's replication, roles and epoch, every region's lease age on this server's clock,
// failovers and operation durations from the activity log, seeding progress.
func (c *Controller) Collector() prometheus.Collector { return &collector{c: c} }

type collector struct{ c *Controller }

var (
	descLagBytes      = prometheus.NewDesc("fog_group_replication_lag_bytes", "WAL the group's primary has written that its secondary has not flushed.", []string{"group"}, nil)
	descLagSecs       = prometheus.NewDesc("fog_group_replication_lag_seconds", "The secondary's flush lag as its primary last measured it.", []string{"group"}, nil)
	descHardened      = prometheus.NewDesc("fog_group_last_hardened_timestamp_seconds", "When the secondary last confirmed a flush (Unix time).", []string{"group"}, nil)
	descEpoch         = prometheus.NewDesc("fog_group_epoch", "The group's epoch: it grows by one with every role change.", []string{"group"}, nil)
	descGroupInfo     = prometheus.NewDesc("fog_group_info", "The group's primary, secondary and policy (always 1).", []string{"group", "primary", "primary_region", "secondary", "secondary_region", "policy"}, nil)
	descRole          = prometheus.NewDesc("fog_instance_role", "The role an instance's agent observes (always 1).", []string{"instance", "region", "role"}, nil)
	descSeeding       = prometheus.NewDesc("fog_instance_seeding_ratio", "How much of a secondary's seed is copied (0 to 1), while it seeds.", []string{"instance", "region"}, nil)
	descLeaseAge      = prometheus.NewDesc("fog_region_lease_age_seconds", "Time since this server saw the region's agent renew its lease.", []string{"region"}, nil)
	descFailovers     = prometheus.NewDesc("fog_failovers_total", "Failovers in the activity log's retention, by kind, initiator and outcome.", []string{"kind", "initiator", "outcome"}, nil)
	descOpDur         = prometheus.NewDesc("fog_operation_duration_seconds", "Durations of the operations in the activity log's retention.", []string{"kind", "outcome"}, nil)
	descBackupOK      = prometheus.NewDesc("fog_backup_last_success_timestamp_seconds", "When the instance's newest backup in its region's repository ended (Unix time).", []string{"instance"}, nil)
	descArchived      = prometheus.NewDesc("fog_archive_last_archived_timestamp_seconds", "When the instance last archived a WAL segment into its region's repository (Unix time).", []string{"instance"}, nil)
	descBackupHealthy = prometheus.NewDesc("fog_backup_healthy", "1 while the instance's backups and WAL archiving are healthy, 0 while degraded (its status says why).", []string{"instance"}, nil)
)

// durationBuckets cover a planned failover (under a second) to a seed (minutes).
var durationBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800}

func (m *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(m, ch) }

func (m *collector) Collect(ch chan<- prometheus.Metric) {
	c := m.c
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if groups, err := store.List[FailoverGroup](ctx, c.st, "fog/"); err == nil {
		for i := range groups {
			g := &groups[i]
			st := c.statuses(ctx, g)
			r := g.Replication(st)
			if r.LagBytes != nil {
				ch <- prometheus.MustNewConstMetric(descLagBytes, prometheus.GaugeValue, float64(*r.LagBytes), g.Name)
			}
			if r.LagSeconds != nil {
				ch <- prometheus.MustNewConstMetric(descLagSecs, prometheus.GaugeValue, *r.LagSeconds, g.Name)
			}
			if r.LastHardenedTime != nil {
				ch <- prometheus.MustNewConstMetric(descHardened, prometheus.GaugeValue, float64(r.LastHardenedTime.UnixNano())/1e9, g.Name)
			}
			ch <- prometheus.MustNewConstMetric(descEpoch, prometheus.GaugeValue, float64(g.Epoch), g.Name)
			p, s := g.Sides[g.Primary], g.Sides[g.Secondary()]
			ch <- prometheus.MustNewConstMetric(descGroupInfo, prometheus.GaugeValue, 1, g.Name, p.InstanceName, p.Location, s.InstanceName, s.Location, g.ReadWritePolicy)
			for j, side := range g.Sides {
				if st[j].Role != "" {
					ch <- prometheus.MustNewConstMetric(descRole, prometheus.GaugeValue, 1, side.InstanceName, side.Location, st[j].Role)
				}
				if st[j].SeedPercent != nil {
					ch <- prometheus.MustNewConstMetric(descSeeding, prometheus.GaugeValue, *st[j].SeedPercent/100, side.InstanceName, side.Location)
				}
			}
		}
	}
	c.collectBackups(ctx, ch)
	for _, region := range c.cfg.Regions {
		if kv, err := c.st.Get(ctx, lease.Key(region)); err == nil {
			ch <- prometheus.MustNewConstMetric(descLeaseAge, prometheus.GaugeValue, c.leases.Note(kv.Key, kv.Rev).Seconds(), region)
		}
	}
	acts, err := activity.List(ctx, c.st)
	if err != nil {
		return
	}
	type fk struct{ kind, initiator, outcome string }
	failovers := map[fk]int{}
	type dk struct{ kind, outcome string }
	durs := map[dk][]float64{}
	for _, a := range acts {
		if a.End == nil {
			continue
		}
		initiator := InitiatorUser
		if a.Caller == InitiatorSystem {
			initiator = InitiatorSystem
		}
		switch a.Kind {
		case KindFailover:
			failovers[fk{"planned", initiator, a.Status}]++
		case KindForceFailover:
			failovers[fk{"forced", initiator, a.Status}]++
		}
		k := dk{a.Kind, a.Status}
		durs[k] = append(durs[k], a.End.Sub(a.Start).Seconds())
	}
	for k, n := range failovers {
		ch <- prometheus.MustNewConstMetric(descFailovers, prometheus.CounterValue, float64(n), k.kind, k.initiator, k.outcome)
	}
	for k, ds := range durs {
		buckets := map[float64]uint64{}
		var sum float64
		for _, d := range ds {
			sum += d
			for _, b := range durationBuckets {
				if d <= b {
					buckets[b]++
				}
			}
		}
		ch <- prometheus.MustNewConstHistogram(descOpDur, uint64(len(ds)), sum, buckets, k.kind, k.outcome)
	}
}

// collectBackups reports each instance's backups and archive as its agent last saw them: an
// instance whose agent reports no backup state (an older agent, or none yet) has no series.
func (c *Controller) collectBackups(ctx context.Context, ch chan<- prometheus.Metric) {
	ms, err := store.List[resource.ManagedInstance](ctx, c.st, "mi/")
	if err != nil {
		return
	}
	for i := range ms {
		m := &ms[i]
		st, ok := c.observed(ctx, m)
		if !ok || st.Backup == nil {
			continue
		}
		b := st.Backup
		var last time.Time
		for _, bk := range b.Backups {
			if bk.Stop.After(last) {
				last = bk.Stop
			}
		}
		if !last.IsZero() {
			ch <- prometheus.MustNewConstMetric(descBackupOK, prometheus.GaugeValue, unixSeconds(last), m.Name)
		}
		if !b.Archive.LastArchivedAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(descArchived, prometheus.GaugeValue, unixSeconds(b.Archive.LastArchivedAt), m.Name)
		}
		healthy := 0.0
		if b.Health == instance.BackupHealthy {
			healthy = 1
		}
		ch <- prometheus.MustNewConstMetric(descBackupHealthy, prometheus.GaugeValue, healthy, m.Name)
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
