package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// postmasterPID reads the pid of the single instance's postmaster under dataDir.
func postmasterPID(t *testing.T, dataDir, region string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dataDir, "regions", region, "*", "pgdata", "postmaster.pid"))
	if len(files) != 1 {
		return 0
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid
}

// alive reports whether pid is a running process (not a zombie waiting to be reaped).
func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// goneWithin reports whether pid has exited within d.
func goneWithin(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !alive(pid) {
			return true
		}
	}
	return !alive(pid)
}

func countRows(t *testing.T, c *pgx.Conn) int {
	t.Helper()
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM orders").Scan(&n); err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return n
}

func writeRows(t *testing.T, c *pgx.Conn, n int) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.Exec(ctx, "CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, note text, at timestamptz DEFAULT now())"); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := c.Exec(ctx, "INSERT INTO orders (note) VALUES ($1)", "order "+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInstanceLifecycle(t *testing.T) {
	dir := t.TempDir()
	base := addressBase()
	p := startFogProcess(t, dir, base)
	f := p.asFog(t, dir)
	inst := f.createInstance("rg-life", "life1", "westus", map[string]any{
		"timezoneId": "Pacific Standard Time", "vCores": 16, "storageSizeInGB": 64,
	})
	pp := props(inst)
	if pp["host"] != base || pp["port"] != float64(5432) {
		t.Errorf("address = %v:%v, want %s:5432 (the first of the address base)", pp["host"], pp["port"], base)
	}
	if !strings.HasPrefix(pp["fullyQualifiedDomainName"].(string), "life1."+pp["dnsZone"].(string)+".") {
		t.Errorf("fullyQualifiedDomainName = %v", pp["fullyQualifiedDomainName"])
	}
	if pp["vCores"] != float64(16) || inst["sku"].(map[string]any)["capacity"] != float64(16) || pp["storageSizeInGB"] != float64(64) {
		t.Errorf("vCores/capacity/storage = %v/%v/%v", pp["vCores"], inst["sku"], pp["storageSizeInGB"])
	}

	c := mustConnect(t, p.client.CACert, inst, "postgres")
	var tz string
	var ssl bool
	var checksums string
	if err := c.QueryRow(context.Background(), "SELECT current_setting('TimeZone'), (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), current_setting('data_checksums')").Scan(&tz, &ssl, &checksums); err != nil {
		t.Fatal(err)
	}
	if tz != "America/Los_Angeles" || !ssl || checksums != "on" {
		t.Errorf("TimeZone, ssl, data_checksums = %q, %v, %q; want America/Los_Angeles, true, on", tz, ssl, checksums)
	}
	f.mustSucceed(f.call("PUT", miPath("rg-life", "life1")+"/databases/shop", map[string]any{}))
	shop := mustConnect(t, p.client.CACert, inst, "shop")
	writeRows(t, shop, 50)
	shop.Close(context.Background())
	c.Close(context.Background())

	// Ctrl-C stops fog and every PostgreSQL it started, cleanly.
	pid := postmasterPID(t, dir, "westus")
	if !alive(pid) {
		t.Fatalf("postmaster pid %d not running", pid)
	}
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("fog up after SIGINT exited with %v", err)
	}
	if !goneWithin(pid, 3*time.Second) {
		t.Fatalf("postmaster %d still running after fog stopped", pid)
	}
	if logb, _ := filepath.Glob(filepath.Join(dir, "regions", "westus", "*", "postgres.log")); len(logb) == 1 {
		b, _ := os.ReadFile(logb[0])
		if !strings.Contains(string(b), "database system is shut down") {
			t.Errorf("server log shows no clean shutdown:\n%s", tail(string(b), 5))
		}
	}

	// Started again on the same data dir: same instance, same data, same token.
	p2 := startFogProcess(t, dir, base)
	if p2.client.Token != p.client.Token {
		t.Error("restart changed the admin token")
	}
	f2 := p2.asFog(t, dir)
	got := f2.call("GET", miPath("rg-life", "life1"), nil)
	if got.Status != http.StatusOK {
		t.Fatalf("GET after restart = %d %s", got.Status, got.Body)
	}
	waitReady(t, f2, "rg-life", "life1")
	shop = mustConnect(t, p2.client.CACert, inst, "shop")
	if n := countRows(t, shop); n != 50 {
		t.Fatalf("rows after restart = %d, want 50", n)
	}
	shop.Close(context.Background())

	// A new password replaces the old one.
	const newPW = "An0ther-Str0ng-Pass!"
	f2.mustSucceed(f2.call("PUT", miPath("rg-life", "life1"), map[string]any{"location": "westus", "properties": map[string]any{"administratorLoginPassword": newPW}}))
	if c, err := connect(t, p2.client.CACert, inst, "fogadmin", newPW, "shop"); err != nil {
		t.Errorf("connect with the new password: %v", err)
	} else {
		c.Close(context.Background())
	}
	if c, err := connect(t, p2.client.CACert, inst, "fogadmin", password, "shop"); err == nil {
		c.Close(context.Background())
		t.Error("the old password still works")
	}

	// Delete stops the instance and removes its data.
	f2.mustSucceed(f2.call("DELETE", miPath("rg-life", "life1"), nil))
	if dirs, _ := filepath.Glob(filepath.Join(dir, "regions", "westus", "*")); len(dirs) != 0 {
		t.Errorf("instance directories left after delete: %v", dirs)
	}
	if pid := postmasterPID(t, dir, "westus"); !goneWithin(pid, 3*time.Second) {
		t.Error("postmaster still running after delete")
	}
	if _, err := connect(t, p2.client.CACert, inst, "fogadmin", newPW, "postgres"); err == nil {
		t.Error("connect after delete succeeded")
	}
}

func waitReady(t *testing.T, f *fog, rg, name string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := f.call("GET", miPath(rg, name), nil)
		if got.Status == http.StatusOK && props(got.json(t))["state"] == "Ready" {
			return got.json(t)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not Ready within a minute: %d %s", name, got.Status, got.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReadoptAfterKill9 kills fog with SIGKILL: its PostgreSQL keeps running, and the next fog
// adopts it as it is, without a restart and without losing a row.
func TestReadoptAfterKill9(t *testing.T) {
	dir := t.TempDir()
	base := addressBase()
	p := startFogProcess(t, dir, base)
	f := p.asFog(t, dir)
	inst := f.createInstance("rg-k9", "k9", "eastus", nil)
	c := mustConnect(t, p.client.CACert, inst, "postgres")
	writeRows(t, c, 20)
	pid := postmasterPID(t, dir, "eastus")

	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	if !alive(pid) {
		t.Fatal("postmaster died with fog; it should outlive a kill -9 of fog")
	}
	// Clients keep working while fog is down.
	writeRows(t, c, 5)

	p2 := startFogProcess(t, dir, base)
	f2 := p2.asFog(t, dir)
	waitReady(t, f2, "rg-k9", "k9")
	if got := postmasterPID(t, dir, "eastus"); got != pid {
		t.Errorf("postmaster pid after re-adoption = %d, want %d (adopted, not restarted)", got, pid)
	}
	if n := countRows(t, c); n != 25 {
		t.Fatalf("rows = %d, want 25", n)
	}
	// The adopted instance is fully managed: databases work, and a crash of postgres
	// itself is repaired by the agent.
	f2.mustSucceed(f2.call("PUT", miPath("rg-k9", "k9")+"/databases/after", map[string]any{}))
	c.Close(context.Background())
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c2, err := connect(t, p2.client.CACert, inst, "fogadmin", password, "postgres")
		if err == nil {
			if n := countRows(t, c2); n != 25 {
				t.Errorf("rows after postgres crash and restart = %d, want 25", n)
			}
			c2.Close(context.Background())
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance not back 30 s after its postmaster was killed: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := postmasterPID(t, dir, "eastus"); got == pid || !alive(got) {
		t.Errorf("postmaster pid after crash = %d (old %d), want a new live one", got, pid)
	}
}
