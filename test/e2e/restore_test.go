package e2e

import (
	"context"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPointInTimeRestore: rows committed, a time taken, DROP TABLE and more writes; the
// database restored to that time through the CLI (az sql midb restore's flags) as a new
// database has exactly the rows committed before it, and the source keeps its present. Bad
// restores get their codes: a time outside the window, an existing name, a missing source,
// a missing instance, an unknown create mode. It is restored into another instance of the
// region too. Then a dropped database is restored
// (restoreDropped).
func TestPointInTimeRestore(t *testing.T) {
	if _, err := exec.LookPath("pgbackrest"); err != nil {
		t.Skip("pgBackRest is not installed (CI installs Debian's pgbackrest)")
	}
	ctx := context.Background()
	f := startFog(t, "", withQuickBackups)
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

	// Into another instance of the region (az's --dest-mi): the same rows there, read from
	// the source's backups.
	inst2 := f.createInstance("rg-pitr", "pitr2", "eastus", nil)
	if out, stderr, err := f.runCLI("", "sql", "midb", "restore", "-g", "rg-pitr", "--mi", "pitr1", "-n", "shop",
		"--dest-mi", "pitr2", "--dest-name", "shop_copy", "--time", at.UTC().Format(time.RFC3339Nano)); err != nil {
		t.Fatalf("fog sql midb restore --dest-mi: %v\n%s\n%s", err, out, stderr)
	}
	r2 := mustConnect(t, f.info.CACert, inst2, "shop_copy")
	if err := r2.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE item = 'after') FROM orders").Scan(&n, &after); err != nil || n != 50 || after != 0 {
		t.Errorf("the database restored into another instance has %d rows, %d of them after the time (%v); want the 50 before it", n, after, err)
	}
	r2.Close(ctx)

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
		{"an instance that does not exist", dbPath + "x4", body(miPath("rg-pitr", "other")+"/databases/shop", at.UTC().Format(time.RFC3339Nano)), 404, "ResourceNotFound"},
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
	restoreDropped(t, f, inst, dbPath, c)
}

// restoreDropped is the second half of TestPointInTimeRestore: a database dropped with SQL
// is listed as restorable (az sql midb list-deleted), and restored through the CLI
// (--deleted-time, the deletionDate listed) with every row committed before the drop, the
// last ones committed just before it included; with --time, as it was then. Bad requests get
// their codes.
func restoreDropped(t *testing.T, f *fog, inst map[string]any, dbPath string, c *pgx.Conn) {
	ctx := context.Background()
	f.mustSucceed(f.call("PUT", dbPath+"ledger", map[string]any{}))
	l := mustConnect(t, f.info.CACert, inst, "ledger")
	exec1 := func(conn *pgx.Conn, sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec1(l, "CREATE TABLE entries (id int PRIMARY KEY)")
	for i := 1; i <= 20; i++ {
		exec1(l, "INSERT INTO entries VALUES ("+strconv.Itoa(i)+")")
	}
	time.Sleep(50 * time.Millisecond)
	var mid time.Time
	if err := l.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&mid); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	for i := 21; i <= 40; i++ {
		exec1(l, "INSERT INTO entries VALUES ("+strconv.Itoa(i)+")")
	}
	// The last row is acknowledged, then the database is dropped at once, by its owner.
	l.Close(ctx)
	exec1(c, "DROP DATABASE ledger WITH (FORCE)")

	var dropped map[string]any
	eventually(t, time.Minute, "the dropped database to be listed as restorable", func() bool {
		r := f.call("GET", miPath("rg-pitr", "pitr1")+"/restorableDroppedDatabases", nil)
		if r.Status != http.StatusOK {
			return false
		}
		for _, v := range r.json(t)["value"].([]any) {
			if d := v.(map[string]any); props(d)["databaseName"] == "ledger" {
				dropped = d
				return true
			}
		}
		return false
	})
	out, stderr, err := f.runCLI("", "sql", "midb", "list-deleted", "-g", "rg-pitr", "--mi", "pitr1")
	if err != nil || !strings.Contains(out, `"databaseName": "ledger"`) {
		t.Fatalf("fog sql midb list-deleted: %v\n%s\n%s", err, out, stderr)
	}
	if g := f.call("GET", miPath("rg-pitr", "pitr1")+"/restorableDroppedDatabases/"+dropped["name"].(string), nil); g.Status != http.StatusOK {
		t.Errorf("GET the restorable dropped database = %d %s", g.Status, g.Body)
	}
	deleted := props(dropped)["deletionDate"].(string)

	count := func(db string) (n, max int) {
		t.Helper()
		r := mustConnect(t, f.info.CACert, inst, db)
		defer r.Close(ctx)
		if err := r.QueryRow(ctx, "SELECT count(*), coalesce(max(id), 0) FROM entries").Scan(&n, &max); err != nil {
			t.Fatalf("the restored database %s: %v", db, err)
		}
		return n, max
	}
	if out, stderr, err := f.runCLI("", "sql", "midb", "restore", "-g", "rg-pitr", "--mi", "pitr1", "-n", "ledger",
		"--deleted-time", deleted, "--dest-name", "ledger_at_drop"); err != nil {
		t.Fatalf("fog sql midb restore --deleted-time: %v\n%s\n%s", err, out, stderr)
	}
	if n, max := count("ledger_at_drop"); n != 40 || max != 40 {
		t.Errorf("the dropped database restored as it was when dropped has %d rows (last %d), want all 40 committed before the drop", n, max)
	}
	if out, stderr, err := f.runCLI("", "sql", "midb", "restore", "-g", "rg-pitr", "--mi", "pitr1", "-n", "ledger",
		"--deleted-time", deleted, "--time", mid.UTC().Format(time.RFC3339Nano), "--dest-name", "ledger_at_mid"); err != nil {
		t.Fatalf("fog sql midb restore --deleted-time --time: %v\n%s\n%s", err, out, stderr)
	}
	if n, max := count("ledger_at_mid"); n != 20 || max != 20 {
		t.Errorf("the dropped database restored to a time before the drop has %d rows (last %d), want the 20 committed before that time", n, max)
	}

	body := func(id, when string) map[string]any {
		p := map[string]any{"createMode": "PointInTimeRestore", "restorableDroppedDatabaseId": id}
		if when != "" {
			p["restorePointInTime"] = when
		}
		return map[string]any{"properties": p}
	}
	id := dropped["id"].(string)
	deletedAt, _ := time.Parse(time.RFC3339Nano, deleted)
	for _, tc := range []struct {
		name   string
		body   map[string]any
		status int
		code   string
	}{
		{"a time after the drop", body(id, deletedAt.Add(time.Second).Format(time.RFC3339Nano)), 400, "RestorePointInTimeOutOfRange"},
		{"a malformed id", body(dbPath+"ledger", ""), 400, "InvalidRestorableDroppedDatabaseId"},
		{"a drop that never was", body(strings.Replace(id, "ledger,", "ledger2,", 1), ""), 404, "ResourceNotFound"},
		{"both a source and a dropped database", map[string]any{"properties": map[string]any{"createMode": "PointInTimeRestore",
			"restorableDroppedDatabaseId": id, "sourceDatabaseId": dbPath + "shop"}}, 400, "InvalidRestoreParameters"},
	} {
		if got := f.call("PUT", dbPath+"z", tc.body); got.Status != tc.status || got.code() != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, got.Status, got.Body, tc.status, tc.code)
		}
	}
}
