package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/fogclient"
	"github.com/fogdb/fog/internal/pgbackrest"
)

// TestShortTermRetentionAndBackupProperties: a database's retention policy set with the CLI
// reads back through the CLI and the client, and the database shows its earliest restore
// point and its instance's last backup once the schedule's first full backup (asked about
// 30 s after the instance is Ready) is in the repository.
func TestShortTermRetentionAndBackupProperties(t *testing.T) {
	if _, err := pgbackrest.FindBinary(""); err != nil {
		t.Skipf("pgBackRest is not installed (Debian: apt-get install pgbackrest), so instances take no backups: %v", err)
	}
	f := startFog(t, "", withQuickBackups)
	f.createInstance("rg-str", "str1", "eastus", nil)
	if _, _, err := f.runCLI("", "sql", "midb", "create", "-g", "rg-str", "--mi", "str1", "-n", "sales"); err != nil {
		t.Fatalf("midb create: %v", err)
	}

	out, _, err := f.runCLI("", "sql", "midb", "short-term-retention-policy", "set", "-g", "rg-str", "--mi", "str1", "-n", "sales", "--retention-days", "14")
	var set map[string]any
	if err != nil || json.Unmarshal([]byte(out), &set) != nil {
		t.Fatalf("short-term-retention-policy set = %q, %v", out, err)
	}
	if set["retentionDays"] != 14.0 || set["name"] != "default" || set["resourceGroup"] != "rg-str" {
		t.Errorf("set printed %v, want the policy with 14 days", set)
	}
	if out, _, err := f.runCLI("", "sql", "midb", "short-term-retention-policy", "show", "-g", "rg-str", "--mi", "str1", "-n", "sales", "--query", "retentionDays", "-o", "tsv"); err != nil || strings.TrimSpace(out) != "14" {
		t.Errorf("show --query retentionDays = %q, %v; want 14", out, err)
	}
	p, err := f.api.GetShortTermRetentionPolicy(context.Background(), "rg-str", "str1", "sales")
	if err != nil || p.Properties.RetentionDays == nil || *p.Properties.RetentionDays != 14 {
		t.Errorf("GET policy = %+v, %v; want 14 days", p, err)
	}
	if _, _, err := f.runCLI("", "sql", "midb", "short-term-retention-policy", "set", "-g", "rg-str", "--mi", "str1", "-n", "sales", "--retention-days", "36"); err == nil || !strings.Contains(err.Error(), "InvalidBackupRetentionPeriod") {
		t.Errorf("set 36 = %v, want InvalidBackupRetentionPeriod", err)
	}

	// Bounded and generous: the schedule ticks every 30 s and waits a whole period after
	// the leader starts, then a full backup of a small instance takes seconds.
	deadline := time.Now().Add(3 * time.Minute)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last *fogclient.Database
	for {
		d, err := f.api.GetDatabase(context.Background(), "rg-str", "str1", "sales")
		if err != nil {
			t.Fatal(err)
		}
		last = d
		if d.Properties.EarliestRestorePoint != nil && d.Properties.LastBackupTime != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no earliestRestorePoint and lastBackupTime within 3 minutes: %+v", d.Properties)
		}
		<-tick.C
	}
	pr := last.Properties
	// The earliest restore point is the whole second after the oldest backup ended (pgBackRest
	// refuses a target in the second a backup ended), so just after the first backup it may
	// lie up to a second ahead of now.
	if latest := pr.LastBackupTime.Truncate(time.Second).Add(time.Second); pr.CreationDate == nil ||
		pr.EarliestRestorePoint.Before(*pr.CreationDate) || pr.EarliestRestorePoint.After(latest) {
		t.Errorf("earliestRestorePoint %v: want between the creation %v and the second after the backup ended (%v)", pr.EarliestRestorePoint, pr.CreationDate, latest)
	}
	if pr.LastBackupType != "Full" || pr.LastBackupSizeBytes == nil || *pr.LastBackupSizeBytes <= 0 || pr.LastBackupDurationSeconds == nil || *pr.LastBackupDurationSeconds < 0 {
		t.Errorf("last backup: type %q, size %v, duration %v; want a full backup with a size", pr.LastBackupType, pr.LastBackupSizeBytes, pr.LastBackupDurationSeconds)
	} else {
		t.Logf("created %s, earliestRestorePoint %s, last backup %s at %s: %d bytes in %d s", pr.CreationDate, pr.EarliestRestorePoint, pr.LastBackupType, pr.LastBackupTime,
			*pr.LastBackupSizeBytes, *pr.LastBackupDurationSeconds)
	}
	out, _, err = f.runCLI("", "sql", "midb", "show", "-g", "rg-str", "--mi", "str1", "-n", "sales")
	var shown map[string]any
	if err != nil || json.Unmarshal([]byte(out), &shown) != nil || shown["earliestRestorePoint"] == nil || shown["lastBackupType"] != "Full" {
		t.Errorf("midb show = %q, %v; want earliestRestorePoint and lastBackupType at the top level", out, err)
	}
}
