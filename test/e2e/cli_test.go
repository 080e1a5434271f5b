package e2e

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/cli"
)

func TestCLI(t *testing.T) {
	f := startFog(t, "")
	out, _, err := f.runCLI("", "sql", "mi", "create", "-g", "rg-cli", "-n", "cli1", "-l", "westus",
		"-u", "fogadmin", "-p", password, "--edition", "BusinessCritical", "-f", "Gen5", "-c", "16",
		"--storage", "64GB", "--timezone-id", "W. Europe Standard Time", "--license-type", "BasePrice",
		"--tags", "env=test owner=ops")
	if err != nil {
		t.Fatalf("mi create: %v", err)
	}
	var mi map[string]any
	if err := json.Unmarshal([]byte(out), &mi); err != nil {
		t.Fatalf("mi create printed %q: %v", out, err)
	}
	// az's shape: properties flattened, resourceGroup added.
	sku := mi["sku"].(map[string]any)
	for k, want := range map[string]any{
		"name": "cli1", "resourceGroup": "rg-cli", "location": "westus", "vCores": 16.0, "storageSizeInGB": 64.0,
		"timezoneId": "W. Europe Standard Time", "licenseType": "BasePrice", "provisioningState": "Succeeded", "state": "Ready",
	} {
		if mi[k] != want {
			t.Errorf("create output %s = %v, want %v", k, mi[k], want)
		}
	}
	if sku["tier"] != "BusinessCritical" || sku["name"] != "BC_Gen5" {
		t.Errorf("sku = %v", sku)
	}
	if tags := mi["tags"].(map[string]any); tags["env"] != "test" || tags["owner"] != "ops" {
		t.Errorf("tags = %v", tags)
	}
	if _, ok := mi["properties"]; ok {
		t.Error("output keeps a properties object; az flattens it")
	}

	out, _, err = f.runCLI("", "sql", "mi", "update", "-g", "rg-cli", "-n", "cli1", "--capacity", "24", "--storage", "1TB")
	if err != nil {
		t.Fatalf("mi update: %v", err)
	}
	_ = json.Unmarshal([]byte(out), &mi)
	if mi["vCores"] != 24.0 || mi["storageSizeInGB"] != 1024.0 || mi["timezoneId"] != "W. Europe Standard Time" {
		t.Errorf("after update vCores=%v storage=%v tz=%v, want 24, 1024, unchanged", mi["vCores"], mi["storageSizeInGB"], mi["timezoneId"])
	}
	out, _, err = f.runCLI("", "sql", "mi", "list", "-g", "rg-cli")
	var list []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0]["name"] != "cli1" {
		t.Fatalf("mi list = %q, %v", out, err)
	}

	if _, _, err := f.runCLI("", "sql", "midb", "create", "-g", "rg-cli", "--mi", "cli1", "-n", "appdb"); err != nil {
		t.Fatalf("midb create: %v", err)
	}
	out, _, err = f.runCLI("", "sql", "midb", "list", "-g", "rg-cli", "--mi", "cli1")
	if err != nil || !strings.Contains(out, `"name": "appdb"`) || !strings.Contains(out, `"resourceGroup": "rg-cli"`) {
		t.Fatalf("midb list = %q, %v", out, err)
	}
	if out, _, err = f.runCLI("", "sql", "midb", "show", "-g", "rg-cli", "--managed-instance", "cli1", "-n", "appdb"); err != nil || !strings.Contains(out, `"status": "Online"`) {
		t.Fatalf("midb show = %q, %v", out, err)
	}
	if _, _, err := f.runCLI("", "sql", "midb", "delete", "-g", "rg-cli", "--mi", "cli1", "-n", "appdb", "--yes"); err != nil {
		t.Fatalf("midb delete: %v", err)
	}

	// Errors carry the ARM code; bad flags name the flag.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sql", "mi", "show", "-g", "rg-cli", "-n", "nope"}, "(ResourceNotFound)"},
		{[]string{"sql", "mi", "create", "-g", "rg-cli", "-n", "x1", "-l", "eastus", "-u", "fogadmin", "-p", password, "--storage", "lots"}, "argument --storage"},
		{[]string{"sql", "mi", "create", "-g", "rg-cli", "-n", "x1", "-l", "eastus", "-u", "fogadmin", "-p", password, "--edition", "Premium"}, "argument --edition"},
		{[]string{"sql", "mi", "create", "-g", "rg-cli", "-n", "x1", "-l", "eastus", "-u", "fogadmin", "-p", password, "-c", "6"}, "(InvalidVCores)"},
		{[]string{"sql", "mi", "create", "-g", "rg-cli", "-n", "x1", "-l", "eastus", "-u", "fogadmin", "-p", "weak"}, "(InvalidPassword)"},
		{[]string{"sql", "mi", "create", "-g", "rg-cli", "-n", "x1", "-l", "eastus", "-u", "fogadmin"}, `"admin-password" not set`},
		{[]string{"sql", "midb", "list", "-g", "rg-cli"}, "argument --mi"},
		{[]string{"sql", "mi", "list", "-o", "xml"}, "argument --output"},
	} {
		_, _, err := f.runCLI("", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("fog %s: err = %v, want it to contain %q", strings.Join(tc.args, " "), err, tc.want)
		}
		var apiErr *cli.APIError
		if strings.HasPrefix(tc.want, "(") && !errors.As(err, &apiErr) {
			t.Errorf("fog %s: err %T is not an API error", strings.Join(tc.args, " "), err)
		}
	}
	if _, _, err := f.runCLI("", "sql", "mi", "show", "-g", "rg-cli", "-n", "cli1", "--config", "/nonexistent/client.json"); err == nil || !strings.Contains(err.Error(), "fog up") {
		t.Errorf("missing config: err = %v, want a hint to run fog up", err)
	}

	// Delete asks first; "n" (or no answer) keeps the instance.
	if _, stderr, err := f.runCLI("n\n", "sql", "mi", "delete", "-g", "rg-cli", "-n", "cli1"); err == nil || !strings.Contains(stderr, "Are you sure") {
		t.Fatalf("delete answered n: err=%v stderr=%q", err, stderr)
	}
	if _, _, err := f.runCLI("", "sql", "mi", "show", "-g", "rg-cli", "-n", "cli1"); err != nil {
		t.Fatalf("instance gone after a refused delete: %v", err)
	}
	// --no-wait returns before the operation ends.
	start := time.Now()
	if out, _, err := f.runCLI("", "sql", "mi", "delete", "-g", "rg-cli", "-n", "cli1", "--yes", "--no-wait"); err != nil || !strings.Contains(out, `"status": "InProgress"`) {
		t.Fatalf("delete --no-wait: %q, %v", out, err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("delete --no-wait took %s", time.Since(start))
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, _, err := f.runCLI("", "sql", "mi", "show", "-g", "rg-cli", "-n", "cli1")
		if err != nil && strings.Contains(err.Error(), "ResourceNotFound") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("instance not deleted a minute after delete --no-wait")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
