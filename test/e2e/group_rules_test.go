package e2e

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/server"
)

// TestFailoverGroupPrerequisites checks every create-time rule and its Azure error code.
func TestFailoverGroupPrerequisites(t *testing.T) {
	f := startFog(t, "")
	p := f.createInstance("rg-p", "pre-p", "eastus", nil)
	pid := p["id"].(string)
	zone := map[string]any{"dnsZonePartner": pid}
	with := func(extra map[string]any) map[string]any {
		m := map[string]any{"dnsZonePartner": pid}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	good := f.createInstance("rg-s", "pre-s", "westus", zone)
	sameRegion := f.createInstance("rg-s", "pre-east", "eastus", zone)
	tier := f.createInstance("rg-s", "pre-bc", "westus", nil)
	f.mustSucceed(f.call("PUT", miPath("rg-s", "pre-bc"), map[string]any{"location": "westus", "sku": map[string]any{"tier": "BusinessCritical"}, "properties": map[string]any{}}))
	_ = tier
	storage := f.createInstance("rg-s", "pre-64", "westus", with(map[string]any{"storageSizeInGB": 64}))
	noZone := f.createInstance("rg-s", "pre-zone", "westus", nil)
	tz := f.createInstance("rg-s", "pre-tz", "westus", with(map[string]any{"timezoneId": "Europe/Berlin"}))
	format := f.createInstance("rg-s", "pre-fmt", "westus", with(map[string]any{"databaseFormat": "AlwaysUpToDate"}))
	pool := f.createInstance("rg-s", "pre-pool", "westus", with(map[string]any{"instancePoolId": "/subscriptions/" + sub + "/resourceGroups/rg-s/providers/Microsoft.Sql/instancePools/pool1"}))
	withDB := f.createInstance("rg-s", "pre-db", "westus", zone)
	f.mustSucceed(f.call("PUT", miPath("rg-s", "pre-db")+"/databases/existing", map[string]any{}))
	bcID := miPath("rg-s", "pre-bc")

	manual := map[string]any{"failoverPolicy": "Manual"}
	body := func(partner map[string]any, region string, rw map[string]any) map[string]any {
		return groupBody(pid, partner["id"].(string), region, rw)
	}
	twoPartners := body(good, "westus", manual)
	twoPartners["properties"].(map[string]any)["partnerRegions"] = []any{map[string]any{"location": "westus"}, map[string]any{"location": "eastus"}}
	twoPairs := body(good, "westus", manual)
	twoPairs["properties"].(map[string]any)["managedInstancePairs"] = []any{
		map[string]any{"primaryManagedInstanceId": pid, "partnerManagedInstanceId": good["id"]},
		map[string]any{"primaryManagedInstanceId": pid, "partnerManagedInstanceId": storage["id"]}}
	noRW := body(good, "westus", manual)
	delete(noRW["properties"].(map[string]any), "readWriteEndpoint")
	samePair := groupBody(pid, pid, "westus", manual)

	for _, tc := range []struct {
		name, rg, loc, group string
		body                 any
		status               int
		code                 string
	}{
		{"same region", "rg-p", "eastus", "g1", body(sameRegion, "eastus", manual), 400, "InvalidFailoverGroupRegion"},
		{"partner region mismatch", "rg-p", "eastus", "g1", body(good, "centralus", manual), 400, "FailoverGroupRegionMismatch"},
		{"two partner regions", "rg-p", "eastus", "g1", twoPartners, 400, "InstanceFailoverGroupCreateOrUpdateRequestUnsupportedPartnerCount"},
		{"two pairs", "rg-p", "eastus", "g1", twoPairs, 400, "InstanceFailoverGroupCreateOrUpdateRequestUnsupportedPairCount"},
		{"same instance twice", "rg-p", "eastus", "g1", samePair, 400, "InstanceFailoverGroupCreateOrUpdateRequestDuplicatePartner"},
		{"tier", "rg-p", "eastus", "g1", groupBody(pid, bcID, "westus", manual), 400, "ServerEditionMismatch"},
		{"storage size", "rg-p", "eastus", "g1", body(storage, "westus", manual), 400, "GeoDrInstanceSizeMismatch"},
		{"dns zone", "rg-p", "eastus", "g1", body(noZone, "westus", manual), 400, "DnsZoneMismatch"},
		{"timezone", "rg-p", "eastus", "g1", body(tz, "westus", manual), 400, "GeoDrTimezoneMismatch"},
		{"database format", "rg-p", "eastus", "g1", body(format, "westus", manual), 400, "ManagedInstanceEstablishingFailoverGroupGeoPrimaryWithNewerVersionEditionThanSecondary"},
		{"instance pool", "rg-p", "eastus", "g1", body(pool, "westus", manual), 400, "ManagedInstanceGeoDRNotAllowedForInstancePool"},
		{"secondary not empty", "rg-p", "eastus", "g1", body(withDB, "westus", manual), 400, "GeoDrSecondaryInstanceNotEmpty"},
		{"no readWriteEndpoint", "rg-p", "eastus", "g1", noRW, 400, "InstanceFailoverGroupCreateOrUpdateRequestInvalidReadWriteEndpoint"},
		{"no failover policy", "rg-p", "eastus", "g1", body(good, "westus", map[string]any{}), 400, "InstanceFailoverGroupCreateOrUpdateRequestInvalidReadWriteFailoverPolicy"},
		{"automatic without grace", "rg-p", "eastus", "g1", body(good, "westus", map[string]any{"failoverPolicy": "Automatic"}), 400, "InstanceFailoverGroupCreateOrUpdateRequestInvalidReadWriteEndpointFields"},
		{"grace below an hour", "rg-p", "eastus", "g1", body(good, "westus", map[string]any{"failoverPolicy": "Automatic", "failoverWithDataLossGracePeriodMinutes": 30}), 400, "InstanceFailoverGroupCreateOrUpdateRequestLessThanMinimumGracePeriodValues"},
		{"grace with manual", "rg-p", "eastus", "g1", body(good, "westus", map[string]any{"failoverPolicy": "Manual", "failoverWithDataLossGracePeriodMinutes": 60}), 400, "InstanceFailoverGroupCreateOrUpdateRequestInvalidReadWriteEndpointFieldsForManualPolicy"},
		{"negative grace", "rg-p", "eastus", "g1", body(good, "westus", map[string]any{"failoverPolicy": "Automatic", "failoverWithDataLossGracePeriodMinutes": -60}), 400, "InstanceFailoverGroupCreateOrUpdateRequestNegativeGracePeriodValues"},
		{"bad policy", "rg-p", "eastus", "g1", body(good, "westus", map[string]any{"failoverPolicy": "Sometimes"}), 400, "InstanceFailoverGroupCreateOrUpdateRequestInvalidReadWriteFailoverPolicy"},
		{"bad group name", "rg-p", "eastus", "G_1", body(good, "westus", manual), 409, "InvalidFailoverGroupName"},
		{"name taken by an instance", "rg-p", "eastus", "pre-s", body(good, "westus", manual), 409, "InstanceFailoverGroupDnsRecordInUse"},
		{"addressed to the secondary's group", "rg-s", "westus", "g1", body(good, "westus", manual), 400, "InstanceFailoverGroupCreateOrUpdateRequestInvalidPrimary"},
		{"missing partner", "rg-p", "eastus", "g1", groupBody(pid, miPath("rg-s", "nope"), "westus", manual), 400, "InstanceFailoverGroupCreateOrUpdateRequestInvalidPartner"},
		{"malformed JSON", "rg-p", "eastus", "g1", `{"properties":`, 400, "InstanceFailoverGroupCreateOrUpdateRequestInvalid"},
		{"unknown region", "rg-p", "mars", "g1", body(good, "westus", manual), 400, "LocationNotAvailableForResourceType"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.call("PUT", groupPath(tc.rg, tc.loc, tc.group), tc.body)
			if r.Status != tc.status || r.code() != tc.code {
				t.Fatalf("PUT = %d %s, want %d %s", r.Status, r.Body, tc.status, tc.code)
			}
		})
	}
	if r := f.call("PUT", groupPath("rg-p", "eastus", "g1"), body(good, "westus", manual)); r.Status != http.StatusAccepted {
		t.Fatalf("valid create = %d %s", r.Status, r.Body)
	} else {
		f.mustSucceed(r)
	}
	// An instance belongs to one group at most; its name stays unique.
	other := f.createInstance("rg-s", "pre-s2", "westus", zone)
	if r := f.call("PUT", groupPath("rg-p", "eastus", "g2"), body(other, "westus", manual)); r.Status != http.StatusConflict || r.code() != "InstanceFailoverGroupAlreadyExists" {
		t.Errorf("second group on the same primary = %d %s, want 409 InstanceFailoverGroupAlreadyExists", r.Status, r.Body)
	}
	if r := f.call("DELETE", miPath("rg-p", "pre-p"), nil); r.Status != http.StatusConflict || r.code() != "ManagedInstanceInFailoverGroup" {
		t.Errorf("delete of a group member = %d %s, want 409 ManagedInstanceInFailoverGroup", r.Status, r.Body)
	}
}

// TestFailoverGroupNetworkCheck: the secondary's agent must reach the primary's replication
// endpoint, or the create fails naming the address and the error.
func TestFailoverGroupNetworkCheck(t *testing.T) {
	// The agents look only every hour here, so a killed postgres stays down and is not seen
	// to be down: what finds it is the reach test of the create.
	f := startFog(t, "", func(c *server.Config) { c.Agent.Resync, c.Agent.Observe = time.Hour, time.Hour })
	p := newPair(t, f, "net")
	pm := postmasterOf(t, f, p.prim)
	if err := syscall.Kill(pm, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	r := f.call("PUT", groupPath("rg-p", "eastus", "net"), groupBody(p.prim["id"].(string), p.sec["id"].(string), "westus", nil))
	addr := props(p.prim)["host"].(string) + ":5432"
	if r.Status != http.StatusBadRequest || r.code() != "InstanceFailoverGroupIncorrectNetworkingConfiguration" ||
		!strings.Contains(string(r.Body), addr) || !strings.Contains(string(r.Body), "refused") {
		t.Fatalf("create with an unreachable primary = %d %s, want 400 InstanceFailoverGroupIncorrectNetworkingConfiguration naming %s and the error", r.Status, r.Body, addr)
	}
	if g := f.call("GET", groupPath("rg-p", "eastus", "net"), nil); g.Status != http.StatusNotFound {
		t.Errorf("GET after the failed create = %d, want 404", g.Status)
	}
}

// TestFailoverGroupSidesAndBusy checks which side may do what, and that operations do not
// overlap.
func TestFailoverGroupSidesAndBusy(t *testing.T) {
	f := startFog(t, "")
	p := newPair(t, f, "sides")
	r := f.call("PUT", groupPath("rg-p", "eastus", "sides"), groupBody(p.prim["id"].(string), p.sec["id"].(string), "westus", nil))
	if r.Status != http.StatusAccepted {
		t.Fatalf("create = %d %s", r.Status, r.Body)
	}
	// While seeding: a failover is refused as busy.
	if fo := f.call("POST", groupPath("rg-s", "westus", "sides")+"/failover", nil); fo.Status != http.StatusConflict || fo.code() != "InstanceFailoverGroupBusy" {
		t.Errorf("failover during create = %d %s, want 409 InstanceFailoverGroupBusy", fo.Status, fo.Body)
	}
	f.mustSucceed(r)

	for _, tc := range []struct {
		method, path, code string
		body               any
	}{
		{"PUT", groupPath("rg-s", "westus", "sides"), "InstanceFailoverGroupUpdateOrDeleteRequestOnSecondary", groupBody(p.prim["id"].(string), p.sec["id"].(string), "westus", nil)},
		{"DELETE", groupPath("rg-s", "westus", "sides"), "InstanceFailoverGroupUpdateOrDeleteRequestOnSecondary", nil},
		{"POST", groupPath("rg-p", "eastus", "sides") + "/failover", "InstanceFailoverGroupFailoverRequestOnPrimary", nil},
		{"POST", groupPath("rg-p", "eastus", "sides") + "/forceFailoverAllowDataLoss", "InstanceFailoverGroupFailoverRequestOnPrimary", nil},
	} {
		if r := f.call(tc.method, tc.path, tc.body); r.Status != http.StatusBadRequest || r.code() != tc.code {
			t.Errorf("%s %s = %d %s, want 400 %s", tc.method, tc.path, r.Status, r.Body, tc.code)
		}
	}
	// Not addressed at either side: not found.
	if r := f.call("GET", groupPath("rg-x", "eastus", "sides"), nil); r.Status != http.StatusNotFound {
		t.Errorf("GET at another resource group = %d, want 404", r.Status)
	}
	// Two failovers at once: the second is busy.
	first := f.call("POST", groupPath("rg-s", "westus", "sides")+"/failover", nil)
	second := f.call("POST", groupPath("rg-s", "westus", "sides")+"/failover", nil)
	upd := f.call("PUT", groupPath("rg-p", "eastus", "sides"), groupBody(p.prim["id"].(string), p.sec["id"].(string), "westus", nil))
	f.mustSucceed(first)
	if second.Status != http.StatusConflict || second.code() != "InstanceFailoverGroupBusy" {
		t.Errorf("second concurrent failover = %d %s, want 409 InstanceFailoverGroupBusy", second.Status, second.Body)
	}
	if upd.Status != http.StatusConflict || upd.code() != "InstanceFailoverGroupBusy" {
		t.Errorf("update during failover = %d %s, want 409 InstanceFailoverGroupBusy", upd.Status, upd.Body)
	}
	// List by location shows the group on both sides.
	for _, side := range [][2]string{{"rg-p", "eastus"}, {"rg-s", "westus"}} {
		l := f.call("GET", strings.TrimSuffix(groupPath(side[0], side[1], "x"), "/x"), nil)
		if l.Status != http.StatusOK || len(l.json(t)["value"].([]any)) != 1 {
			t.Errorf("list at %v = %d %s", side, l.Status, l.Body)
		}
	}
}
