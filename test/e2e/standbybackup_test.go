package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fogdb/fog/internal/server"
)

// TestBackupsFromTheStandby: a failover group's secondary region takes its own backups, from
// the standby, into its own repository (docs/backups.md), so the partner region holds a base
// backup and not only WAL, and a geo-restore recovers a database from that copy alone (the
// primary region's repository moved away) into another instance of the partner region, with
// every row archived there. After a planned failover the new primary's next backup in that
// repository is a differential one on the full backup it took as the standby (not a forced
// full), and a point-in-time restore on it, to a time after the failover, reads that history
// across both timelines: exactly the rows committed before the time.
func TestBackupsFromTheStandby(t *testing.T) {
	if _, err := exec.LookPath("pgbackrest"); err != nil {
		t.Skip("pgBackRest is not installed (CI installs Debian's pgbackrest)")
	}
	// It works the machine less than the tests before it, and waits for backups and
	// archiving: it runs beside the grace-period tests at the end of the package.
	waitBound(t)
	ctx := context.Background()
	start := time.Now()
	// A differential backup is due 20 s after the last one, so the one after the failover
	// comes within the test; WAL is archived within 2 s of a write.
	f := startFog(t, "", withQuickBackups, func(c *server.Config) {
		c.Controller.Backup.DiffInterval = 20 * time.Second
		c.Agent.Backup.ArchiveTimeout = 2 * time.Second
	})
	p := newPair(t, f, "sb")
	p.create(t, nil)
	p.setupTable(t)
	insert := func(from, to int) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, err := p.listenerConn(cctx, p.rw, "app", p.rwFQDN)
		if err != nil {
			t.Fatalf("connect through the read-write listener: %v", err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(cctx, "INSERT INTO w (id) SELECT generate_series($1::int, $2::int)", from, to); err != nil {
			t.Fatalf("insert %d-%d: %v", from, to, err)
		}
	}
	insert(1, 30)

	// The secondary's database shows its region's own full backup, taken from the standby.
	secDB := miPath("rg-s", "sb-s") + "/databases/app"
	lastBackup := func(path string) (string, string) {
		r := f.call("GET", path, nil)
		if r.Status != http.StatusOK {
			return "", ""
		}
		pr := props(r.json(t))
		typ, _ := pr["lastBackupType"].(string)
		at, _ := pr["lastBackupTime"].(string)
		return typ, at
	}
	eventually(t, 3*time.Minute, "a full backup in the secondary's region", func() bool {
		typ, _ := lastBackup(secDB)
		return typ == "Full"
	})
	_, fullAt := lastBackup(secDB)
	t.Logf("the standby's region has its full backup (%s): %s", fullAt, time.Since(start).Round(time.Second))

	geo := geoRestore(t, f, p, insert)
	// The same through the console, once eastus's repository is back (the CLI's recovery
	// showed that nothing of eastus is needed; the console's reads westus's copy the same way).
	t.Run("console", func(t *testing.T) { consoleGeoRestore(t, f, geo) })

	// Planned failover: westus is the primary now.
	p.failover(t, false)
	p.waitState(t, "CATCH_UP", 60*time.Second)
	insert(41, 50)
	time.Sleep(50 * time.Millisecond)
	at := time.Now().UTC()
	time.Sleep(50 * time.Millisecond)
	insert(51, 60)

	// The new primary's next backup in its region's repository builds on the full it took
	// as the standby.
	eventually(t, 2*time.Minute, "the new primary's next backup", func() bool {
		_, last := lastBackup(secDB)
		return last != "" && last != fullAt
	})
	if typ, last := lastBackup(secDB); typ != "Differential" {
		t.Errorf("the new primary's first backup after the failover is %s (%s), want a differential one on the full taken from the standby", typ, last)
	}
	t.Logf("the new primary's differential backup: %s", time.Since(start).Round(time.Second))

	// A restore to a time after the failover, from westus's repository: timeline 1 (what
	// the standby received and archived) and timeline 2.
	if out, stderr, err := f.runCLI("", "sql", "midb", "restore", "-g", "rg-s", "--mi", "sb-s", "-n", "app",
		"--dest-name", "app_at", "--time", at.Format(time.RFC3339Nano)); err != nil {
		t.Fatalf("fog sql midb restore on the new primary: %v\n%s\n%s", err, out, stderr)
	}
	c := mustConnect(t, f.info.CACert, p.sec, "app_at")
	defer c.Close(ctx)
	var n, lo, hi int
	if err := c.QueryRow(ctx, "SELECT count(*), min(id), max(id) FROM w").Scan(&n, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if n != 50 || lo != 1 || hi != 50 {
		t.Errorf("restored to a time after the failover: %d rows (%d-%d), want the 50 committed before it", n, lo, hi)
	}
	t.Logf("total: %s", time.Since(start).Round(time.Second))
}

// geoRestore: rows 31-40 written and their WAL archived in westus, eastus's repository moved
// away, the group primary's database recovered (createMode Recovery, through the CLI) into
// a standalone instance of westus from westus's copy: rows 1-40. Bad requests get codes.
// It returns that instance.
func geoRestore(t *testing.T, f *fog, p *pair, insert func(from, to int)) map[string]any {
	t.Helper()
	ctx := context.Background()
	started := time.Now()
	geo := f.createInstance("rg-geo", "geo-t", "westus", nil)
	insert(31, 40)
	c, err := p.listenerConn(ctx, p.rw, "app", p.rwFQDN)
	if err != nil {
		t.Fatal(err)
	}
	var seg string
	err = c.QueryRow(ctx, "SELECT pg_walfile_name(pg_current_wal_lsn())").Scan(&seg)
	c.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	backups := filepath.Join(f.dataDir, "regions", "backups")
	eventually(t, 2*time.Minute, "segment "+seg+" archived in westus", func() bool {
		m, _ := filepath.Glob(filepath.Join(backups, "westus", "*", "archive", "*", "*", "*", seg+"-*"))
		return len(m) > 0
	})
	// The primary region's repository is gone.
	if err := os.Rename(filepath.Join(backups, "eastus"), filepath.Join(backups, "eastus.gone")); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// The eastus agent remakes its repository's directory when it next configures the
		// primary's backups (each backup the schedule asks changes the spec), which a slow
		// recovery leaves it time to do: what it made meanwhile is set aside, and the
		// repository with the stanza's history comes back.
		home := filepath.Join(backups, "eastus")
		if _, err := os.Stat(home); err == nil {
			if err := os.Rename(home, filepath.Join(backups, "eastus.remade")); err != nil {
				t.Error(err)
			}
			t.Log("the eastus agent had remade its repository's directory meanwhile: set aside")
		}
		if err := os.Rename(filepath.Join(backups, "eastus.gone"), home); err != nil {
			t.Error(err)
		}
	}()

	out, stderr, err := f.runCLI("", "sql", "recoverable-midb", "list", "-g", "rg-p", "--mi", "sb-p")
	if err != nil {
		t.Fatalf("fog sql recoverable-midb list: %v\n%s", err, stderr)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("recoverable-midb list printed %q: %v", out, err)
	}
	var id string
	for _, d := range list {
		// The CLI flattens properties, as az does.
		if d["name"] == "app" && d["geoBackupRegion"] == "westus" && d["lastAvailableBackupDate"] != "" {
			id, _ = d["id"].(string)
		}
	}
	if id == "" {
		t.Fatalf("recoverable databases of the group's primary: %s; want app, with its copy in westus", out)
	}

	// Refused, with codes.
	recover := func(target, rid string) response {
		return f.call("PUT", target, map[string]any{"properties": map[string]any{"createMode": "Recovery", "recoverableDatabaseId": rid}})
	}
	for _, tc := range []struct {
		name, target, id, code string
	}{
		{"into the source's own region, which holds no copy of its", miPath("rg-p", "sb-p") + "/databases/x", id, "GeoBackupNotAvailable"},
		{"a malformed id", miPath("rg-geo", "geo-t") + "/databases/x", "/subscriptions/x/app", "InvalidRecoverableDatabaseId"},
		{"a database the copy does not have", miPath("rg-geo", "geo-t") + "/databases/x", strings.TrimSuffix(id, "/app") + "/nope", "ResourceNotFound"},
	} {
		if r := recover(tc.target, tc.id); r.code() != tc.code {
			t.Errorf("recover %s = %d %s, want %s", tc.name, r.Status, r.Body, tc.code)
		}
	}
	if out, stderr, err := f.runCLI("", "sql", "midb", "recover", "-g", "rg-geo", "--mi", "geo-t", "-n", "app_geo", "-r", id); err != nil {
		t.Fatalf("fog sql midb recover: %v\n%s\n%s", err, out, stderr)
	}
	r := mustConnect(t, f.info.CACert, geo, "app_geo")
	defer r.Close(ctx)
	var n, lo, hi int
	if err := r.QueryRow(ctx, "SELECT count(*), min(id), max(id) FROM w").Scan(&n, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if n != 40 || lo != 1 || hi != 40 {
		t.Errorf("geo-restored: %d rows (%d-%d), want the 40 archived in westus", n, lo, hi)
	}
	t.Logf("geo-restore into westus with eastus's repository gone: %s", time.Since(started).Round(time.Second))
	return geo
}

// consoleGeoRestore: the group primary's page in the console lists app as recoverable from
// westus, and its Recover form, offering only westus's instances, recovers it into geo as
// app_console from westus's copy: the same 40 rows as through the CLI.
func consoleGeoRestore(t *testing.T, f *fog, geo map[string]any) {
	started := time.Now()
	b := startBrowser(t, f.info.APIURL, time.Minute)
	b.signIn(f.info.Token)
	row := `#recoverable-databases tr[data-recoverable="app"]`
	b.run("the recoverable databases", chromedp.Navigate(b.base+"/console/instances/rg-p/sb-p"), chromedp.WaitVisible(chromedp.CSS(row)))
	if s := b.text(row); !strings.Contains(s, "westus") {
		t.Errorf("the recoverable database app: %q, want its copy in westus", s)
	}
	targets, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('`+row+` select[name="target"] option')].map(o => o.value).sort()`))
	if want := []string{"rg-geo/geo-t", "rg-s/sb-s"}; err != nil || !slices.Equal(targets, want) {
		t.Errorf("the Recover form offers %q (%v), want westus's instances %q", targets, err, want)
	}
	b.shot("console-geo-restore.png")
	b.run("recover", chromedp.SetValue(chromedp.CSS(row+` select[name="target"]`), "rg-geo/geo-t"),
		chromedp.SetValue(chromedp.CSS(row+` input[name="name"]`), "app_console"),
		chromedp.Submit(chromedp.CSS(row+` input[name="name"]`)), chromedp.WaitVisible(chromedp.CSS(".op-status")))
	b.finish("recover")
	b.run("the recovered database listed on geo-t's page", chromedp.WaitVisible(chromedp.CSS(`tr[data-database="app_console"]`)))
	ctx := context.Background()
	r := mustConnect(t, f.info.CACert, geo, "app_console")
	var n, lo, hi int
	if err := r.QueryRow(ctx, "SELECT count(*), min(id), max(id) FROM w").Scan(&n, &lo, &hi); err != nil || n != 40 || lo != 1 || hi != 40 {
		t.Errorf("recovered through the console: %d rows (%d-%d, %v), want the 40 archived in westus", n, lo, hi, err)
	}
	t.Logf("geo-restore through the console: %s", time.Since(started).Round(time.Second))
}
