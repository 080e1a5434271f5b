package e2e

import (
	"context"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPointInTimeRestore: rows committed, a time taken, DROP TABLE and more writes; the
// database restored to that time through the CLI (az sql midb restore's flags) as a new
// database has exactly the rows committed before it, and the source keeps its present. Bad
// restores get their codes: a time outside the window, an existing name, a missing source,
// another instance, an unknown create mode.
func TestPointInTimeRestore(t *testing.T) {
	if _, err := exec.LookPath("pgbackrest"); err != nil {
		t.Skip("pgBackRest is not installed (CI installs Debian's pgbackrest)")
	}
	ctx := context.Background()
	f := startFog(t, "", withBackups)
	inst := f.createInstance("rg-pitr", "pitr1", "eastus", nil)
	f.mustSucceed(f.call("PUT", miPath("rg-pitr", "pitr1")+"/databases/shop", map[string]any{}))
	dbPath := miPath("rg-pitr", "pitr1") + "/databases/"

	// Before the first backup there is nothing to restore from.
	early := f.call("PUT", dbPath+"early", map[string]any{"properties": map[string]any{
		"createMode": "PointInTimeRestore", "sourceDatabaseId": dbPath + "shop", "restorePointInTime": time.Now().UTC().Format(time.RFC3339)}})
	if early.Status == http.StatusAccepted {
		f.wait(early) // the first backup was quick; the restore is checked below anyway
	} else if early.code() != "NoBackupAvailable" && early.code() != "RestorePointInTimeOutOfRange" {
		t.Errorf("a restore before any backup = %d %s, want NoBackupAvailable", early.Status, early.Body)
	}

	// The scheduler takes the first full backup shortly after the instance is Ready.
	eventually(t, 3*time.Minute, "the first backup", func() bool {
		r := f.call("GET", dbPath+"shop", nil)
		return r.Status == http.StatusOK && props(r.json(t))["earliestRestorePoint"] != nil
	})
	time.Sleep(1100 * time.Millisecond) // past the second the backup ended in

	c := mustConnect(t, f.info.CACert, inst, "shop")
	exec1 := func(sql string) {
		t.Helper()
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec1("CREATE TABLE orders (id int PRIMARY KEY, item text)")
	for i := 1; i <= 50; i++ {
		exec1("INSERT INTO orders VALUES (" + strconv.Itoa(i) + ", 'before')")
	}
	time.Sleep(50 * time.Millisecond)
	var at time.Time
	if err := c.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&at); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	for i := 51; i <= 60; i++ {
		exec1("INSERT INTO orders VALUES (" + strconv.Itoa(i) + ", 'after')")
	}
	exec1("DROP TABLE orders")
	exec1("CREATE TABLE later (x int)")

	out, stderr, err := f.runCLI("", "sql", "midb", "restore", "-g", "rg-pitr", "--mi", "pitr1", "-n", "shop",
		"--dest-name", "shop_restored", "--time", at.UTC().Format("2006-01-02T15:04:05.999999"))
	if err != nil {
		t.Fatalf("fog sql midb restore: %v\n%s\n%s", err, out, stderr)
	}
	r := mustConnect(t, f.info.CACert, inst, "shop_restored")
	var n, after int
	if err := r.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE item = 'after') FROM orders").Scan(&n, &after); err != nil {
		t.Fatalf("the restored database: %v", err)
	}
	if n != 50 || after != 0 {
		t.Errorf("the restored database has %d rows, %d of them committed after the time; want the 50 committed before it", n, after)
	}
	var later bool
	if err := r.QueryRow(ctx, "SELECT to_regclass('public.later') IS NOT NULL").Scan(&later); err != nil || later {
		t.Errorf("the restored database has a table made after the time (%v)", err)
	}
	var owner string
	if err := r.QueryRow(ctx, "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'").Scan(&owner); err != nil || owner != "fogadmin" {
		t.Errorf("the restored table's owner = %q (%v), want the admin", owner, err)
	}
	// The source keeps its present.
	if err := c.QueryRow(ctx, "SELECT to_regclass('public.orders') IS NULL AND to_regclass('public.later') IS NOT NULL").Scan(&later); err != nil || !later {
		t.Errorf("the source database changed (%v)", err)
	}
	if g := f.call("GET", dbPath+"shop_restored", nil); g.Status != http.StatusOK {
		t.Errorf("GET the restored database = %d %s", g.Status, g.Body)
	}

	// Refused, with codes.
	body := func(src, when string) map[string]any {
		return map[string]any{"properties": map[string]any{"createMode": "PointInTimeRestore", "sourceDatabaseId": src, "restorePointInTime": when}}
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		name, path string
		body       map[string]any
		status     int
		code       string
	}{
		{"a time in the future", dbPath + "x1", body(dbPath+"shop", future), 400, "RestorePointInTimeOutOfRange"},
		{"a time before the first backup", dbPath + "x2", body(dbPath+"shop", "2020-01-01T00:00:00Z"), 400, "RestorePointInTimeOutOfRange"},
		{"a name that exists", dbPath + "shop_restored", body(dbPath+"shop", at.UTC().Format(time.RFC3339Nano)), 409, "DatabaseAlreadyExists"},
		{"a missing source", dbPath + "x3", body(dbPath+"nope", at.UTC().Format(time.RFC3339Nano)), 404, "ResourceNotFound"},
		{"another instance", dbPath + "x4", body(miPath("rg-pitr", "other")+"/databases/shop", at.UTC().Format(time.RFC3339Nano)), 400, "CrossInstanceRestoreNotSupported"},
		{"no time", dbPath + "x5", map[string]any{"properties": map[string]any{"createMode": "PointInTimeRestore", "sourceDatabaseId": dbPath + "shop"}}, 400, "InvalidRestoreParameters"},
		{"an unknown create mode", dbPath + "x6", map[string]any{"properties": map[string]any{"createMode": "Copy"}}, 400, "InvalidCreateMode"},
	} {
		if got := f.call("PUT", tc.path, tc.body); got.Status != tc.status || got.code() != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, got.Status, got.Body, tc.status, tc.code)
		}
	}
	if _, stderr, err := f.runCLI("", "sql", "midb", "restore", "-g", "rg-pitr", "--mi", "pitr1", "-n", "shop", "--dest-name", "y", "--time", "yesterday"); err == nil || !strings.Contains(stderr+err.Error(), "--time") {
		t.Errorf("a bad --time: %v %s", err, stderr)
	}
}
