package cli

import (
	"strings"
	"testing"
)

// Bad command lines of ltr-policy and ltr-backup are usage errors (exit 2) that never reach
// the API.
func TestLTRUsageErrors(t *testing.T) {
	f := &fakeAPI{days: 7}
	cfg := startFake(t, f)
	id := "/subscriptions/" + testSub + "/providers/Microsoft.Sql/locations/eastus/longTermRetentionManagedInstances/mi1/longTermRetentionDatabases/sales/longTermRetentionManagedInstanceBackups/u1;20261204-010000F"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ltr-policy", "set", "-g", "rg", "--mi", "mi1", "-n", "sales", "--weekly-retention", "12 weeks"}, "argument --weekly-retention"},
		{[]string{"ltr-policy", "set", "-g", "rg", "--mi", "mi1", "-n", "sales", "--yearly-retention", "P5Y", "--week-of-year", "first"}, "argument --week-of-year"},
		{[]string{"ltr-policy", "set", "-g", "rg", "-n", "sales", "--weekly-retention", "P1W"}, "argument --mi"},
		{[]string{"ltr-policy", "show", "-g", "rg", "--mi", "mi1"}, "argument --name"},
		{[]string{"ltr-backup", "list", "--mi", "mi1"}, "argument --location"},
		{[]string{"ltr-backup", "list", "-l", "eastus", "-d", "sales"}, "argument --mi"},
		{[]string{"ltr-backup", "list", "-l", "eastus", "--database-state", "Gone"}, "argument --database-state"},
		{[]string{"ltr-backup", "show", "-l", "eastus", "--mi", "mi1", "-d", "sales"}, "argument --backup-name"},
		{[]string{"ltr-backup", "show", "--backup-id", "/subscriptions/" + testSub + "/backups/1"}, "argument --backup-id"},
		{[]string{"ltr-backup", "delete", "--backup-id", id}, "argument --yes"},
		{[]string{"ltr-backup", "restore", "--dest-database", "d", "--dest-mi", "mi1", "--dest-resource-group", "rg"}, "argument --backup-id"},
		{[]string{"ltr-backup", "restore", "--backup-id", id, "--dest-mi", "mi1", "--dest-resource-group", "rg"}, "argument --dest-database"},
		{[]string{"ltr-backup", "restore", "--backup-id", id, "--dest-database", "d", "--dest-resource-group", "rg"}, "argument --dest-mi"},
		{[]string{"ltr-backup", "restore", "--backup-id", id, "--dest-database", "d", "--dest-mi", "mi1"}, "argument --dest-resource-group"},
	} {
		_, _, err := run(cfg, append([]string{"sql", "midb"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || ExitCode(err) != 2 {
			t.Errorf("%s: err = %v (exit %d), want %q, exit 2", strings.Join(tc.args, " "), err, ExitCode(err), tc.want)
		}
	}
	if len(f.requests) != 0 {
		t.Errorf("bad command lines reached the API: %v", f.requests)
	}
}
