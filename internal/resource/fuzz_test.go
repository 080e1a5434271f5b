package resource

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/fogdb/fog/internal/fault"
)

var fuzzEnv = Env{Regions: []string{"eastus", "westus"}, LocaleOK: func(string) bool { return true },
	Lookup: func(string) (*ManagedInstance, error) { return nil, nil }}

// FuzzInstanceBody: any JSON body of a managed-instance PUT is validated or refused, never a
// panic; an accepted body yields an instance with a name and a location.
func FuzzInstanceBody(f *testing.F) {
	f.Add([]byte(`{"location":"eastus","properties":{"administratorLogin":"fogadmin","administratorLoginPassword":"Str0ng-Password-123!","vCores":8,"storageSizeInGB":64}}`))
	f.Add([]byte(`{"location":"East US","sku":{"name":"BC_Gen5"},"properties":{"timezoneId":"Pacific Standard Time","collation":"SQL_Latin1_General_CP1_CI_AS"}}`))
	f.Add([]byte(`{"location":"","properties":{"vCores":-1,"storageSizeInGB":1e308}}`))
	f.Add([]byte(`{"properties":null,"tags":{"a":"b"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var body InstanceJSON
		if json.Unmarshal(b, &body) != nil {
			return
		}
		m, _, aerr := ApplyInstance(fuzzEnv, nil, "00000000-0000-0000-0000-000000000000", "rg", "mi1", body)
		if aerr == nil && (m == nil || m.Name == "" || m.Location == "") {
			t.Fatalf("accepted %s as %+v", b, m)
		}
		var fe *fault.Error
		if aerr != nil && (!errors.As(aerr, &fe) || fe.Code == "" || fe.Message == "") {
			t.Fatalf("an error without code or message for %s: %+v", b, aerr)
		}
	})
}

// FuzzFailoverGroupBody: any JSON body of a failover-group PUT is validated or refused with
// an ARM code, never a panic.
func FuzzFailoverGroupBody(f *testing.F) {
	f.Add([]byte(`{"properties":{"readWriteEndpoint":{"failoverPolicy":"Manual"},"partnerRegions":[{"location":"westus"}],"managedInstancePairs":[{"primaryManagedInstanceId":"/subscriptions/s/resourceGroups/r/providers/Microsoft.Sql/managedInstances/a","partnerManagedInstanceId":"/subscriptions/s/resourceGroups/r/providers/Microsoft.Sql/managedInstances/b"}]}}`))
	f.Add([]byte(`{"properties":{"readWriteEndpoint":{"failoverPolicy":"Automatic","failoverWithDataLossGracePeriodMinutes":60,"maxDataLossBytes":-5,"automaticFailoverMode":"ObserveOnly"}}}`))
	f.Add([]byte(`{"properties":{"readOnlyEndpoint":{"failoverPolicy":"x"},"secondaryType":"Standby","partnerRegions":[],"managedInstancePairs":[{},{}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var body FailoverGroupJSON
		if json.Unmarshal(b, &body) != nil {
			return
		}
		spec, aerr := ValidateFailoverGroupBody(body, 60)
		if aerr == nil && spec == nil {
			t.Fatalf("neither a spec nor an error for %s", b)
		}
		if aerr == nil && spec.ReadWritePolicy == "Automatic" && (spec.GraceMinutes == nil || *spec.GraceMinutes < 60) {
			t.Fatalf("accepted an Automatic policy under the minimum grace period: %s", b)
		}
	})
}

// FuzzNames: the name rules never panic.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"mi1", "", "-x", "a--b", "ÄÖ", "rg.name_(1)", "x\x00y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = ValidateInstanceName(s)
		_ = ValidateResourceGroupName(s)
		_ = ValidateDatabaseName(s)
		_ = ValidateFailoverGroupName(s)
		_ = ValidatePassword(s, "fogadmin")
	})
}
