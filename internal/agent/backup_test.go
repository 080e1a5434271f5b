package agent_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/agent/agenttest"
	"github.com/fogdb/fog/internal/instance"
)

// waitBackup reconciles uid until its status reports backup seq done.
func (w *world) waitBackup(uid string, seq int64) instance.Status {
	w.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := w.reconcile(uid)
		// Done: failed, or taken and then verified (the verification is reported after it).
		if b := st.Backup; b != nil && b.Seq == seq && b.Running == 0 && (b.Error != "" || b.Verify != nil && b.Verify.Seq == seq) {
			return st
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("backup %d of %s not reported done: %+v", seq, uid, st.Backup)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBackupSequence: the stanza is created once the server runs; a backup the spec asks for
// is queued once however often the worker passes while it runs, is published with its
// outcome, and is not taken again for the same number; a fence cancels a backup under way,
// which is then reported failed; the primary serves its standby's backups, which the
// standby's region takes from the standby.
func TestBackupSequence(t *testing.T) {
	w := newWorld(t)
	p := specP
	p.Backup = &instance.BackupSpec{Stanza: "st1", RetentionDays: 7}
	s := specS
	s.Backup = &instance.BackupSpec{Stanza: "st1", RetentionDays: 7, Seq: 1, Type: instance.BackupFull}
	w.set(p)
	w.set(s)
	w.converge("uid-p")
	st := w.converge("uid-s")
	if st.Backup == nil || st.Backup.Stanza != "st1" || w.pg("uid-s").Stanza == "" || !strings.Contains(w.pg("uid-s").ArchiveCommand, "st1") {
		t.Fatalf("the standby's stanza: status %+v, server %+v", st.Backup, w.pg("uid-s"))
	}
	st = w.converge("uid-p")
	if st.Backup == nil || st.Backup.Stanza != "st1" || st.Backup.Health != instance.BackupHealthy {
		t.Fatalf("the primary's backups: %+v", st.Backup)
	}

	// A backup held at the gate: passes while it runs queue nothing more.
	gate := make(chan struct{})
	w.net.PG("uid-p").Do(func(pg *agenttest.PG) { pg.BackupGate = gate })
	p = w.spec("uid-p")
	p.Backup.Seq, p.Backup.Type = 1, instance.BackupFull
	w.set(p)
	for range 3 {
		if st = w.reconcile("uid-p"); st.Backup.Running != 1 {
			t.Fatalf("while backup 1 runs the status reads %+v", st.Backup)
		}
	}
	close(gate)
	st = w.waitBackup("uid-p", 1)
	if st.Backup.Error != "" || len(st.Backup.Backups) != 1 || st.Backup.Backups[0].Seq != 1 || st.Backup.Backups[0].Type != instance.BackupFull {
		t.Fatalf("after backup 1: %+v", st.Backup)
	}
	if v := st.Backup.Verify; v == nil || v.Seq != 1 || v.Error != "" || st.Backup.Health != instance.BackupHealthy {
		t.Fatalf("backup 1's verification: %+v, health %s", v, st.Backup.Health)
	}
	if n := len(w.pg("uid-p").Taken); n != 1 {
		t.Errorf("%d backups taken for one number", n)
	}
	for range 3 {
		w.reconcile("uid-p")
	}
	if n := len(w.pg("uid-p").Taken); n != 1 {
		t.Errorf("%d backups taken for one number after more passes", n)
	}
	// The standby's region backs up from the standby, through the primary's server.
	if sp := w.pg("uid-p"); sp.Serving != "uid-s" {
		t.Errorf("the primary serves %q's backups, want uid-s's", sp.Serving)
	}
	st = w.waitBackup("uid-s", 1)
	if from := w.pg("uid-s").BackedUpFrom; st.Backup.Error != "" || len(from) != 1 || from[0].Stanza != "st1" || len(w.pg("uid-s").Taken) != 1 {
		t.Errorf("the standby's backup 1: %+v, taken through %+v", st.Backup, from)
	}

	// A fence cancels the backup under way.
	gate = make(chan struct{})
	w.net.PG("uid-p").Do(func(pg *agenttest.PG) { pg.BackupGate = gate })
	p = w.spec("uid-p")
	p.Backup.Seq, p.Backup.Type = 2, instance.BackupDiff
	w.set(p)
	if st = w.reconcile("uid-p"); st.Backup.Running != 2 {
		t.Fatalf("backup 2 not queued: %+v", st.Backup)
	}
	w.apply(pauseP)
	w.converge("uid-p")
	p = w.spec("uid-p")
	p.Paused, p.StopImmediately = false, false
	w.set(p)
	st = w.waitBackup("uid-p", 2)
	if !strings.Contains(st.Backup.Error, "cancelled: the instance was stopped") || len(w.pg("uid-p").Taken) != 1 {
		t.Errorf("a fenced backup reads %+v, %d taken", st.Backup, len(w.pg("uid-p").Taken))
	}
	if st.Backup.Health != instance.BackupDegraded {
		t.Errorf("health after a failed backup: %q", st.Backup.Health)
	}

	// A verification that finds something wrong: the backup stands, the repository is
	// Degraded until a later verification finds it whole.
	w.net.PG("uid-p").Do(func(pg *agenttest.PG) {
		pg.BackupGate, pg.VerifyError = nil, errors.New("backup 20261203-000000F: 1 invalid file")
	})
	p = w.spec("uid-p")
	p.Backup.Seq, p.Backup.Type = 3, instance.BackupDiff
	w.set(p)
	st = w.waitBackup("uid-p", 3)
	if st.Backup.Error != "" || st.Backup.Verify == nil || st.Backup.Verify.Seq != 3 || !strings.Contains(st.Backup.Verify.Error, "invalid file") ||
		st.Backup.Health != instance.BackupDegraded {
		t.Fatalf("after a verification that failed: %+v, verify %+v", st.Backup, st.Backup.Verify)
	}
	w.net.PG("uid-p").Do(func(pg *agenttest.PG) { pg.VerifyError = nil })
	p = w.spec("uid-p")
	p.Backup.Seq, p.Backup.Type = 4, instance.BackupDiff
	w.set(p)
	st = w.waitBackup("uid-p", 4)
	if st.Backup.Verify == nil || st.Backup.Verify.Seq != 4 || st.Backup.Verify.Error != "" || st.Backup.Health != instance.BackupHealthy {
		t.Fatalf("after a verification that passed again: %+v, verify %+v", st.Backup, st.Backup.Verify)
	}
}

// TestStanzaOfAJoiningMember: a group's secondary that the group has not seeded yet creates
// no copy of the group's stanza (its data directory is still a system of its own); its seed
// makes it create the stanza from the new pg_control, and so does a reseed.
func TestStanzaOfAJoiningMember(t *testing.T) {
	w := newWorld(t)
	stanzaCreates := func() int {
		n := 0
		for _, op := range w.pg("uid-s").Log {
			if op == "StanzaCreate" {
				n++
			}
		}
		return n
	}
	p := specP
	p.Backup = &instance.BackupSpec{Stanza: "st1", RetentionDays: 7}
	w.set(p)
	w.converge("uid-p")
	joining := specS
	joining.Role, joining.Upstream, joining.SeedGeneration = "", nil, 0
	joining.Backup = &instance.BackupSpec{Stanza: "st1", RetentionDays: 7}
	w.set(joining)
	st := w.converge("uid-s")
	if !w.pg("uid-s").Data || stanzaCreates() != 0 || st.Backup != nil && st.Backup.Stanza != "" {
		t.Fatalf("before its seed the joining member made the group's stanza: %d creates, status %+v", stanzaCreates(), st.Backup)
	}
	s := specS
	s.Backup = &instance.BackupSpec{Stanza: "st1", RetentionDays: 7}
	w.set(s)
	st = w.converge("uid-s")
	if stanzaCreates() != 1 || st.Backup == nil || st.Backup.Stanza != "st1" || st.SeededGeneration != 1 {
		t.Fatalf("after its seed: %d stanza creates, status %+v", stanzaCreates(), st.Backup)
	}
	s = w.spec("uid-s")
	s.SeedGeneration = 2
	w.set(s)
	if st = w.converge("uid-s"); stanzaCreates() != 2 || st.Backup.Stanza != "st1" || st.SeededGeneration != 2 {
		t.Fatalf("after a reseed: %d stanza creates, status %+v", stanzaCreates(), st.Backup)
	}
}

// TestStandbyBackupsFollowTheRoles: a standby's backup asked while its primary does not serve
// is not taken and reads cancelled (the schedule asks again at once, not after a failure's
// wait); one under way is cancelled when the standby is promoted, and the primary it was
// taken through stops serving once demoted, its Served cleared.
func TestStandbyBackupsFollowTheRoles(t *testing.T) {
	w := newWorld(t)
	p := specP
	p.Backup = &instance.BackupSpec{Stanza: "st1", RetentionDays: 7}
	s := specS
	s.Backup = &instance.BackupSpec{Stanza: "st1", RetentionDays: 7}
	w.set(p)
	w.set(s)
	w.converge("uid-p")
	w.converge("uid-s")

	// The primary fenced: it serves nothing, and a standby's backup asked then is not taken.
	w.apply(pauseP)
	if st := w.converge("uid-p"); st.Backup != nil && st.Backup.Served != nil || w.pg("uid-p").Serving != "" {
		t.Fatalf("a fenced primary still serves: %+v, %q", st.Backup, w.pg("uid-p").Serving)
	}
	s = w.spec("uid-s")
	s.Backup.Seq, s.Backup.Type = 1, instance.BackupFull
	w.set(s)
	st := w.waitBackup("uid-s", 1)
	if !st.Backup.Cancelled || st.Backup.Error == "" || len(w.pg("uid-s").Taken) != 0 {
		t.Fatalf("a standby's backup with no primary serving: %+v, %d taken", st.Backup, len(w.pg("uid-s").Taken))
	}

	// The primary back: it serves, and the next backup is taken through it; one held at the
	// gate is cancelled when the standby is promoted.
	p = w.spec("uid-p")
	p.Paused, p.StopImmediately = false, false
	w.set(p)
	if st := w.converge("uid-p"); st.Backup == nil || st.Backup.Served == nil {
		t.Fatalf("the primary back does not serve: %+v", st.Backup)
	}
	gate := make(chan struct{})
	defer close(gate)
	w.net.PG("uid-s").Do(func(pg *agenttest.PG) { pg.BackupGate = gate })
	s = w.spec("uid-s")
	s.Backup.Seq, s.Backup.Type = 2, instance.BackupFull
	w.set(s)
	if st = w.reconcile("uid-s"); st.Backup.Running != 2 {
		t.Fatalf("the standby's backup 2 not queued: %+v", st.Backup)
	}
	// A pass in the same role leaves it running.
	if st = w.reconcile("uid-s"); st.Backup.Running != 2 {
		t.Fatalf("the standby's backup 2 stopped by a pass in the same role: %+v", st.Backup)
	}
	promoted := w.spec("uid-s")
	promoted.Role, promoted.Upstream, promoted.Epoch = instance.RolePrimary, nil, 2
	w.set(promoted)
	st = w.waitBackup("uid-s", 2)
	if !st.Backup.Cancelled || !strings.Contains(st.Backup.Error, "cancelled") {
		t.Fatalf("a standby's backup across its promotion: %+v", st.Backup)
	}

	// The old primary demoted to the new one's standby: it stops serving.
	demoted := w.spec("uid-p")
	demoted.Role, demoted.Epoch, demoted.Slots = instance.RoleStandby, 2, nil
	demoted.Upstream = &instance.Upstream{UID: "uid-s", Region: "westus", Host: "127.0.0.2", Port: 5432, Slot: "fog_p"}
	w.set(demoted)
	st = w.reconcile("uid-p")
	if st.Backup != nil && st.Backup.Served != nil || w.pg("uid-p").Serving != "" {
		t.Errorf("a demoted primary still serves: %+v, %q", st.Backup, w.pg("uid-p").Serving)
	}
}
