package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"

	"github.com/fogdb/fog/internal/server"
)

// browser is Debian's Chromium driven through the DevTools protocol, trusting one Fog's API
// certificate by its public key.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string // where shot writes, "" for nowhere
}

// startBrowser starts Chromium for the Fog at base (its API URL), or skips the test.
func startBrowser(t *testing.T, base string, within time.Duration) *browser {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (apt-get install chromium)")
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(base, "https://"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	conn.Close()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	bctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(cancelB)
	if err := chromedp.Do(bctx); err != nil { // starts the browser, on a context without a deadline
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, within)
	t.Cleanup(cancel)
	return &browser{t: t, ctx: ctx, base: base, shots: os.Getenv("FOG_CONSOLE_SCREENSHOTS")}
}

// page is the end of the page's text, for failure messages.
func (b *browser) page() string {
	body, _ := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("body")))
	return tail(body, 40)
}

func (b *browser) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v\npage:\n%s", what, err, b.page())
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	// WaitReady first: right after a navigation the node may not be there yet.
	err := chromedp.Do(b.ctx, chromedp.WaitReady(chromedp.CSS(sel)))
	s := ""
	if err == nil {
		s, err = chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	}
	if err != nil {
		b.t.Fatalf("read %s: %v\npage:\n%s", sel, err, b.page())
	}
	return s
}

// reloadUntil opens path every second until js is true on it.
func (b *browser) reloadUntil(what, path, js string, within time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var ok bool
		err := chromedp.Do(b.ctx, chromedp.Navigate(b.base+path), chromedp.WaitReady(chromedp.CSS("main")))
		if err == nil {
			ok, err = chromedp.Run(b.ctx, chromedp.Evaluate[bool]("!!("+js+")"))
		}
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: not within %s (%v)\npage:\n%s", what, within, err, b.page())
		}
		time.Sleep(time.Second)
	}
}

// finish waits on an operation page until the operation ends, and continues.
func (b *browser) finish(what string) {
	b.t.Helper()
	b.run(what, chromedp.WaitVisible(chromedp.CSS("#continue")))
	if s := b.text(".op-status"); !strings.HasPrefix(s, "Succeeded") {
		b.t.Fatalf("%s: operation %q: %s", what, s, b.text("#op"))
	}
	// The operation page's own main is ready too: wait until the browser has left it.
	from, err := chromedp.Run(b.ctx, chromedp.Evaluate[string]("location.href"))
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	b.run(what+": continue", chromedp.Click(chromedp.CSS("#continue")))
	js, _ := json.Marshal(from)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool]("location.href !== "+string(js)+" && document.readyState === 'complete'"))
		if err == nil && left {
			break
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: continue did not leave the operation page (%v)\npage:\n%s", what, err, b.page())
		}
	}
	b.run(what+": continue", chromedp.WaitReady(chromedp.CSS("main")))
}

// shot writes the page as PNG into FOG_CONSOLE_SCREENSHOTS, when it is set.
func (b *browser) shot(name string) {
	b.t.Helper()
	if b.shots == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) signIn(token string) {
	b.t.Helper()
	b.run("sign in", chromedp.Navigate(b.base+"/console/signin"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SetValue(chromedp.CSS("#token"), token), chromedp.Submit(chromedp.CSS("#token")), chromedp.WaitVisible(chromedp.CSS(".who")))
}

// TestConsoleBackups drives the console's backup pages in a real browser against a Fog whose
// instances take backups: a retention out of range shows the API's code, then one is set, and
// so is a long-term retention policy after the API refused a retention of 99 years;
// the instance page shows the first backup (a database's earliest restore point, the last
// backup, and at the end the activity log's outcome); a restore to a time before the first backup shows
// RestorePointInTimeOutOfRange with the window; a real restore through the form follows the
// operation to the instance page, which lists the new database, which has exactly the rows
// committed before the time; a database dropped with SQL is listed and restored from there.
// The policy keeps a full backup that ends after it is set, which the database page lists: its
// restore form gives a new database with exactly the rows committed before that backup, and
// its delete form, refused until its box is ticked, removes it from the page, the CLI's list
// and the API.
func TestConsoleBackups(t *testing.T) {
	if _, err := exec.LookPath("pgbackrest"); err != nil {
		t.Skip("pgBackRest is not installed (CI installs Debian's pgbackrest)")
	}
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Skip("chromium is not installed (apt-get install chromium)")
	}
	start := time.Now()
	ctx := context.Background()
	// A full backup every 15 s: the LTR policy keeps the first one that ends after the
	// console sets it, which need not be the instance's first.
	f := startFog(t, "", withQuickBackups, func(c *server.Config) {
		c.Controller.Backup.FullInterval, c.Controller.Backup.DiffInterval = 15*time.Second, 15*time.Second
	})
	const rg, mi = "rg-cbk", "cbk1"
	inst := f.createInstance(rg, mi, "eastus", nil)
	dbPath := miPath(rg, mi) + "/databases/"
	f.mustSucceed(f.call("PUT", dbPath+"shop", map[string]any{}))
	f.mustSucceed(f.call("PUT", dbPath+"ledger", map[string]any{}))
	t.Logf("instance and databases ready after %s", time.Since(start).Round(time.Second))
	c := mustConnect(t, f.info.CACert, inst, "shop")
	exec1 := func(conn *pgx.Conn, sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// The rows every backup after the policy has: what its LTR backup's restore must give.
	exec1(c, "CREATE TABLE kept (id int PRIMARY KEY, item text)")
	exec1(c, "INSERT INTO kept SELECT g, 'kept' FROM generate_series(1, 25) g")

	b := startBrowser(t, f.info.APIURL, 3*time.Minute)
	b.signIn(f.info.Token)
	instPage := "/console/instances/" + rg + "/" + mi
	shopPage := instPage + "/databases/shop"

	// Retention: the API's validation, then a change, shown on the database's page.
	b.run("retention 40", chromedp.Navigate(b.base+shopPage), chromedp.WaitVisible(chromedp.CSS("#retentionDays")),
		chromedp.SetValue(chromedp.CSS("#retentionDays"), "40"), chromedp.Submit(chromedp.CSS("#retentionDays")), chromedp.WaitVisible(chromedp.CSS(".error")))
	if e := b.text(".error"); !strings.Contains(e, "InvalidBackupRetentionPeriod") || !strings.Contains(e, "between 1 and 35") {
		t.Errorf("retention 40: %q", e)
	}
	b.run("retention 14", chromedp.SetValue(chromedp.CSS("#retentionDays"), "14"), chromedp.Submit(chromedp.CSS("#retentionDays")), chromedp.WaitVisible(chromedp.CSS(".op-status")))
	b.finish("retention 14")
	if d := b.text("#retention-days"); d != "14 days" {
		t.Errorf("after setting 14 days the page says %q", d)
	}

	// Long-term retention: the API's validation of a retention, then a policy set.
	b.run("ltr weekly P99Y", chromedp.SetValue(chromedp.CSS("#ltr-weekly"), "P99Y"), chromedp.SetValue(chromedp.CSS("#ltr-week"), "1"),
		chromedp.Submit(chromedp.CSS("#ltr-weekly")), chromedp.WaitVisible(chromedp.CSS(".error")))
	if e := b.text(".error"); !strings.Contains(e, "InvalidParameterValue") || !strings.Contains(e, "weeklyRetention 'P99Y'") {
		t.Errorf("weekly retention P99Y: %q", e)
	}
	b.run("ltr policy", chromedp.SetValue(chromedp.CSS("#ltr-weekly"), "P4W"), chromedp.SetValue(chromedp.CSS("#ltr-monthly"), "P12M"),
		chromedp.SetValue(chromedp.CSS("#ltr-yearly"), "P5Y"), chromedp.SetValue(chromedp.CSS("#ltr-week"), "20"),
		chromedp.Submit(chromedp.CSS("#ltr-weekly")), chromedp.WaitVisible(chromedp.CSS(".op-status")))
	b.finish("ltr policy")
	if p := b.text("#ltr-policy"); p != "weekly P4W, monthly P12M, yearly P5Y (week 20)" {
		t.Errorf("after setting the LTR policy the page says %q", p)
	}
	if pol := f.call("GET", dbPath+"shop/backupLongTermRetentionPolicies/default", nil); !strings.Contains(string(pol.Body), `"weeklyRetention":"P4W"`) {
		t.Errorf("the LTR policy the API reads after the console set it: %s", pol.Body)
	}

	// The first backup, as the instance page shows it.
	b.reloadUntil("the first backup", instPage, `document.querySelector('tr[data-database="shop"] .earliest')?.innerText.includes("UTC")`, 2*time.Minute)
	t.Logf("first backup shown after %s", time.Since(start).Round(time.Second))
	if l := b.text("#last-backup"); !strings.Contains(l, "Full") || !strings.Contains(l, "of data") {
		t.Errorf("last backup: %q", l)
	}

	// Rows, a time, more rows: what the restore must tell apart.
	time.Sleep(1100 * time.Millisecond) // past the second the backup ended in: the window's start
	exec1(c, "CREATE TABLE orders (id int PRIMARY KEY, item text)")
	exec1(c, "INSERT INTO orders SELECT g, 'before' FROM generate_series(1, 50) g")
	time.Sleep(50 * time.Millisecond)
	var at time.Time
	if err := c.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&at); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	exec1(c, "INSERT INTO orders SELECT g, 'after' FROM generate_series(51, 60) g")

	// A time before the first backup: the API's code, with the window.
	b.run("restore out of range", chromedp.Navigate(b.base+shopPage), chromedp.WaitVisible(chromedp.CSS("#restore-name")),
		chromedp.SetValue(chromedp.CSS("#restore-name"), "shop_old"), chromedp.SetValue(chromedp.CSS("#restore-time"), "2020-01-01T00:00:00"),
		chromedp.Submit(chromedp.CSS("#restore-name")), chromedp.WaitVisible(chromedp.CSS(".error")))
	if e := b.text(".error"); !strings.Contains(e, "RestorePointInTimeOutOfRange") || !strings.Contains(e, "restore window") {
		t.Errorf("a time before the first backup: %q", e)
	}
	b.shot("console-restore-out-of-range.png")

	// The restore, through the form: the operation, then the instance page with the new
	// database, which has the rows committed before the time.
	b.run("restore", chromedp.SetValue(chromedp.CSS("#restore-name"), "shop_restored"),
		chromedp.SetValue(chromedp.CSS("#restore-time"), at.UTC().Format("2006-01-02T15:04:05.999999")),
		chromedp.Submit(chromedp.CSS("#restore-name")), chromedp.WaitVisible(chromedp.CSS(".op-status")))
	t.Logf("restore asked after %s", time.Since(start).Round(time.Second))
	b.finish("restore")
	b.run("the restored database listed", chromedp.WaitVisible(chromedp.CSS(`tr[data-database="shop_restored"]`)))
	t.Logf("restored after %s", time.Since(start).Round(time.Second))
	r := mustConnect(t, f.info.CACert, inst, "shop_restored")
	var n, after int
	if err := r.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE item = 'after') FROM orders").Scan(&n, &after); err != nil || n != 50 || after != 0 {
		t.Errorf("the database restored through the console has %d rows, %d of them after the time (%v); want the 50 before it", n, after, err)
	}
	r.Close(ctx)

	// A dropped database: listed, and restored as it was when dropped.
	l := mustConnect(t, f.info.CACert, inst, "ledger")
	exec1(l, "CREATE TABLE entries (id int PRIMARY KEY)")
	exec1(l, "INSERT INTO entries SELECT generate_series(1, 20)")
	l.Close(ctx)
	exec1(c, "DROP DATABASE ledger WITH (FORCE)")
	b.reloadUntil("the dropped database listed", instPage, `document.querySelector('tr[data-dropped="ledger"]')`, time.Minute)
	b.run("restore the dropped database", chromedp.SetValue(chromedp.CSS(`tr[data-dropped="ledger"] input[name="name"]`), "ledger_back"),
		chromedp.Submit(chromedp.CSS(`tr[data-dropped="ledger"] input[name="name"]`)), chromedp.WaitVisible(chromedp.CSS(".op-status")))
	b.finish("restore the dropped database")
	b.run("the dropped database restored", chromedp.WaitVisible(chromedp.CSS(`tr[data-database="ledger_back"]`)))
	lb := mustConnect(t, f.info.CACert, inst, "ledger_back")
	if err := lb.QueryRow(ctx, "SELECT count(*) FROM entries").Scan(&n); err != nil || n != 20 {
		t.Errorf("the dropped database restored through the console has %d rows (%v), want 20", n, err)
	}
	if g := f.call("GET", dbPath+"ledger_back", nil); g.Status != http.StatusOK {
		t.Errorf("GET the restored dropped database = %d", g.Status)
	}
	consoleLTRBackup(t, f, b, inst, c, rg, mi, "shop")
	// The first backup's outcome, from the activity log: the leader records it when it next
	// runs the schedule (every 30 s), so it is looked for last.
	b.reloadUntil("the backup in the activity log", instPage, `document.querySelector('#recent-backups tr.backup-succeeded')`, 45*time.Second)
	if row := b.text("#recent-backups tr.backup-succeeded"); !strings.Contains(row, "Full") || !strings.Contains(row, "full backup") {
		t.Errorf("the first backup in the recent backups: %q", row)
	}
	b.shot("console-backups.png")
	t.Logf("done after %s", time.Since(start).Round(time.Second))
}

// consoleLTRBackup: database db of instance mi (inst, in rg and eastus) has an LTR policy, 25
// rows in table kept, and a full backup every 15 s. Its page lists the LTR backup the policy
// keeps; rows committed after it are not in the database its restore form makes; its delete
// form refuses without the box ticked, then deletes it: gone from the page, the CLI's list
// and the API.
func consoleLTRBackup(t *testing.T, f *fog, b *browser, inst map[string]any, c *pgx.Conn, rg, mi, db string) {
	t.Helper()
	ctx := context.Background()
	started := time.Now()
	dbPage := "/console/instances/" + rg + "/" + mi + "/databases/" + db
	const first = `document.querySelector('#ltr-backups tr[data-ltr-backup]')`
	b.reloadUntil("an LTR backup listed", dbPage, first, time.Minute)
	name, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](first+".dataset.ltrBackup"))
	if err != nil {
		t.Fatal(err)
	}
	row := `#ltr-backups tr[data-ltr-backup="` + name + `"]`
	id, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector('`+row+` input[name="backup"]').value`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("LTR backup %s listed %s after the dropped database's restore", name, time.Since(started).Round(time.Second))
	b.shot("console-ltr-backups.png")
	if _, err := c.Exec(ctx, "INSERT INTO kept SELECT g, 'later' FROM generate_series(26, 30) g"); err != nil {
		t.Fatal(err)
	}

	b.run("restore the LTR backup", chromedp.SetValue(chromedp.CSS(row+` input[name="name"]`), db+"_ltr"),
		chromedp.Submit(chromedp.CSS(row+` input[name="name"]`)), chromedp.WaitVisible(chromedp.CSS(".op-status")))
	b.finish("restore the LTR backup")
	b.run("the LTR backup's database listed", chromedp.WaitVisible(chromedp.CSS(`tr[data-database="`+db+`_ltr"]`)))
	r := mustConnect(t, f.info.CACert, inst, db+"_ltr")
	var n, later int
	if err := r.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE item = 'later') FROM kept").Scan(&n, &later); err != nil || n != 25 || later != 0 {
		t.Errorf("the LTR backup restored through the console has %d rows, %d of them committed after it (%v); want the 25 before it", n, later, err)
	}
	r.Close(ctx)
	t.Logf("LTR backup restored %s after it was listed", time.Since(started).Round(time.Second))

	// Delete: refused without the box ticked (the browser would not send the form; the
	// console must refuse it all the same), then deleted.
	b.run("delete the LTR backup unconfirmed", chromedp.Navigate(b.base+dbPage), chromedp.WaitVisible(chromedp.CSS(row)),
		chromedp.Submit(chromedp.CSS(row+` .ltr-delete button`)), chromedp.WaitVisible(chromedp.CSS(".error")))
	if e := b.text(".error"); !strings.Contains(e, "ConfirmationMismatch") {
		t.Errorf("an unconfirmed delete of an LTR backup: %q", e)
	}
	if g := f.call("GET", id, nil); g.Status != http.StatusOK {
		t.Fatalf("the LTR backup after an unconfirmed delete: GET = %d %s", g.Status, g.Body)
	}
	b.run("delete the LTR backup", chromedp.Click(chromedp.CSS(row+` input[name="confirm"]`)), chromedp.Click(chromedp.CSS(row+` .ltr-delete button`)),
		chromedp.WaitVisible(chromedp.CSS(".op-status")))
	b.finish("delete the LTR backup")
	gone, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`location.pathname === '`+dbPage+`' && !!document.querySelector('#ltr') && !document.querySelector('`+row+`')`))
	if err != nil || !gone {
		t.Errorf("after the delete the database page still lists the LTR backup (%v):\n%s", err, b.page())
	}
	out, stderr, err := f.runCLI("", "sql", "midb", "ltr-backup", "list", "-l", "eastus", "-g", rg, "--mi", mi, "-d", db)
	if err != nil || strings.Contains(out, name) {
		t.Errorf("fog sql midb ltr-backup list after the delete: %v %s %s", err, out, stderr)
	}
	if g := f.call("GET", id, nil); g.Status != http.StatusNotFound {
		t.Errorf("GET a deleted LTR backup = %d %s", g.Status, g.Body)
	}
}
