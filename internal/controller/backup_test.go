package controller

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fogdb/fog/internal/agent/agenttest"
	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// openTestController is a controller over a store of its own, with no agent.
func openTestController(t *testing.T) *Controller {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newTestController(t, st)
}

func storedInstance(t *testing.T, st store.Store, rg, name string) resource.ManagedInstance {
	t.Helper()
	var m resource.ManagedInstance
	if _, err := store.Get(context.Background(), st, miKey("sub", rg, name), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func storedSpec(t *testing.T, st store.Store, region, uid string) instance.Spec {
	t.Helper()
	var s instance.Spec
	if _, err := store.Get(context.Background(), st, instance.SpecKey(region, uid), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// Creating a group gives the secondary the primary's stanza, in its record and its spec: the
// secondary is seeded from the primary, one PostgreSQL system with one backup history.
func TestGroupCreateSharesThePrimarysStanza(t *testing.T) {
	c := openTestController(t)
	ctx := context.Background()
	prim := &resource.ManagedInstance{UID: "uid-p", Subscription: "sub", ResourceGroup: "rg-p", Name: "mi-p", Location: "eastus", Host: "10.0.0.1", Port: 5432,
		DNSZone: "zone", BackupStanza: "uid-p", BackupSeq: 3, ProvisioningState: resource.ProvisioningSucceeded}
	part := &resource.ManagedInstance{UID: "uid-s", Subscription: "sub", ResourceGroup: "rg-s", Name: "mi-s", Location: "westus", Host: "10.0.1.1", Port: 5432,
		DNSZone: "zone2", BackupStanza: "uid-s-2", BackupStanzas: 2, BackupSeq: 7, ProvisioningState: resource.ProvisioningSucceeded}
	var revs [2]int64
	for i, m := range []*resource.ManagedInstance{prim, part} {
		if err := store.Put(ctx, c.st, miKey(m.Subscription, m.ResourceGroup, m.Name), m); err != nil {
			t.Fatal(err)
		}
		revs[i], _ = store.Get(ctx, c.st, miKey(m.Subscription, m.ResourceGroup, m.Name), m)
	}
	in := &createInputs{prim: resource.GroupCandidate{Instance: prim, Running: true}, primRev: revs[0],
		part: resource.GroupCandidate{Instance: part, Running: true}, partRev: revs[1]}
	spec := &resource.FailoverGroupSpec{ReadWritePolicy: "Manual", ReadOnlyPolicy: "Disabled", SecondaryType: "Geo", PartnerRegion: "westus"}
	if _, err := c.writeCreate(ctx, "sub", "rg-p", "eastus", "fg", spec, in, [2][2]Address{}); err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct{ rg, name, region, uid string }{{"rg-p", "mi-p", "eastus", "uid-p"}, {"rg-s", "mi-s", "westus", "uid-s"}} {
		if m := storedInstance(t, c.st, side.rg, side.name); m.BackupStanza != "uid-p" {
			t.Errorf("%s's recorded stanza = %q, want the primary's, uid-p", side.name, m.BackupStanza)
		}
		if s := storedSpec(t, c.st, side.region, side.uid); s.Backup == nil || s.Backup.Stanza != "uid-p" {
			t.Errorf("%s's spec asks for backups %+v, want stanza uid-p", side.name, s.Backup)
		}
	}
	// Its own numbering is kept: the next stanza of its own is a new one.
	if m := storedInstance(t, c.st, "rg-s", "mi-s"); m.BackupStanzas != 2 || m.BackupSeq != 7 {
		t.Errorf("the secondary's record: %d stanzas of its own, backup %d; want 2 and 7 kept", m.BackupStanzas, m.BackupSeq)
	}
}

// Deleting a group gives the former secondary a stanza of its own, one it never had
// (<uid>-<n>, n counting up), in its record and its spec; the primary keeps the group's. The
// group here is one an older Fog made (no stanza in its records): the members shared side
// 0's uid, and the primary keeps that one recorded.
func TestGroupDeleteGivesTheSecondaryANewStanza(t *testing.T) {
	ctx, _, c, stop := startWorld(t)
	defer stop()
	for _, side := range []struct{ region, uid string }{{"eastus", "uid-p"}, {"westus", "uid-s"}} {
		if s := storedSpec(t, c.st, side.region, side.uid); s.Backup == nil || s.Backup.Stanza != "uid-p" {
			t.Fatalf("%s's spec in the group asks for backups %+v, want the shared stanza uid-p", side.uid, s.Backup)
		}
	}
	// The secondary had a stanza of its own once before (an earlier group it left).
	if _, err := store.Update(ctx, c.st, miKey("sub", "rg-s", "mi-s"), func(m *resource.ManagedInstance) error {
		m.BackupStanzas = 1
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	op, aerr := c.DeleteFailoverGroup(ctx, "sub", "rg-p", "eastus", "fg")
	if aerr != nil {
		t.Fatal(aerr)
	}
	if got := waitOutcome(t, c, op.ID, 30*time.Second); got.status != arm.StatusSucceeded {
		t.Fatalf("delete: %s (%v), want Succeeded", got.status, got.op.Error)
	}
	for _, side := range []struct{ rg, name, region, uid, stanza string }{
		{"rg-p", "mi-p", "eastus", "uid-p", "uid-p"},
		{"rg-s", "mi-s", "westus", "uid-s", "uid-s-2"},
	} {
		m := storedInstance(t, c.st, side.rg, side.name)
		if m.BackupStanza != side.stanza || m.FailoverGroup != "" {
			t.Errorf("%s after the delete: stanza %q, group %q; want %q and none", side.name, m.BackupStanza, m.FailoverGroup, side.stanza)
		}
		if s := storedSpec(t, c.st, side.region, side.uid); s.Backup == nil || s.Backup.Stanza != side.stanza {
			t.Errorf("%s's spec after the delete asks for backups %+v, want stanza %q", side.name, s.Backup, side.stanza)
		}
	}
	if m := storedInstance(t, c.st, "rg-s", "mi-s"); m.BackupStanzas != 2 {
		t.Errorf("the former secondary counts %d stanzas of its own, want 2", m.BackupStanzas)
	}
}

// A new instance's stanza is its UID, recorded with the create and in its spec.
func TestInstanceCreateRecordsItsStanza(t *testing.T) {
	c := openTestController(t)
	ctx := context.Background()
	if err := store.Put(ctx, c.st, instance.AgentKey("eastus"), instance.AgentRecord{AddressFirst: "10.0.0.1", AddressLast: "10.0.0.9", Port: 5432}); err != nil {
		t.Fatal(err)
	}
	login, pw := "fogadmin", "Str0ng-Password-123!"
	if _, err := c.PutInstance(ctx, "sub", "rg", "mi1", resource.InstanceJSON{Location: "eastus",
		Properties: resource.InstanceProperties{AdministratorLogin: &login, AdministratorLoginPassword: &pw}}); err != nil {
		t.Fatal(err)
	}
	m := storedInstance(t, c.st, "rg", "mi1")
	if m.UID == "" || m.BackupStanza != m.UID || m.BackupRetentionDays != 7 || m.BackupStorageRedundancy != "Geo" {
		t.Errorf("new record: uid %q, stanza %q, retention %d, redundancy %q; want the uid as stanza, 7, Geo", m.UID, m.BackupStanza, m.BackupRetentionDays, m.BackupStorageRedundancy)
	}
	if s := storedSpec(t, c.st, "eastus", m.UID); s.Backup == nil || s.Backup.Stanza != m.UID || s.Backup.RetentionDays != 7 || s.Backup.Seq != 0 {
		t.Errorf("new spec asks for backups %+v, want stanza %s, 7 days, none asked yet", s.Backup, m.UID)
	}
}

// The schedule's view of the instances: who is the primary, who is held by an operation,
// and whose observed state is news.
func TestBackupInstances(t *testing.T) {
	c := openTestController(t)
	ctx := context.Background()
	put := func(key string, v any) {
		t.Helper()
		if err := store.Put(ctx, c.st, key, v); err != nil {
			t.Fatal(err)
		}
	}
	mi := func(uid, name, region, grp, activeOp string) {
		put(miKey("sub", "rg", name), resource.ManagedInstance{UID: uid, Subscription: "sub", ResourceGroup: "rg", Name: name, Location: region, FailoverGroup: grp, ActiveOperation: activeOp})
		put(instance.StatusKey(region, uid), instance.Status{UID: uid, Phase: instance.PhaseReady, LeaseIncarnation: 1})
	}
	side := func(name, uid, region string) GroupSide {
		return GroupSide{Subscription: "sub", ResourceGroup: "rg", Location: region, InstanceName: name, InstanceUID: uid}
	}
	put(opKey("op-running"), Operation{ID: "op-running", Status: arm.StatusInProgress})
	put(opKey("op-done"), Operation{ID: "op-done", Status: arm.StatusSucceeded})
	mi("u-alone", "alone", "eastus", "", "")
	mi("u-done", "done", "eastus", "", "op-done")
	mi("u-creating", "creating", "eastus", "", "op-running")
	mi("u-p", "p", "eastus", "fg", "")
	mi("u-s", "s", "westus", "fg", "")
	mi("u-q", "q", "eastus", "fg2", "")
	mi("u-r", "r", "westus", "fg2", "")
	put(fogKey("fg"), FailoverGroup{Name: "fg", Primary: 1, Sides: [2]GroupSide{side("s", "u-s", "westus"), side("p", "u-p", "eastus")}})
	put(fogKey("fg2"), FailoverGroup{Name: "fg2", Primary: 0, ActiveOperation: "op-running", Sides: [2]GroupSide{side("q", "u-q", "eastus"), side("r", "u-r", "westus")}})
	// eastus's agent publishes under incarnation 1; westus's lease has moved on to 2 since
	// its statuses were published (it lapsed and was renewed).
	put(lease.Key("eastus"), lease.Record{Region: "eastus", Incarnation: 1})
	put(lease.Key("westus"), lease.Record{Region: "westus", Incarnation: 2})

	ins, err := backupInstances(ctx, c.eng)
	if err != nil {
		t.Fatal(err)
	}
	type view struct {
		primary, busy, status bool
	}
	got := map[string]view{}
	for _, in := range ins {
		if in.Rev == 0 {
			t.Errorf("%s: no record revision", in.Record.Name)
		}
		got[in.Record.Name] = view{in.Primary, in.Busy, in.Status != nil}
	}
	want := map[string]view{
		"alone":    {primary: true, status: true},
		"done":     {primary: true, status: true},
		"creating": {primary: true, busy: true, status: true},
		"p":        {primary: true, status: true},
		"s":        {},
		"q":        {primary: true, busy: true, status: true},
		"r":        {busy: true},
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %+v, want %+v", name, got[name], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d instances, want %d", len(got), len(want))
	}
}

// The leader runs the schedule: the group's primary gets a full backup, taken by its agent,
// then differential ones; the standby none.
func TestLeaderRunsTheBackupSchedule(t *testing.T) {
	ctx, w, c, stop := startWorld(t)
	defer stop()
	c.backupEvery = 20 * time.Millisecond
	c.cfg.Backup.FullInterval, c.cfg.Backup.DiffInterval = time.Hour, 300*time.Millisecond
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = c.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	var taken []instance.Backup
	waitFor(t, "a full and a differential backup of the primary", func() bool {
		w.net.PG("uid-p").Do(func(p *agenttest.PG) { taken = append([]instance.Backup(nil), p.Taken...) })
		return len(taken) >= 2
	}, 20*time.Second)
	if taken[0].Type != instance.BackupFull || taken[0].Seq != 1 || taken[1].Type != instance.BackupDiff || taken[1].Seq != 2 {
		t.Errorf("backups taken: %+v; want full 1, then diff 2", taken)
	}
	if m := storedInstance(t, c.st, "rg-s", "mi-s"); m.BackupSeq != 0 {
		t.Errorf("the standby was asked for backup %d, want none", m.BackupSeq)
	}
	var s []instance.Backup
	w.net.PG("uid-s").Do(func(p *agenttest.PG) { s = p.Taken })
	if len(s) != 0 {
		t.Errorf("the standby took backups %+v, want none", s)
	}
}

// A backup the agent reports done or failed is written to the activity log once, with its
// type, size and duration, and again when its verification is reported; a new leader writes
// nothing again.
func TestBackupsInTheActivityLog(t *testing.T) {
	c := openTestController(t)
	ctx := context.Background()
	asked := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	m := resource.ManagedInstance{UID: "u1", Subscription: "sub", ResourceGroup: "rg", Name: "mi1", Location: "eastus",
		BackupStanza: "u1", BackupSeq: 1, BackupType: instance.BackupFull, BackupAskedAt: asked}
	if err := store.Put(ctx, c.st, miKey("sub", "rg", "mi1"), m); err != nil {
		t.Fatal(err)
	}
	full := instance.Backup{Label: "20261203-110000F", Type: instance.BackupFull, Start: asked.Add(time.Minute), Stop: asked.Add(4 * time.Minute),
		Size: 3 << 30, RepoSize: 300 << 20, Seq: 1}
	status := func(b instance.BackupStatus) {
		t.Helper()
		b.Stanza, b.Health = "u1", instance.BackupHealthy
		if err := store.Put(ctx, c.st, instance.StatusKey("eastus", "u1"), instance.Status{UID: "u1", Phase: instance.PhaseReady, Backup: &b}); err != nil {
			t.Fatal(err)
		}
	}
	term1 := &term{eng: c.eng, backupSeq: map[string]int64{}, backupVerified: map[string]int64{}}
	events := func() []ActivityEvent {
		t.Helper()
		evs, err := c.ActivityLog(ctx, "sub", ActivityFilter{From: asked.Add(-time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		var out []ActivityEvent
		for _, e := range evs {
			if e.Kind == KindBackup && e.Phase != "Started" {
				out = append(out, e)
			}
		}
		return out
	}

	// Done, but the repository's listing does not show it yet: nothing yet.
	status(instance.BackupStatus{Seq: 1})
	c.noteBackups(ctx, term1)
	if evs := events(); len(evs) != 0 {
		t.Fatalf("a backup not listed yet is in the log: %+v", evs)
	}
	status(instance.BackupStatus{Seq: 1, Backups: []instance.Backup{full}})
	c.noteBackups(ctx, term1)
	c.noteBackups(ctx, term1)
	evs := events()
	if len(evs) != 1 {
		t.Fatalf("%d backup entries, want 1: %+v", len(evs), evs)
	}
	e := evs[0]
	if e.Phase != arm.StatusSucceeded || e.ResourceID != m.ID() || e.Caller != InitiatorSystem || !e.Start.Equal(full.Start) || !e.End.Equal(full.Stop) ||
		e.Backup == nil || e.Backup.Type != instance.BackupFull || e.Backup.Size != full.Size || e.Backup.RepoSize != full.RepoSize || e.Backup.Seq != 1 {
		t.Errorf("entry = %+v (backup %+v), want the full backup 1 Succeeded on mi1 with its times and sizes", e, e.Backup)
	}
	if want := "full backup 1 (20261203-110000F) finished: 3.0 GiB of data, 300.0 MiB added to the repository, in 3m0s"; e.Description != want {
		t.Errorf("description = %q, want %q", e.Description, want)
	}

	// Its verification is reported after it: the entry is written again with it, once, and
	// a new leader seeing it verified writes nothing.
	status(instance.BackupStatus{Seq: 1, Backups: []instance.Backup{full}, Verify: &instance.BackupVerify{Seq: 1, At: full.Stop.Add(time.Minute)}})
	c.noteBackups(ctx, term1)
	c.noteBackups(ctx, term1)
	c.noteBackups(ctx, &term{eng: c.eng, backupSeq: map[string]int64{}, backupVerified: map[string]int64{}})
	if evs = events(); len(evs) != 1 || evs[0].Description != e.Description+"; the repository verified" {
		t.Fatalf("after the verification: %+v, want one entry ending %q", evs, "; the repository verified")
	}

	// The next one fails.
	if _, err := store.Update(ctx, c.st, miKey("sub", "rg", "mi1"), func(m *resource.ManagedInstance) error {
		m.BackupSeq, m.BackupType, m.BackupAskedAt = 2, instance.BackupDiff, asked.Add(30*time.Minute)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	status(instance.BackupStatus{Seq: 2, Error: "backup: repository unreachable", Backups: []instance.Backup{full}})
	c.noteBackups(ctx, term1)
	evs = events()
	if len(evs) != 2 {
		t.Fatalf("%d backup entries, want 2: %+v", len(evs), evs)
	}
	f := evs[0] // newest first
	if f.Phase != arm.StatusFailed || f.Error == nil || f.Error.Code != "BackupFailed" || f.Backup == nil || f.Backup.Type != instance.BackupDiff ||
		!f.Start.Equal(asked.Add(30*time.Minute)) || !strings.Contains(f.Error.Message, "repository unreachable") {
		t.Errorf("failure entry = %+v (error %+v, backup %+v), want the differential backup 2 Failed with the agent's error, from when it was asked", f, f.Error, f.Backup)
	}

	// A new leader notes the last backup again and writes nothing.
	term2 := &term{eng: c.eng, backupSeq: map[string]int64{}, backupVerified: map[string]int64{}}
	c.noteBackups(ctx, term2)
	if n := len(events()); n != 2 {
		t.Errorf("after a new leader: %d backup entries, want 2", n)
	}
}

// The metrics show each instance's last backup, last archived segment and backup health.
func TestBackupMetrics(t *testing.T) {
	c := openTestController(t)
	ctx := context.Background()
	stop := time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC)
	archived := stop.Add(time.Hour)
	for _, m := range []struct {
		uid, name string
		b         *instance.BackupStatus
	}{
		{"u1", "healthy", &instance.BackupStatus{Stanza: "u1", Health: instance.BackupHealthy, Archive: instance.Archive{LastArchivedAt: archived},
			Backups: []instance.Backup{{Type: instance.BackupFull, Stop: stop.Add(-24 * time.Hour)}, {Type: instance.BackupDiff, Stop: stop}}}},
		{"u2", "degraded", &instance.BackupStatus{Health: instance.BackupDegraded, Error: "pgBackRest is not installed"}},
		{"u3", "older", nil},
	} {
		if err := store.Put(ctx, c.st, miKey("sub", "rg", m.name), resource.ManagedInstance{UID: m.uid, Subscription: "sub", ResourceGroup: "rg", Name: m.name, Location: "eastus"}); err != nil {
			t.Fatal(err)
		}
		if err := store.Put(ctx, c.st, instance.StatusKey("eastus", m.uid), instance.Status{UID: m.uid, Phase: instance.PhaseReady, Backup: m.b}); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "instance" {
					got[mf.GetName()+"/"+l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	want := map[string]float64{
		"fog_backup_last_success_timestamp_seconds/healthy":   float64(stop.Unix()),
		"fog_archive_last_archived_timestamp_seconds/healthy": float64(archived.Unix()),
		"fog_backup_healthy/healthy":                          1,
		"fog_backup_healthy/degraded":                         0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	// An instance without backup state (an older agent) has no series, nor one without
	// backups or archived WAL a timestamp.
	for k, v := range got {
		if _, ok := want[k]; !ok && (strings.HasPrefix(k, "fog_backup_") || strings.HasPrefix(k, "fog_archive_")) {
			t.Errorf("unexpected series %s = %v", k, v)
		}
	}
}
