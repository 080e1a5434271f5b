package controller

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/ltr"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// The leader's LTR tick judges the full backups an agent lists with the database's policy,
// from the first that ends after the policy was set: the first of each week is kept, a
// second in the same week is not; the labels kept reach the instance's record and spec; a
// record whose time passed goes, and with it the label; a dropped database's records stay,
// marked with the drop's time.
func TestLTRJudge(t *testing.T) {
	c := openTestController(t)
	ctx := context.Background()
	monday := time.Date(2099, 3, 1, 1, 0, 0, 0, time.UTC)
	for monday.Weekday() != time.Monday {
		monday = monday.AddDate(0, 0, 1)
	}
	full := func(at time.Time) instance.Backup {
		return instance.Backup{Label: at.Format("20060102-150405") + "F", Type: instance.BackupFull, Start: at.Add(-time.Minute), Stop: at}
	}
	before := full(monday.Add(-2 * time.Hour)) // before the policy
	f1, f2, f3 := full(monday), full(monday.AddDate(0, 0, 2)), full(monday.AddDate(0, 0, 7))
	diff := instance.Backup{Label: f1.Label + "_" + monday.AddDate(0, 0, 1).Format("20060102-150405") + "D", Type: instance.BackupDiff, Stop: monday.AddDate(0, 0, 1)}
	m := &resource.ManagedInstance{UID: "uid-l", Subscription: "sub", ResourceGroup: "rg", Name: "mi-l", Location: "eastus", Host: "10.0.0.1", Port: 5432,
		DNSZone: "zone", ProvisioningState: resource.ProvisioningSucceeded, CreatedAt: monday.AddDate(0, -1, 0)}
	if err := store.Put(ctx, c.st, miKey("sub", "rg", "mi-l"), m); err != nil {
		t.Fatal(err)
	}
	status := func(dbs []instance.DB, dropped []instance.DroppedDB, bs ...instance.Backup) {
		t.Helper()
		st := instance.Status{Databases: dbs, Dropped: dropped, Backup: &instance.BackupStatus{Stanza: "uid-l", CheckedAt: time.Now(), Backups: bs}}
		if err := store.Put(ctx, c.st, instance.StatusKey("eastus", "uid-l"), st); err != nil {
			t.Fatal(err)
		}
	}
	shop := []instance.DB{{Name: "shop", Created: monday.AddDate(0, 0, -20)}, {Name: "late", Created: monday.AddDate(0, 0, 3)}}
	for _, db := range []string{"shop", "late"} {
		pol := resource.LongTermRetention{InstanceUID: "uid-l", Database: db, Weekly: "P2W", Monthly: "PT0S", Yearly: "PT0S", UpdatedAt: monday.Add(-time.Hour)}
		if err := store.Put(ctx, c.st, resource.LongTermRetentionKey("uid-l", db), pol); err != nil {
			t.Fatal(err)
		}
	}
	status(shop, nil, before, f1, diff, f2, f3)
	if err := c.ltrJudge(ctx, c.eng, monday.AddDate(0, 0, 8)); err != nil {
		t.Fatal(err)
	}
	recs, _, err := c.ltrRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Database+" "+r.Label+" "+r.Expires.Format(time.RFC3339))
	}
	slices.Sort(got)
	want := []string{
		"late " + f3.Label + " " + f3.Stop.AddDate(0, 0, 14).Format(time.RFC3339), // made after f1 and f2
		"shop " + f1.Label + " " + f1.Stop.AddDate(0, 0, 14).Format(time.RFC3339),
		"shop " + f3.Label + " " + f3.Stop.AddDate(0, 0, 14).Format(time.RFC3339),
	}
	if !slices.Equal(got, want) {
		t.Errorf("LTR records = %q, want %q", got, want)
	}
	wantKeep := []ltr.Keep{{Label: f1.Label, Until: f1.Stop.AddDate(0, 0, 14)}, {Label: f3.Label, Until: f3.Stop.AddDate(0, 0, 14)}}
	if k := storedInstance(t, c.st, "rg", "mi-l").BackupKeep; !slices.Equal(k, wantKeep) {
		t.Errorf("the instance's record keeps %v, want %v", k, wantKeep)
	}
	if k := storedSpec(t, c.st, "eastus", "uid-l").BackupKeep; !slices.Equal(k, wantKeep) {
		t.Errorf("the instance's spec keeps %v, want %v", k, wantKeep)
	}

	// Judged once: a tick again changes nothing. Then shop is dropped; f1's time passes.
	if err := c.ltrJudge(ctx, c.eng, monday.AddDate(0, 0, 8)); err != nil {
		t.Fatal(err)
	}
	if recs2, _, _ := c.ltrRecords(ctx); len(recs2) != 3 {
		t.Errorf("a second tick left %d records, want 3", len(recs2))
	}
	dropped := monday.AddDate(0, 0, 10)
	status(shop[1:], []instance.DroppedDB{{Name: "shop", Deleted: dropped}}, f1, f3)
	if err := c.ltrJudge(ctx, c.eng, monday.AddDate(0, 0, 15)); err != nil {
		t.Fatal(err)
	}
	recs, _, _ = c.ltrRecords(ctx)
	got = nil
	for _, r := range recs {
		got = append(got, r.Database+" "+r.Label+" "+r.DatabaseDeleted.Format(time.RFC3339))
	}
	slices.Sort(got)
	want = []string{"late " + f3.Label + " " + time.Time{}.Format(time.RFC3339), "shop " + f3.Label + " " + dropped.Format(time.RFC3339)}
	if !slices.Equal(got, want) {
		t.Errorf("after the drop and f1's time: records %q, want %q", got, want)
	}
	wantKeep = wantKeep[1:]
	if k := storedSpec(t, c.st, "eastus", "uid-l").BackupKeep; !slices.Equal(k, wantKeep) {
		t.Errorf("the instance's spec keeps %v, want %v", k, wantKeep)
	}

	// The view at Azure's path, and a delete of one database's record: the other keeps the
	// label.
	q := LTRQuery{Subscription: "sub", Location: "eastus", Instance: "mi-l", Database: "shop"}
	vs, err := c.ListLTRBackups(ctx, q)
	if err != nil || len(vs) != 1 || vs[0].Properties.DatabaseDeletionTime == nil || vs[0].Name != "uid-l;"+f3.Label {
		t.Fatalf("ListLTRBackups = %+v, %v", vs, err)
	}
	if _, err := resource.ParseLTRBackupID(vs[0].ID); err != nil {
		t.Errorf("the listed id %s does not parse: %v", vs[0].ID, err)
	}
	if _, err := c.DeleteLTRBackup(ctx, q, vs[0].Name); err != nil {
		t.Fatal(err)
	}
	if k := storedSpec(t, c.st, "eastus", "uid-l").BackupKeep; !slices.Equal(k, wantKeep) {
		t.Errorf("after deleting shop's record the spec keeps %v, want late's %v", k, wantKeep)
	}
	q.Database = "late"
	vs, _ = c.ListLTRBackups(ctx, q)
	if _, err := c.DeleteLTRBackup(ctx, q, vs[0].Name); err != nil {
		t.Fatal(err)
	}
	if k := storedSpec(t, c.st, "eastus", "uid-l").BackupKeep; len(k) != 0 {
		t.Errorf("with no record left the spec keeps %v", k)
	}
}
