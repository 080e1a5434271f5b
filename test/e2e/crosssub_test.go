package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestCrossSubscriptionGroup: the how-to's "Create group between instances in different
// subscriptions": the secondary lives in another subscription; the group is created on the
// primary's side, shows each side in its own subscription, and fails over.
func TestCrossSubscriptionGroup(t *testing.T) {
	f := startFog(t, "")
	const sub2 = "11111111-2222-4333-8444-555555555555"
	prim := f.createInstance("rg-x", "xs-p", "eastus", nil)
	secPath := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-y/providers/Microsoft.Sql/managedInstances/xs-s", sub2)
	f.mustSucceed(f.call("PUT", secPath, miBody("westus", map[string]any{"dnsZonePartner": prim["id"]})))
	sec := f.call("GET", secPath, nil).json(t)
	if !strings.Contains(sec["id"].(string), sub2) {
		t.Fatalf("secondary id %v", sec["id"])
	}
	gp := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-x/providers/Microsoft.Sql/locations/eastus/instanceFailoverGroups/xs", sub)
	f.mustSucceed(f.call("PUT", gp, groupBody(prim["id"].(string), sec["id"].(string), "westus", nil)))
	secSide := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-y/providers/Microsoft.Sql/locations/westus/instanceFailoverGroups/xs", sub2)
	r := f.call("GET", secSide, nil)
	if r.Status != http.StatusOK || props(r.json(t))["replicationRole"] != "Secondary" {
		t.Fatalf("GET of the group in the secondary's subscription = %d %s", r.Status, r.Body)
	}
	f.mustSucceed(f.call("POST", secSide+"/failover", nil))
	if g := f.call("GET", secSide, nil).json(t); props(g)["replicationRole"] != "Primary" {
		t.Errorf("after the failover the secondary's subscription side is %v", props(g)["replicationRole"])
	}
}
