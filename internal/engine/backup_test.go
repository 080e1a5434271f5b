package engine

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// bareEngine is an engine over a store of its own, with no agent: for what the engine writes.
func bareEngine(t *testing.T) (*Engine, store.Store) {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return New(Config{DNSSuffix: "fog.test", OperationTimeout: 10 * time.Second}, st, lease.NewObserver(time.Second, nil), slog.New(slog.DiscardHandler)), st
}

// Every instance's base spec asks for WAL archiving and the backup its record last asked; a
// record an older Fog wrote (no stanza, no retention) gets its UID and 7 days.
func TestBaseSpecCarriesBackup(t *testing.T) {
	e, _ := bareEngine(t)
	for _, tc := range []struct {
		name string
		m    resource.ManagedInstance
		want instance.BackupSpec
	}{
		{"recorded", resource.ManagedInstance{UID: "u1", BackupStanza: "u1-2", BackupSeq: 5, BackupType: instance.BackupDiff, BackupRetentionDays: 14},
			instance.BackupSpec{Stanza: "u1-2", RetentionDays: 14, Seq: 5, Type: instance.BackupDiff}},
		{"older record", resource.ManagedInstance{UID: "u2"}, instance.BackupSpec{Stanza: "u2", RetentionDays: 7}},
	} {
		got := e.BaseSpec(&tc.m).Backup
		if got == nil {
			t.Errorf("%s: BaseSpec has no Backup", tc.name)
			continue
		}
		if diff := cmp.Diff(tc.want, *got); diff != "" {
			t.Errorf("%s: BaseSpec().Backup differs (-want +got):\n%s", tc.name, diff)
		}
	}
}

// twoMembers writes the records of a group's two members and the group (through WriteGroup,
// as every group step writes).
func twoMembers(t *testing.T, e *Engine, st store.Store, p, s resource.ManagedInstance) {
	t.Helper()
	ctx := context.Background()
	for _, m := range []resource.ManagedInstance{p, s} {
		if err := store.Put(ctx, st, group.InstanceKey(m.Subscription, m.ResourceGroup, m.Name), m); err != nil {
			t.Fatal(err)
		}
	}
	g := &FailoverGroup{Name: "fg", ID: "gid", Epoch: 1, SeedGeneration: 1,
		Sides: [2]GroupSide{
			{Subscription: "sub", ResourceGroup: "rg", Location: "eastus", InstanceName: p.Name, InstanceUID: p.UID},
			{Subscription: "sub", ResourceGroup: "rg", Location: "westus", InstanceName: s.Name, InstanceUID: s.UID},
		},
		Members: [2]Member{{Role: instance.RolePrimary}, {Role: instance.RoleStandby, SeedGeneration: 1}},
	}
	if _, err := e.WriteGroup(ctx, g, 0); err != nil {
		t.Fatal(err)
	}
}

func member(uid, name, region string) resource.ManagedInstance {
	return resource.ManagedInstance{UID: uid, Subscription: "sub", ResourceGroup: "rg", Name: name, Location: region, Host: "10.0.0.1", Port: 5432, FailoverGroup: "fg"}
}

func specBackup(t *testing.T, st store.Store, region, uid string) instance.BackupSpec {
	t.Helper()
	var s instance.Spec
	if _, err := store.Get(context.Background(), st, instance.SpecKey(region, uid), &s); err != nil {
		t.Fatal(err)
	}
	if s.Backup == nil {
		t.Fatalf("the spec of %s has no Backup", uid)
	}
	return *s.Backup
}

// Each group step rewrites both members' whole specs: they keep the backup their records
// ask for, and the two members one stanza.
func TestGroupStepsCarryBackup(t *testing.T) {
	t.Run("recorded", func(t *testing.T) {
		e, st := bareEngine(t)
		p, s := member("uid-p", "mi-p", "eastus"), member("uid-s", "mi-s", "westus")
		p.BackupStanza, p.BackupSeq, p.BackupType = "uid-p", 3, instance.BackupFull
		s.BackupStanza, s.BackupSeq = "uid-p", 9
		twoMembers(t, e, st, p, s)
		// A failover's step: new epoch, roles swapped.
		if _, _, err := e.StepGroup(context.Background(), "fg", func(g *FailoverGroup) {
			g.Epoch++
			g.Primary = 1
			g.Members = [2]Member{{Role: instance.RoleStandby, Rewind: true}, {Role: instance.RolePrimary}}
		}); err != nil {
			t.Fatal(err)
		}
		if got, want := specBackup(t, st, "eastus", "uid-p"), (instance.BackupSpec{Stanza: "uid-p", RetentionDays: 7, Seq: 3, Type: instance.BackupFull}); got != want {
			t.Errorf("side 0's Backup after a step = %+v, want %+v", got, want)
		}
		if got, want := specBackup(t, st, "westus", "uid-s"), (instance.BackupSpec{Stanza: "uid-p", RetentionDays: 7, Seq: 9}); got != want {
			t.Errorf("side 1's Backup after a step = %+v, want %+v", got, want)
		}
	})
	t.Run("group of an older Fog", func(t *testing.T) {
		e, st := bareEngine(t)
		twoMembers(t, e, st, member("uid-p", "mi-p", "eastus"), member("uid-s", "mi-s", "westus"))
		for _, side := range []struct{ region, uid string }{{"eastus", "uid-p"}, {"westus", "uid-s"}} {
			if got := specBackup(t, st, side.region, side.uid).Stanza; got != "uid-p" {
				t.Errorf("%s's stanza = %q, want side 0's uid, uid-p", side.uid, got)
			}
		}
	})
}

// AskBackup writes the backup's number and type into the record and the spec at once, and
// nothing when the record changed since the scheduler read it.
func TestAskBackup(t *testing.T) {
	ctx := context.Background()
	e, st := bareEngine(t)
	m := resource.ManagedInstance{UID: "uid-a", Subscription: "sub", ResourceGroup: "rg", Name: "mi-a", Location: "eastus", BackupStanza: "uid-a", BackupSeq: 4}
	key := group.InstanceKey("sub", "rg", "mi-a")
	if err := store.Put(ctx, st, key, m); err != nil {
		t.Fatal(err)
	}
	rev, err := store.Get(ctx, st, key, &m)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.AskBackup(ctx, key, rev-1, 5, instance.BackupFull, time.Now()); !errors.Is(err, store.ErrConflict) {
		t.Errorf("AskBackup at an older revision = %v, want ErrConflict", err)
	}
	if err := e.AskBackup(ctx, key, rev, 4, instance.BackupFull, time.Now()); err == nil || errors.Is(err, store.ErrConflict) {
		t.Errorf("AskBackup with the number last asked = %v, want an error", err)
	}
	if _, err := store.Get(ctx, st, instance.SpecKey("eastus", "uid-a"), &instance.Spec{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused ask wrote a spec (%v)", err)
	}
	asked := time.Date(2026, 12, 3, 4, 0, 0, 0, time.UTC)
	if err := e.AskBackup(ctx, key, rev, 5, instance.BackupFull, asked); err != nil {
		t.Fatal(err)
	}
	var got resource.ManagedInstance
	if _, err := store.Get(ctx, st, key, &got); err != nil {
		t.Fatal(err)
	}
	if got.BackupSeq != 5 || got.BackupType != instance.BackupFull || !got.BackupAskedAt.Equal(asked) {
		t.Errorf("record after AskBackup: seq %d, type %q, asked %s; want 5, full, %s", got.BackupSeq, got.BackupType, got.BackupAskedAt, asked)
	}
	if b := specBackup(t, st, "eastus", "uid-a"); b.Seq != 5 || b.Type != instance.BackupFull || b.Stanza != "uid-a" {
		t.Errorf("spec after AskBackup: %+v, want seq 5, full, stanza uid-a", b)
	}
}

// A group member's ask writes its group spec (role, peer), not a standalone one.
func TestAskBackupOfAGroupMember(t *testing.T) {
	ctx := context.Background()
	e, st := bareEngine(t)
	twoMembers(t, e, st, member("uid-p", "mi-p", "eastus"), member("uid-s", "mi-s", "westus"))
	key := group.InstanceKey("sub", "rg", "mi-p")
	var m resource.ManagedInstance
	rev, err := store.Get(ctx, st, key, &m)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.AskBackup(ctx, key, rev, 1, instance.BackupFull, time.Now()); err != nil {
		t.Fatal(err)
	}
	var s instance.Spec
	if _, err := store.Get(ctx, st, instance.SpecKey("eastus", "uid-p"), &s); err != nil {
		t.Fatal(err)
	}
	if s.Role != instance.RolePrimary || s.GroupID != "gid" || s.Peer == nil || s.Backup == nil || s.Backup.Seq != 1 {
		t.Errorf("spec after AskBackup: role %q, group %q, peer %v, backup %+v; want the group's primary asking for backup 1", s.Role, s.GroupID, s.Peer, s.Backup)
	}
}

// askingStore is a store through which, just before the first read of one spec, the backup
// schedule asks for a backup of that instance: between a group step's read of the records
// and its write of the specs.
type askingStore struct {
	store.Store
	specKey string
	ask     func()
}

func (a *askingStore) Get(ctx context.Context, key string) (store.KV, error) {
	if key == a.specKey && a.ask != nil {
		ask := a.ask
		a.ask = nil
		ask()
	}
	return a.Store.Get(ctx, key)
}

// A group step that read a member's record before the schedule asked for a backup (record
// and spec in one transaction) must not write that member's spec from the older record: the
// step is redone from the new one, and the spec keeps asking for the backup.
func TestGroupStepAfterAnAskKeepsIt(t *testing.T) {
	ctx := context.Background()
	e, st := bareEngine(t)
	twoMembers(t, e, st, member("uid-p", "mi-p", "eastus"), member("uid-s", "mi-s", "westus"))
	key := group.InstanceKey("sub", "rg", "mi-p")
	var m resource.ManagedInstance
	rev, err := store.Get(ctx, st, key, &m)
	if err != nil {
		t.Fatal(err)
	}
	as := &askingStore{Store: st, specKey: instance.SpecKey("eastus", "uid-p")}
	as.ask = func() {
		if err := e.AskBackup(ctx, key, rev, 1, instance.BackupFull, time.Now()); err != nil {
			t.Errorf("AskBackup: %v", err)
		}
	}
	stepping := New(e.cfg, as, e.leases, e.log)
	if _, _, err := stepping.StepGroup(ctx, "fg", func(g *FailoverGroup) { g.Epoch++ }); err != nil {
		t.Fatal(err)
	}
	if as.ask != nil {
		t.Fatal("the step never read the spec")
	}
	if b := specBackup(t, st, "eastus", "uid-p"); b.Seq != 1 || b.Type != instance.BackupFull {
		t.Errorf("spec after the step: %+v, want backup 1 (full) still asked", b)
	}
	var s instance.Spec
	if _, err := store.Get(ctx, st, instance.SpecKey("eastus", "uid-p"), &s); err != nil || s.Epoch != 2 {
		t.Errorf("spec after the step: epoch %d (%v), want the step's 2", s.Epoch, err)
	}
}
