package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/server"
)

// TestLongTermRetention: rows committed, then a database's LTR policy set through the CLI
// (az sql midb ltr-policy set's flags); the next full backup is the first of its week under
// the policy, and the API lists it at Azure's location path as an LTR backup of the database,
// kept for the weekly retention. More rows are committed; the backup restored through the CLI
// (ltr-backup restore --backup-id) as a new database has exactly the rows committed before
// it. Bad policies and restores get their codes.
func TestLongTermRetention(t *testing.T) {
	if _, err := exec.LookPath("pgbackrest"); err != nil {
		t.Skip("pgBackRest is not installed (CI installs Debian's pgbackrest)")
	}
	ctx := context.Background()
	// Full backups every 15 seconds and the leader's backup tick every 3: a full backup that
	// ends after the policy is set comes soon, whenever the instance's first one ended.
	f := startFog(t, "", withBackups, func(c *server.Config) {
		c.Controller.Backup.FullInterval, c.Controller.Backup.DiffInterval = 15*time.Second, 15*time.Second
		c.Controller.BackupTick = 3 * time.Second
	})
	inst := f.createInstance("rg-ltr", "ltr1", "eastus", nil)
	started := time.Now()
	dbPath := miPath("rg-ltr", "ltr1") + "/databases/"
	f.mustSucceed(f.call("PUT", dbPath+"shop", map[string]any{}))
	c := mustConnect(t, f.info.CACert, inst, "shop")
	for _, sql := range []string{"CREATE TABLE orders (id int PRIMARY KEY, item text)",
		"INSERT INTO orders SELECT g, 'kept' FROM generate_series(1, 25) g"} {
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}

	if out, stderr, err := f.runCLI("", "sql", "midb", "ltr-policy", "set", "-g", "rg-ltr", "--mi", "ltr1", "-n", "shop",
		"--weekly-retention", "P2W", "--monthly-retention", "P6M"); err != nil {
		t.Fatalf("fog sql midb ltr-policy set: %v\n%s\n%s", err, out, stderr)
	}
	out, stderr, err := f.runCLI("", "sql", "midb", "ltr-policy", "show", "-g", "rg-ltr", "--mi", "ltr1", "-n", "shop")
	if err != nil || !strings.Contains(out, `"weeklyRetention": "P2W"`) || !strings.Contains(out, `"yearlyRetention": "PT0S"`) {
		t.Errorf("ltr-policy show: %v %s %s", err, out, stderr)
	}

	list := "/subscriptions/" + sub + "/providers/Microsoft.Sql/locations/eastus/longTermRetentionManagedInstances/ltr1/longTermRetentionDatabases/shop/longTermRetentionManagedInstanceBackups"
	var backup map[string]any
	eventually(t, 3*time.Minute, "an LTR backup listed", func() bool {
		time.Sleep(time.Second)
		r := f.call("GET", list, nil)
		var l struct{ Value []map[string]any }
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &l) != nil || len(l.Value) == 0 {
			return false
		}
		backup = l.Value[0]
		return true
	})
	t.Logf("LTR backup listed %v after the instance was ready", time.Since(started).Round(time.Second))
	p := props(backup)
	bt, _ := time.Parse(time.RFC3339Nano, p["backupTime"].(string))
	exp, _ := time.Parse(time.RFC3339Nano, p["backupExpirationTime"].(string))
	if p["managedInstanceName"] != "ltr1" || p["databaseName"] != "shop" || p["backupStorageRedundancy"] != "Geo" ||
		!exp.Equal(bt.AddDate(0, 6, 0)) || p["databaseDeletionTime"] != nil {
		t.Errorf("the LTR backup: %v; want ltr1/shop, Geo, kept six months (the first of its month)", backup)
	}
	id := backup["id"].(string)
	if g := f.call("GET", id, nil); g.Status != http.StatusOK {
		t.Errorf("GET %s = %d %s", id, g.Status, g.Body)
	}
	rgList := "/subscriptions/" + sub + "/resourceGroups/rg-ltr/providers/Microsoft.Sql/locations/eastus/longTermRetentionManagedInstanceBackups"
	if r := f.call("GET", rgList, nil); r.Status != http.StatusOK || !strings.Contains(string(r.Body), backup["name"].(string)) {
		t.Errorf("the resource group's LTR backups in the location = %d %s", r.Status, r.Body)
	}
	out, stderr, err = f.runCLI("", "sql", "midb", "ltr-backup", "list", "-l", "eastus", "--mi", "ltr1", "-d", "shop")
	if err != nil || !strings.Contains(out, backup["name"].(string)) {
		t.Errorf("ltr-backup list: %v %s %s", err, out, stderr)
	}

	// Rows after the backup are not in it.
	if _, err := c.Exec(ctx, "INSERT INTO orders SELECT g, 'later' FROM generate_series(26, 40) g"); err != nil {
		t.Fatal(err)
	}
	if out, stderr, err := f.runCLI("", "sql", "midb", "ltr-backup", "restore", "--backup-id", id,
		"--dest-database", "shop_ltr", "--dest-mi", "ltr1", "--dest-resource-group", "rg-ltr"); err != nil {
		t.Fatalf("fog sql midb ltr-backup restore: %v\n%s\n%s", err, out, stderr)
	}
	r := mustConnect(t, f.info.CACert, inst, "shop_ltr")
	var n, later int
	if err := r.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE item = 'later') FROM orders").Scan(&n, &later); err != nil {
		t.Fatalf("the restored database: %v", err)
	}
	if n != 25 || later != 0 {
		t.Errorf("the LTR backup restored has %d rows, %d of them committed after it; want the 25 before it", n, later)
	}
	t.Logf("restored %v after the instance was ready", time.Since(started).Round(time.Second))

	// Refused, with codes.
	policy := miPath("rg-ltr", "ltr1") + "/databases/shop/backupLongTermRetentionPolicies/default"
	restore := func(id string) map[string]any {
		return map[string]any{"properties": map[string]any{"createMode": "RestoreLongTermRetentionBackup", "longTermRetentionBackupResourceId": id}}
	}
	unknown := list + "/" + strings.Split(backup["name"].(string), ";")[0] + ";20200101-000000F"
	for _, tc := range []struct {
		name, method, path string
		body               map[string]any
		status             int
		code               string
	}{
		{"eleven years", "PUT", policy, map[string]any{"properties": map[string]any{"yearlyRetention": "P11Y", "weekOfYear": 5}}, 400, "InvalidParameterValue"},
		{"no duration", "PUT", policy, map[string]any{"properties": map[string]any{"weeklyRetention": "weekly"}}, 400, "InvalidParameterValue"},
		{"week 53", "PUT", policy, map[string]any{"properties": map[string]any{"yearlyRetention": "P1Y", "weekOfYear": 53}}, 400, "InvalidParameterValue"},
		{"yearly without a week", "PUT", policy, map[string]any{"properties": map[string]any{"yearlyRetention": "P1Y"}}, 400, "InvalidParameterValue"},
		{"another policy name", "PUT", strings.TrimSuffix(policy, "default") + "other", map[string]any{"properties": map[string]any{}}, 400, "InvalidParameterValue"},
		{"no backup id", "PUT", dbPath + "x1", restore(""), 400, "InvalidRestoreParameters"},
		{"a malformed backup id", "PUT", dbPath + "x2", restore("/subscriptions/" + sub + "/backups/1"), 400, "InvalidLongTermRetentionBackupResourceId"},
		{"an unknown backup", "PUT", dbPath + "x3", restore(unknown), 404, "ResourceNotFound"},
		{"a name that exists", "PUT", dbPath + "shop_ltr", restore(id), 409, "DatabaseAlreadyExists"},
		{"GET an unknown backup", "GET", unknown, nil, 404, "ResourceNotFound"},
	} {
		if got := f.call(tc.method, tc.path, tc.body); got.Status != tc.status || got.code() != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, got.Status, got.Body, tc.status, tc.code)
		}
	}

	// Deleted, it is listed no more.
	if out, stderr, err := f.runCLI("", "sql", "midb", "ltr-backup", "delete", "--backup-id", id, "--yes"); err != nil {
		t.Fatalf("ltr-backup delete: %v %s %s", err, out, stderr)
	}
	if g := f.call("GET", id, nil); g.Status != http.StatusNotFound {
		t.Errorf("GET a deleted LTR backup = %d %s", g.Status, g.Body)
	}
}
