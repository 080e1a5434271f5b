package controller

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/resource"
)

// A database's backup properties come from its instance's backups, in whatever order the
// repository lists them: the earliest point is the second after the oldest backup's end, held to the
// database's creation and its retention; the last backup is the one that ended last.
func TestBackupProperties(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return now.Add(-d) }
	full := instance.Backup{Type: instance.BackupFull, Start: at(50 * time.Hour), Stop: at(49 * time.Hour), Size: 100}
	diff := instance.Backup{Type: instance.BackupDiff, Start: at(3 * time.Hour), Stop: at(3*time.Hour - 90*time.Second), Size: 120}
	incr := instance.Backup{Type: "incr", Start: at(time.Hour), Stop: at(time.Hour - 2*time.Second), Size: 121}
	old := instance.Backup{Type: instance.BackupFull, Start: at(30 * 24 * time.Hour), Stop: at(30*24*time.Hour - time.Minute), Size: 90}
	ptr := func(v time.Time) *time.Time { return &v }
	n := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		name    string
		b       *instance.BackupStatus
		created time.Time
		days    int
		want    resource.DatabaseProperties
	}{
		{"no backup status", nil, at(100 * time.Hour), 7, resource.DatabaseProperties{}},
		{"no backup yet", &instance.BackupStatus{}, at(100 * time.Hour), 7, resource.DatabaseProperties{}},
		{"one full", &instance.BackupStatus{Backups: []instance.Backup{full}}, at(100 * time.Hour), 7,
			resource.DatabaseProperties{EarliestRestorePoint: ptr(full.Stop.Truncate(time.Second).Add(time.Second)), LastBackupTime: ptr(full.Stop), LastBackupType: "Full", LastBackupSizeBytes: n(100), LastBackupDurationSeconds: n(3600)}},
		{"listed out of order", &instance.BackupStatus{Backups: []instance.Backup{diff, full}}, at(100 * time.Hour), 7,
			resource.DatabaseProperties{EarliestRestorePoint: ptr(full.Stop.Truncate(time.Second).Add(time.Second)), LastBackupTime: ptr(diff.Stop), LastBackupType: "Differential", LastBackupSizeBytes: n(120), LastBackupDurationSeconds: n(90)}},
		{"made after the oldest backup", &instance.BackupStatus{Backups: []instance.Backup{full, diff}}, at(10 * time.Hour), 7,
			resource.DatabaseProperties{EarliestRestorePoint: ptr(at(10 * time.Hour)), LastBackupTime: ptr(diff.Stop), LastBackupType: "Differential", LastBackupSizeBytes: n(120), LastBackupDurationSeconds: n(90)}},
		{"retention shorter than the repository keeps", &instance.BackupStatus{Backups: []instance.Backup{old, full, incr}}, at(60 * 24 * time.Hour), 1,
			resource.DatabaseProperties{EarliestRestorePoint: ptr(at(24 * time.Hour)), LastBackupTime: ptr(incr.Stop), LastBackupType: "Incremental", LastBackupSizeBytes: n(121), LastBackupDurationSeconds: n(2)}},
	} {
		var got resource.DatabaseProperties
		backupProperties(&got, tc.b, tc.created, tc.days, now)
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s: backupProperties (-want +got):\n%s", tc.name, d)
		}
	}
}
