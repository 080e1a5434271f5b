package e2e

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/agent"
	"github.com/fogdb/fog/internal/blob/azuritetest"
	"github.com/fogdb/fog/internal/server"
)

// TestAzureBackupRepository: a deployment whose agents keep their backups in Azure Blob
// Storage (Azurite, over TLS) backs up an instance and restores a database to a time through
// the API with exactly the rows committed before it; Fog's log holds neither the account key
// nor a SAS.
func TestAzureBackupRepository(t *testing.T) {
	if _, err := exec.LookPath("pgbackrest"); err != nil {
		t.Skip("pgBackRest is not installed (CI installs Debian's pgbackrest)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	started := time.Now()
	az := azuritetest.Start(ctx, t)
	secrets := t.TempDir()
	keyFile, caFile := filepath.Join(secrets, "account.key"), filepath.Join(secrets, "azurite-ca.crt")
	if err := os.WriteFile(keyFile, []byte(az.Key), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, az.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	f := startFog(t, "", withQuickBackups, func(c *server.Config) {
		c.Regions = []string{"eastus"}
		c.Agent.Backup.RepoType = agent.RepoAzure
		c.Agent.Backup.Azure = agent.AzureConfig{Account: azuritetest.Account, KeyFile: keyFile, Host: az.Host, Port: az.Port, CAFile: caFile}
	})
	inst := f.createInstance("rg-az", "az1", "eastus", nil)
	dbPath := miPath("rg-az", "az1") + "/databases/"
	f.mustSucceed(f.call("PUT", dbPath+"shop", map[string]any{}))
	eventually(t, 3*time.Minute, "the first backup", func() bool {
		r := f.call("GET", dbPath+"shop", nil)
		return r.Status == 200 && props(r.json(t))["earliestRestorePoint"] != nil
	})
	t.Logf("Azurite, fog, instance and its first backup: %v", time.Since(started).Round(time.Millisecond))
	time.Sleep(1100 * time.Millisecond) // past the second the backup ended in

	c := mustConnect(t, f.info.CACert, inst, "shop")
	defer c.Close(ctx)
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

	t0 := time.Now()
	f.mustSucceed(f.call("PUT", dbPath+"shop_restored", map[string]any{"properties": map[string]any{
		"createMode": "PointInTimeRestore", "sourceDatabaseId": dbPath + "shop", "restorePointInTime": at.UTC().Format(time.RFC3339Nano)}}))
	t.Logf("restore through the API: %v", time.Since(t0).Round(time.Millisecond))
	r := mustConnect(t, f.info.CACert, inst, "shop_restored")
	defer r.Close(ctx)
	var n, after int
	if err := r.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE item = 'after') FROM orders").Scan(&n, &after); err != nil || n != 50 || after != 0 {
		t.Errorf("the restored database has %d rows, %d of them after the time (%v); want the 50 before it", n, after, err)
	}

	// The instance's configuration has its container's SAS; nothing Fog logged has it or
	// the key.
	confs, _ := filepath.Glob(filepath.Join(f.dataDir, "regions", "eastus", "*", "pgbackrest.conf"))
	if len(confs) == 0 {
		t.Fatal("no instance's pgbackrest.conf found")
	}
	conf, err := os.ReadFile(confs[0])
	if err != nil {
		t.Fatal(err)
	}
	var sig string
	for _, line := range strings.Split(string(conf), "\n") {
		if v, ok := strings.CutPrefix(line, "repo1-azure-key="); ok {
			q, _ := url.ParseQuery(v)
			sig = q.Get("sig")
		}
	}
	if sig == "" || strings.Contains(string(conf), az.Key) || !strings.Contains(string(conf), "repo1-azure-container=fog-eastus-") {
		t.Errorf("the instance's configuration: want a SAS for its fog-eastus-* container and no key")
	}
	logText, err := os.ReadFile(filepath.Join(f.dataDir, "fog.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{az.Key, sig, url.QueryEscape(sig)} {
		if s != "" && strings.Contains(string(logText), s) {
			t.Errorf("fog's log holds a credential")
		}
	}
	t.Logf("total: %v", time.Since(started).Round(time.Millisecond))
}
