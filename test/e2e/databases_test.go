package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/server"
)

func dbNames(t *testing.T, f *fog, rg, mi string) []string {
	t.Helper()
	r := f.call("GET", miPath(rg, mi)+"/databases", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("list databases = %d %s", r.Status, r.Body)
	}
	var names []string
	for _, v := range r.json(t)["value"].([]any) {
		names = append(names, v.(map[string]any)["name"].(string))
	}
	slices.Sort(names)
	return names
}

func TestDatabases(t *testing.T) {
	f := startFog(t, "")
	inst := f.createInstance("rg-db", "dbs1", "eastus", nil)
	if got := dbNames(t, f, "rg-db", "dbs1"); len(got) != 0 {
		t.Fatalf("databases of a new instance = %v, want none (system databases are not listed)", got)
	}
	// Create through the API; the Location result is the database.
	r := f.call("PUT", miPath("rg-db", "dbs1")+"/databases/sales", map[string]any{"location": "eastus"})
	f.mustSucceed(r)
	res := f.call("GET", r.Header.Get("Location"), nil)
	if res.Status != http.StatusOK || res.json(t)["name"] != "sales" {
		t.Fatalf("database create result = %d %s", res.Status, res.Body)
	}
	db := f.call("GET", miPath("rg-db", "dbs1")+"/databases/sales", nil).json(t)
	if db["type"] != "Microsoft.Sql/managedInstances/databases" || props(db)["status"] != "Online" || db["id"] != miPath("rg-db", "dbs1")+"/databases/sales" {
		t.Errorf("GET database = %v", db)
	}
	// A PUT of an existing database answers 200 with it, at once.
	if again := f.call("PUT", miPath("rg-db", "dbs1")+"/databases/sales", map[string]any{}); again.Status != http.StatusOK {
		t.Errorf("PUT of existing database = %d, want 200", again.Status)
	}
	// The database is real and owned by the admin; one made with SQL is listed within the
	// agent's observation interval (reads answer from observed state, never asking the agent).
	c := mustConnect(t, f.info.CACert, inst, "sales")
	if _, err := c.Exec(context.Background(), "CREATE TABLE t (x int)"); err != nil {
		t.Fatalf("create table in API-made database: %v", err)
	}
	if _, err := c.Exec(context.Background(), `CREATE DATABASE "Made With SQL"`); err != nil {
		t.Fatal(err)
	}
	want := []string{"Made With SQL", "sales"}
	eventually(t, 5*time.Second, "the SQL-made database listed", func() bool { return slices.Equal(dbNames(t, f, "rg-db", "dbs1"), want) })
	if g := f.call("GET", miPath("rg-db", "dbs1")+"/databases/Made%20With%20SQL", nil); g.Status != http.StatusOK {
		t.Errorf("GET SQL-made database = %d", g.Status)
	}
	// System databases are not user databases.
	for _, sys := range []string{"postgres", "template1"} {
		if g := f.call("GET", miPath("rg-db", "dbs1")+"/databases/"+sys, nil); g.Status != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", sys, g.Status)
		}
		if p := f.call("PUT", miPath("rg-db", "dbs1")+"/databases/"+sys, map[string]any{}); p.code() != "CannotUseReservedDatabaseName" {
			t.Errorf("PUT %s = %d %s, want CannotUseReservedDatabaseName", sys, p.Status, p.Body)
		}
	}
	for _, bad := range []string{"a%2Fb", "x%3F", strings.Repeat("d", 64), "trailing."} {
		if p := f.call("PUT", miPath("rg-db", "dbs1")+"/databases/"+bad, map[string]any{}); p.code() != "InvalidIdentifier" {
			t.Errorf("PUT database %q = %d %s, want InvalidIdentifier", bad, p.Status, p.Body)
		}
	}
	if p := f.call("PUT", miPath("rg-db", "nope")+"/databases/x", map[string]any{}); p.Status != http.StatusNotFound {
		t.Errorf("PUT database on missing instance = %d, want 404", p.Status)
	}
	if p := f.call("PUT", miPath("rg-db", "dbs1")+"/databases/x", map[string]any{"location": "westus"}); p.code() != "InvalidLocation" {
		t.Errorf("PUT database in another region = %d %s, want InvalidLocation", p.Status, p.Body)
	}
	// Drop ends sessions and removes the database; dropping again is 204.
	c.Close(context.Background())
	f.mustSucceed(f.call("DELETE", miPath("rg-db", "dbs1")+"/databases/sales", nil))
	if got := dbNames(t, f, "rg-db", "dbs1"); !slices.Equal(got, []string{"Made With SQL"}) {
		t.Fatalf("databases after drop = %v", got)
	}
	if d := f.call("DELETE", miPath("rg-db", "dbs1")+"/databases/sales", nil); d.Status != http.StatusNoContent {
		t.Errorf("second DELETE = %d, want 204", d.Status)
	}
	if _, err := connect(t, f.info.CACert, inst, "fogadmin", password, "sales"); err == nil {
		t.Error("connect to a dropped database succeeded")
	}
}

// TestFailedCreateLeavesNothing makes initdb fail (a locale the machine lacks, let past the
// API's own check) and checks the operation fails with the reason and nothing remains.
func TestFailedCreateLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	f := startFog(t, dir, func(c *server.Config) { c.Controller.LocaleOK = func(string) bool { return true } })
	r := f.call("PUT", miPath("rg-fail", "broken"), miBody("eastus", map[string]any{"collation": "xx_YY.UTF-8"}))
	st := f.wait(r)
	if st["status"] != "Failed" {
		t.Fatalf("operation = %v, want Failed", st)
	}
	e := st["error"].(map[string]any)
	if e["code"] != "ProvisioningFailed" || !strings.Contains(e["message"].(string), "initdb") {
		t.Errorf("error = %v, want ProvisioningFailed naming initdb", e)
	}
	if res := f.call("GET", r.Header.Get("Location"), nil); res.Status != http.StatusBadRequest || res.code() != "ProvisioningFailed" {
		t.Errorf("Location after failure = %d %s", res.Status, res.Body)
	}
	if g := f.call("GET", miPath("rg-fail", "broken"), nil); g.Status != http.StatusNotFound {
		t.Errorf("GET after failed create = %d, want 404", g.Status)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "regions", "eastus", "*")); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
	if _, err := os.Stat(filepath.Join(dir, "regions", "eastus")); err != nil && !os.IsNotExist(err) {
		t.Error(err)
	}
	// The name is free again.
	f.createInstance("rg-fail", "broken", "eastus", nil)
}

func TestDNSZonePartner(t *testing.T) {
	f := startFog(t, "")
	a := f.createInstance("rg-a", "zone-a", "eastus", nil)
	b := f.createInstance("rg-b", "zone-b", "westus", map[string]any{"dnsZonePartner": a["id"]})
	za, zb := props(a)["dnsZone"], props(b)["dnsZone"]
	if za != zb || len(za.(string)) != 12 {
		t.Fatalf("dnsZone a=%v b=%v, want equal 12-hex-digit zones", za, zb)
	}
	if !strings.EqualFold(props(b)["dnsZonePartner"].(string), a["id"].(string)) {
		t.Errorf("dnsZonePartner = %v", props(b)["dnsZonePartner"])
	}
	c := f.createInstance("rg-a", "zone-c", "eastus", nil)
	if props(c)["dnsZone"] == za {
		t.Error("an instance without a partner got another's zone")
	}
	if props(a)["host"] == props(c)["host"] {
		t.Error("two instances share an address")
	}
	// Lists by resource group and by subscription.
	byRG := f.call("GET", "/subscriptions/"+sub+"/resourceGroups/rg-a/providers/Microsoft.Sql/managedInstances", nil).json(t)
	if n := len(byRG["value"].([]any)); n != 2 {
		t.Errorf("list rg-a = %d instances, want 2", n)
	}
	bySub := f.call("GET", "/subscriptions/"+sub+"/providers/Microsoft.Sql/managedInstances", nil).json(t)
	if n := len(bySub["value"].([]any)); n != 3 {
		t.Errorf("list subscription = %d instances, want 3", n)
	}
	// Resource group names compare case-insensitively, as in ARM.
	if g := f.call("GET", miPath("RG-A", "zone-a"), nil); g.Status != http.StatusOK {
		t.Errorf("GET with another case of the resource group = %d", g.Status)
	}
}
