package resource

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/fogdb/fog/internal/fault"
)

func TestLongTermRetentionBody(t *testing.T) {
	for _, tc := range []struct {
		body string
		want LongTermRetention // Database "-": refused
	}{
		{`{"properties":{"weeklyRetention":"P12W","monthlyRetention":"p6m","yearlyRetention":"P5Y","weekOfYear":16}}`,
			LongTermRetention{Database: "db", Weekly: "P12W", Monthly: "P6M", Yearly: "P5Y", WeekOfYear: 16}},
		{`{"properties":{}}`, LongTermRetention{Database: "db", Weekly: "PT0S", Monthly: "PT0S", Yearly: "PT0S"}},
		{`{"properties":{"weeklyRetention":"PT0S","weekOfYear":null}}`, LongTermRetention{Database: "db", Weekly: "PT0S", Monthly: "PT0S", Yearly: "PT0S"}},
		{`{"properties":{"weeklyRetention":"P521W"}}`, LongTermRetention{Database: "-"}},
		{`{"properties":{"monthlyRetention":"six months"}}`, LongTermRetention{Database: "-"}},
		{`{"properties":{"yearlyRetention":"P1Y"}}`, LongTermRetention{Database: "-"}},
		{`{"properties":{"yearlyRetention":"P1Y","weekOfYear":53}}`, LongTermRetention{Database: "-"}},
		{`{"properties":{"weekOfYear":"1"}}`, LongTermRetention{Database: "-"}},
		{`{"properties":{"weekOfYear":1.5}}`, LongTermRetention{Database: "-"}},
	} {
		var b LongTermRetentionBody
		if err := json.Unmarshal([]byte(tc.body), &b); err != nil {
			t.Fatal(err)
		}
		got, err := b.Policy("db")
		if tc.want.Database == "-" {
			var f *fault.Error
			if !errors.As(err, &f) || f.Code != "InvalidParameterValue" {
				t.Errorf("Policy(%s) = %+v, %v; want InvalidParameterValue", tc.body, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Policy(%s) = %+v, %v; want %+v", tc.body, got, err, tc.want)
		}
	}
}

func TestParseLTRBackupID(t *testing.T) {
	b := LTRBackup{Subscription: "s", ResourceGroup: "rg", Location: "eastus", InstanceName: "mi", InstanceUID: "u-1", Database: "shop", Label: "20261204-010203F"}
	for _, rg := range []bool{false, true} {
		ref, err := ParseLTRBackupID(LTRBackupID(b, rg))
		if err != nil || ref.InstanceUID != "u-1" || ref.Label != b.Label || ref.Database != "shop" || ref.Instance != "mi" || (ref.ResourceGroup == "rg") != rg {
			t.Errorf("ParseLTRBackupID(LTRBackupID(rg %v)) = %+v, %v", rg, ref, err)
		}
	}
	for _, bad := range []string{"", "/subscriptions/s/backups/1",
		"/subscriptions/s/providers/Microsoft.Sql/locations/eastus/longTermRetentionManagedInstances/mi/longTermRetentionDatabases/shop/longTermRetentionManagedInstanceBackups/20261204-010203F",
		"/subscriptions/s/providers/Microsoft.Sql/locations/eastus/longTermRetentionManagedInstances/mi/longTermRetentionDatabases/shop/longTermRetentionManagedInstanceBackups/u;20261204-010203F_20261205-010203D",
		"/subscriptions/s/providers/Microsoft.Sql/locations/eastus/longTermRetentionManagedInstances/mi/longTermRetentionManagedInstanceBackups/u;20261204-010203F"} {
		if _, err := ParseLTRBackupID(bad); err == nil {
			t.Errorf("ParseLTRBackupID(%q) succeeded", bad)
		}
	}
}
