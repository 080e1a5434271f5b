package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestFailoverGroupCLI(t *testing.T) {
	f := startFog(t, "")
	p := newPair(t, f, "cli")
	out, _, err := f.runCLI("", "sql", "instance-failover-group", "create", "-n", "cli", "-g", "rg-p", "--mi", "cli-p",
		"--partner-mi", "cli-s", "--partner-resource-group", "rg-s", "--failover-policy", "Automatic", "--grace-period", "2")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	var g map[string]any
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatalf("create printed %q", out)
	}
	rw := g["readWriteEndpoint"].(map[string]any)
	if g["replicationRole"] != "Primary" || g["replicationState"] != "CATCH_UP" || rw["failoverWithDataLossGracePeriodMinutes"] != 120.0 || g["resourceGroup"] != "rg-p" {
		t.Errorf("create output = %v", g)
	}
	// The defaults: Manual, no grace period.
	p2 := newPair(t, f, "clidef")
	_ = p2
	out2, _, err := f.runCLI("", "sql", "instance-failover-group", "create", "-n", "clidef", "-g", "rg-p", "--mi", "clidef-p",
		"--partner-mi", "clidef-s", "--partner-resource-group", "rg-s")
	if err != nil || !strings.Contains(out2, `"failoverPolicy": "Manual"`) || strings.Contains(out2, "GracePeriod") {
		t.Fatalf("create with defaults: %q, %v", out2, err)
	}
	// show on the secondary side.
	out, _, err = f.runCLI("", "sql", "instance-failover-group", "show", "-n", "cli", "-g", "rg-s", "-l", "westus")
	if err != nil || !strings.Contains(out, `"replicationRole": "Secondary"`) {
		t.Fatalf("show on secondary: %q, %v", out, err)
	}
	// set-primary on the side that is primary does nothing.
	if out, _, err := f.runCLI("", "sql", "instance-failover-group", "set-primary", "-n", "cli", "-g", "rg-p", "-l", "eastus"); err != nil || out != "" {
		t.Errorf("set-primary on the primary: %q, %v; want a silent no-op", out, err)
	}
	out, _, err = f.runCLI("", "sql", "instance-failover-group", "set-primary", "-n", "cli", "-g", "rg-s", "-l", "westus")
	if err != nil || !strings.Contains(out, `"replicationRole": "Primary"`) {
		t.Fatalf("set-primary: %q, %v", out, err)
	}
	// update on the new primary: Manual drops the grace period.
	out, _, err = f.runCLI("", "sql", "instance-failover-group", "update", "-n", "cli", "-g", "rg-s", "-l", "westus", "--failover-policy", "Manual")
	if err != nil || strings.Contains(out, "GracePeriod") || !strings.Contains(out, `"failoverPolicy": "Manual"`) {
		t.Fatalf("update: %q, %v", out, err)
	}
	if _, _, err := f.runCLI("", "sql", "instance-failover-group", "update", "-n", "cli", "-g", "rg-p", "-l", "eastus", "--failover-policy", "Manual"); err == nil ||
		!strings.Contains(err.Error(), "InstanceFailoverGroupUpdateOrDeleteRequestOnSecondary") {
		t.Errorf("update on the secondary: %v", err)
	}
	// Fog's own policy fields: the budget and observe-only; the deployment's minimum grace
	// period (Azure's 60 minutes by default) holds for minutes too.
	out, _, err = f.runCLI("", "sql", "instance-failover-group", "update", "-n", "cli", "-g", "rg-s", "-l", "westus", "--failover-policy", "Automatic",
		"--grace-period-minutes", "90", "--max-data-loss-bytes", "65536", "--automatic-failover-mode", "ObserveOnly")
	if err != nil || !strings.Contains(out, `"maxDataLossBytes": 65536`) || !strings.Contains(out, `"automaticFailoverMode": "ObserveOnly"`) ||
		!strings.Contains(out, `"failoverWithDataLossGracePeriodMinutes": 90`) {
		t.Errorf("update with Fog's policy fields: %q, %v", out, err)
	}
	if _, _, err := f.runCLI("", "sql", "instance-failover-group", "update", "-n", "cli", "-g", "rg-s", "-l", "westus", "--grace-period-minutes", "5"); err == nil ||
		!strings.Contains(err.Error(), "LessThanMinimumGracePeriodValues") {
		t.Errorf("a 5-minute grace period under the default minimum: %v", err)
	}
	if _, _, err := f.runCLI("", "sql", "instance-failover-group", "update", "-n", "cli", "-g", "rg-s", "-l", "westus", "--automatic-failover-mode", "Maybe"); err == nil ||
		!strings.Contains(err.Error(), "InvalidAutomaticFailoverMode") {
		t.Errorf("a bad automatic-failover-mode: %v", err)
	}
	out, _, err = f.runCLI("", "sql", "instance-failover-group", "update", "-n", "cli", "-g", "rg-s", "-l", "westus", "--failover-policy", "Manual")
	if err != nil || strings.Contains(out, "maxDataLoss") || strings.Contains(out, "automaticFailoverMode") {
		t.Errorf("back to Manual keeps Automatic-only fields: %q, %v", out, err)
	}
	if _, _, err := f.runCLI("", "sql", "instance-failover-group", "update", "-n", "cli", "-g", "rg-s", "-l", "westus", "--failover-policy", "Sometimes"); err == nil ||
		!strings.Contains(err.Error(), "argument --failover-policy") {
		t.Errorf("bad --failover-policy: %v", err)
	}
	// forced, back to eastus.
	out, _, err = f.runCLI("", "sql", "instance-failover-group", "set-primary", "-n", "cli", "-g", "rg-p", "-l", "eastus", "--allow-data-loss")
	if err != nil || !strings.Contains(out, `"replicationRole": "Primary"`) {
		t.Fatalf("set-primary --allow-data-loss: %q, %v", out, err)
	}
	out, _, err = f.runCLI("", "sql", "instance-failover-group", "list", "-g", "rg-p", "-l", "eastus")
	if err != nil || !strings.Contains(out, `"name": "cli"`) {
		t.Fatalf("list: %q, %v", out, err)
	}
	p.waitState(t, "CATCH_UP", 60e9)
	if _, _, err := f.runCLI("", "sql", "instance-failover-group", "delete", "-n", "cli", "-g", "rg-p", "-l", "eastus"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, _, err := f.runCLI("", "sql", "instance-failover-group", "show", "-n", "cli", "-g", "rg-p", "-l", "eastus"); err == nil || !strings.Contains(err.Error(), "ResourceNotFound") {
		t.Errorf("show after delete: %v", err)
	}
}
