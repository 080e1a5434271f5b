package backupsched_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/backupsched"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/resource"
)

// The scheduler is tested through Deps: the instances and their observed state, the ask and
// the clock are fakes.

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

type ask struct {
	uid  string
	seq  int64
	typ  string
	rev  int64
	when time.Time
}

// edges are the fakes a scheduler is made with: the instances as listed, the asks made (an
// ask updates the fake's record as the real transaction does), and a clock.
type edges struct {
	ins     []backupsched.Instance
	asks    []ask
	now     time.Time
	failAsk error
}

func (e *edges) instances(context.Context) ([]backupsched.Instance, error) {
	return append([]backupsched.Instance(nil), e.ins...), nil
}

func (e *edges) ask(_ context.Context, in backupsched.Instance, seq int64, typ string, now time.Time) error {
	e.asks = append(e.asks, ask{in.Record.UID, seq, typ, in.Rev, now})
	if e.failAsk != nil {
		return e.failAsk
	}
	for i := range e.ins {
		if e.ins[i].Record.UID == in.Record.UID {
			e.ins[i].Record.BackupSeq, e.ins[i].Record.BackupType = seq, typ
			e.ins[i].Rev++
		}
	}
	return nil
}

func newScheduler(e *edges) *backupsched.Scheduler {
	return backupsched.New(backupsched.Deps{Config: backupsched.Defaults(), Instances: e.instances, Ask: e.ask, Now: func() time.Time { return e.now }})
}

// primary is a Ready primary whose stanza is in the repository with backups, asked up to seq
// and done.
func primary(uid string, seq int64, backups ...instance.Backup) backupsched.Instance {
	return backupsched.Instance{
		Record:  resource.ManagedInstance{UID: uid, Name: "mi-" + uid, BackupStanza: uid, BackupSeq: seq},
		Rev:     10,
		Primary: true,
		Status: &instance.Status{UID: uid, Phase: instance.PhaseReady, Role: instance.RolePrimary,
			Backup: &instance.BackupStatus{Stanza: uid, Seq: seq, Backups: backups, Health: instance.BackupHealthy}},
	}
}

func backup(typ string, ago time.Duration) instance.Backup {
	return instance.Backup{Type: typ, Start: t0.Add(-ago), Stop: t0.Add(-ago + time.Minute)}
}

func TestRules(t *testing.T) {
	full, diff := instance.BackupFull, instance.BackupDiff
	for _, tc := range []struct {
		name string
		in   backupsched.Instance
		want string // the type asked, "" for none
	}{
		{"no backup at all: a full one now", primary("a", 0), full},
		{"only differential backups: a full one", primary("a", 3, backup(diff, time.Hour)), full},
		{"a recent full: nothing", primary("a", 1, backup(full, time.Hour)), ""},
		{"the full is a week old: a full one", primary("a", 1, backup(full, 7*24*time.Hour)), full},
		{"the full is six days old, a diff yesterday: nothing", primary("a", 2, backup(full, 6*24*time.Hour), backup(diff, 23*time.Hour)), ""},
		{"the newest backup is a day old: a differential", primary("a", 2, backup(full, 3*24*time.Hour), backup(diff, 24*time.Hour)), diff},
		{"the full is a day old and the newest: a differential", primary("a", 1, backup(full, 25*time.Hour)), diff},
		{"a gap in the archive after a recent backup: a differential", func() backupsched.Instance {
			in := primary("a", 1, backup(full, time.Hour))
			in.Status.Backup.Archive.Gap = true
			return in
		}(), diff},
		{"pgBackRest's incremental counts as a backup", primary("a", 2, backup(full, 3*24*time.Hour), backup("incr", time.Hour)), ""},
		{"a backup asked and not done: nothing", func() backupsched.Instance {
			in := primary("a", 0)
			in.Record.BackupSeq = 1
			return in
		}(), ""},
		{"the backup last asked failed: nothing yet", func() backupsched.Instance {
			in := primary("a", 1)
			in.Status.Backup.Error = "backup: no space left on device"
			return in
		}(), ""},
		{"an error without any backup asked (backups off): not a failure to wait on", func() backupsched.Instance {
			in := primary("a", 0)
			in.Status.Backup.Error = "pgBackRest is not installed"
			return in
		}(), full},
		{"a backup running: nothing", func() backupsched.Instance {
			in := primary("a", 0)
			in.Status.Backup.Running = 1
			return in
		}(), ""},
		{"a standby whose primary does not serve its backups: nothing", func() backupsched.Instance {
			in := primary("a", 0)
			in.Primary, in.Standby, in.Status.Role = false, true, instance.RoleStandby
			return in
		}(), ""},
		{"a standby whose primary serves its backups: its region's own full backup", func() backupsched.Instance {
			in := primary("a", 0)
			in.Primary, in.Standby, in.PartnerServes, in.Status.Role = false, true, true, instance.RoleStandby
			return in
		}(), full},
		{"a standby with a recent full in its region's repository: a differential after a day", func() backupsched.Instance {
			in := primary("a", 1, backup(full, 25*time.Hour))
			in.Primary, in.Standby, in.PartnerServes, in.Status.Role = false, true, true, instance.RoleStandby
			return in
		}(), diff},
		{"the group's standby as desired, still a primary as observed (a failover): nothing", func() backupsched.Instance {
			in := primary("a", 0)
			in.Primary, in.Standby, in.PartnerServes = false, true, true
			return in
		}(), ""},
		{"the backup last asked was cancelled by a failover, not failed: asked again at once", func() backupsched.Instance {
			in := primary("a", 1, backup(full, 8*24*time.Hour))
			in.Status.Backup.Error, in.Status.Backup.Cancelled = "cancelled: the instance was promoted", true
			return in
		}(), full},
		{"the group's primary as observed, but not as desired (a failover): nothing", func() backupsched.Instance {
			in := primary("a", 0)
			in.Primary = false
			return in
		}(), ""},
		{"not Ready: nothing", func() backupsched.Instance {
			in := primary("a", 0)
			in.Status.Phase = instance.PhaseStopped
			return in
		}(), ""},
		{"no observed state: nothing", func() backupsched.Instance {
			in := primary("a", 0)
			in.Status = nil
			return in
		}(), ""},
		{"an operation holds it: nothing", func() backupsched.Instance {
			in := primary("a", 0)
			in.Busy = true
			return in
		}(), ""},
		{"backups off on the agent (no stanza): nothing", func() backupsched.Instance {
			in := primary("a", 0)
			in.Status.Backup = &instance.BackupStatus{Health: instance.BackupDegraded, Error: "pgBackRest is not installed"}
			return in
		}(), ""},
		{"a new stanza not created yet (the old one's backups still listed): nothing", func() backupsched.Instance {
			in := primary("a", 1, backup(full, 8*24*time.Hour))
			in.Record.BackupStanza = "a-1"
			return in
		}(), ""},
		{"a record of an older Fog: its stanza is its UID", func() backupsched.Instance {
			in := primary("a", 0)
			in.Record.BackupStanza = ""
			return in
		}(), full},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &edges{ins: []backupsched.Instance{tc.in}, now: t0}
			newScheduler(e).Tick(context.Background())
			got := ""
			if len(e.asks) > 0 {
				got = e.asks[0].typ
			}
			if got != tc.want || len(e.asks) > 1 {
				t.Fatalf("asked %+v, want %q", e.asks, tc.want)
			}
		})
	}
}

// An ask names the next number above both the record's and the agent's, is conditioned on
// the revision listed, and is made once: the next tick finds it under way.
func TestAskOnce(t *testing.T) {
	in := primary("a", 4)
	in.Status.Backup.Seq = 6 // the agent did more than this record knows (a record restored from an older copy)
	e := &edges{ins: []backupsched.Instance{in}, now: t0}
	s := newScheduler(e)
	s.Tick(context.Background())
	s.Tick(context.Background())
	if want := []ask{{"a", 7, instance.BackupFull, 10, t0}}; len(e.asks) != 1 || e.asks[0] != want[0] {
		t.Errorf("asks = %+v, want %+v", e.asks, want)
	}
}

// A failed backup is asked again once RetryAfter has passed since the scheduler first saw the
// failure, with a new number; a new scheduler (a new leader) counts afresh.
func TestRetryAfterFailure(t *testing.T) {
	in := primary("a", 3, backup(instance.BackupFull, 2*24*time.Hour), backup(instance.BackupDiff, 25*time.Hour))
	in.Status.Backup.Error = "backup: repository unreachable"
	e := &edges{ins: []backupsched.Instance{in}, now: t0}
	s := newScheduler(e)
	s.Tick(context.Background())
	e.now = t0.Add(backupsched.DefaultRetryAfter - time.Second)
	s.Tick(context.Background())
	if len(e.asks) != 0 {
		t.Fatalf("asked %+v before RetryAfter passed", e.asks)
	}
	// A new leader's scheduler has not seen the failure before: it waits its own RetryAfter.
	s2 := newScheduler(e)
	e.now = t0.Add(backupsched.DefaultRetryAfter)
	s2.Tick(context.Background())
	if len(e.asks) != 0 {
		t.Fatalf("a new scheduler asked %+v at once", e.asks)
	}
	s.Tick(context.Background())
	if len(e.asks) != 1 || e.asks[0].seq != 4 || e.asks[0].typ != instance.BackupDiff {
		t.Fatalf("after RetryAfter: asked %+v, want diff number 4", e.asks)
	}
}

// An ask that fails (the record changed meanwhile) is tried again on the next tick.
func TestAskFailsThenRetries(t *testing.T) {
	e := &edges{ins: []backupsched.Instance{primary("a", 0)}, now: t0, failAsk: errors.New("conflict")}
	s := newScheduler(e)
	s.Tick(context.Background())
	e.failAsk = nil
	s.Tick(context.Background())
	if len(e.asks) != 2 || e.asks[1].typ != instance.BackupFull || e.asks[1].seq != 1 {
		t.Errorf("asks = %+v, want the full backup 1 asked twice", e.asks)
	}
}

// The intervals are configurable and checked.
func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    backupsched.Config
		ok   bool
	}{
		{"defaults", backupsched.Defaults(), true},
		{"zero values take the defaults", backupsched.Config{}, true},
		{"daily full, hourly diff", backupsched.Config{FullInterval: 24 * time.Hour, DiffInterval: time.Hour}, true},
		{"diff as long as full", backupsched.Config{FullInterval: time.Hour, DiffInterval: time.Hour}, true},
		{"diff longer than full", backupsched.Config{FullInterval: time.Hour, DiffInterval: 2 * time.Hour}, false},
		{"diff longer than the default full", backupsched.Config{DiffInterval: 8 * 24 * time.Hour}, false},
		{"negative full", backupsched.Config{FullInterval: -time.Hour}, false},
		{"negative diff", backupsched.Config{DiffInterval: -time.Hour}, false},
	} {
		c := tc.c
		err := c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err == nil && (c.FullInterval <= 0 || c.DiffInterval <= 0 || c.RetryAfter <= 0) {
			t.Errorf("%s: after Validate %+v, want every interval positive", tc.name, c)
		}
	}
}
