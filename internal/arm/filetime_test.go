package arm

import (
	"testing"
	"time"
)

// TestRestorableDroppedDatabaseID checks the file times against the az CLI's arithmetic
// (_to_filetimeutc: seconds since 1601 times 10^7 plus microseconds times 10) and the ids
// both ways.
func TestRestorableDroppedDatabaseID(t *testing.T) {
	at := time.Date(2026, 12, 3, 22, 12, 56, 695569000, time.UTC)
	// what the az CLI computes for this time
	if got, want := FileTime(at), int64(134408095766955690); got != want {
		t.Fatalf("FileTime = %d, want %d", got, want)
	}
	id := RestorableDroppedDatabaseID("00000000-0000-0000-0000-000000000001", "rg", "mi", "shop floor", at)
	for _, in := range []string{id, "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/mi/restorableDroppedDatabases/shop%20floor,134408095766955690"} {
		p, db, ft, err := ParseRestorableDroppedDatabaseID(in)
		if err != nil || p.Name != "mi" || p.ResourceGroup != "rg" || db != "shop floor" || ft != FileTime(at) {
			t.Fatalf("Parse(%s) = %+v %q %d %v", in, p, db, ft, err)
		}
	}
	for _, bad := range []string{"", "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/mi/databases/shop,1",
		"/subscriptions/x/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/mi/restorableDroppedDatabases/shop",
		"/subscriptions/x/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/mi/restorableDroppedDatabases/shop,abc",
		"/subscriptions/x/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/mi/restorableDroppedDatabases/,5"} {
		if _, _, _, err := ParseRestorableDroppedDatabaseID(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

func TestRecoverableDatabaseID(t *testing.T) {
	id := RecoverableDatabaseID("sub1", "rg", "mi", "shop floor")
	for _, in := range []string{id, "/subscriptions/sub1/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/mi/recoverableDatabases/shop%20floor/"} {
		p, db, err := ParseRecoverableDatabaseID(in)
		if err != nil || p.Subscription != "sub1" || p.ResourceGroup != "rg" || p.Name != "mi" || db != "shop floor" {
			t.Errorf("ParseRecoverableDatabaseID(%q) = %+v, %q, %v", in, p, db, err)
		}
	}
	for _, bad := range []string{"", "shop",
		"/subscriptions/x/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/mi/recoverableDatabases/",
		"/subscriptions/x/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/mi/databases/shop",
		"/subscriptions/x/resourceGroups/rg/providers/Microsoft.Sql/servers/mi/recoverableDatabases/shop"} {
		if _, _, err := ParseRecoverableDatabaseID(bad); err == nil {
			t.Errorf("ParseRecoverableDatabaseID(%q) accepted", bad)
		}
	}
}
