package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCrossSubscriptionGroup: the how-to's "Create group between instances in different
// subscriptions": the secondary lives in another subscription; the group is created on the
// primary's side, shows each side in its own subscription, and fails over. With roles: a
// contributor on one subscription only cannot create the group (a partner it cannot read is
// missing to it; one it can read but not write is refused), a Reader cannot fail it over,
// a contributor on both can; a group across tenants is refused, and a principal of another
// tenant cannot reach the subscription at all.
func TestCrossSubscriptionGroup(t *testing.T) {
	f := startFog(t, "")
	const sub2 = "11111111-2222-4333-8444-555555555555"
	token := func(name string, extra ...string) string {
		out, _, err := f.runCLI("", append([]string{"token", "create", "--name", name}, extra...)...)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + strings.TrimSpace(out)
	}
	assign := func(who, role, scope string) {
		if _, _, err := f.runCLI("", "role", "assignment", "create", "--assignee", who, "--role", role, "--scope", scope); err != nil {
			t.Fatalf("assign %s to %s at %s: %v", role, who, scope, err)
		}
	}
	contrib, reader := token("contrib"), token("reader")
	assign("contrib", "SQL Managed Instance Contributor", "/subscriptions/"+sub+"/resourceGroups/rg-x")
	assign("reader", "Reader", "/subscriptions/"+sub)
	assign("reader", "Reader", "/subscriptions/"+sub2)

	prim := f.createInstance("rg-x", "xs-p", "eastus", nil)
	secPath := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-y/providers/Microsoft.Sql/managedInstances/xs-s", sub2)
	f.mustSucceed(f.call("PUT", secPath, miBody("westus", map[string]any{"dnsZonePartner": prim["id"]})))
	sec := f.call("GET", secPath, nil).json(t)
	if !strings.Contains(sec["id"].(string), sub2) {
		t.Fatalf("secondary id %v", sec["id"])
	}
	gp := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-x/providers/Microsoft.Sql/locations/eastus/instanceFailoverGroups/xs", sub)
	body := groupBody(prim["id"].(string), sec["id"].(string), "westus", nil)

	// Contributor on the primary's resource group only: the partner, which it cannot read, is
	// answered as a missing one is.
	r := f.callWith("PUT", gp, body, contrib)
	if r.Status != http.StatusBadRequest || r.code() != "InstanceFailoverGroupCreateOrUpdateRequestInvalidPartner" {
		t.Fatalf("group create by a contributor of one side = %d %s, want 400 InvalidPartner, as for a missing partner", r.Status, r.Body)
	}
	// A Reader of the partner's resource group sees the partner, and is refused the group's
	// write there.
	assign("contrib", "Reader", "/subscriptions/"+sub2+"/resourceGroups/rg-y")
	r = f.callWith("PUT", gp, body, contrib)
	if r.Status != http.StatusForbidden || r.code() != "AuthorizationFailed" || !strings.Contains(string(r.Body), "/subscriptions/"+sub2+"/resourceGroups/rg-y") ||
		!strings.Contains(string(r.Body), "'contrib'") || !strings.Contains(string(r.Body), "Microsoft.Sql/locations/instanceFailoverGroups/write") {
		t.Fatalf("group create by a contributor of one side = %d %s, want 403 AuthorizationFailed naming the partner's scope", r.Status, r.Body)
	}
	if r := f.call("GET", gp, nil); r.Status != http.StatusNotFound {
		t.Fatalf("a refused create left a group: %d %s", r.Status, r.Body)
	}
	// On both sides it works.
	assign("contrib", "SQL Managed Instance Contributor", "/subscriptions/"+sub2+"/resourceGroups/rg-y")
	f.mustSucceed(f.callWith("PUT", gp, body, contrib))

	secSide := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-y/providers/Microsoft.Sql/locations/westus/instanceFailoverGroups/xs", sub2)
	r = f.callWith("GET", secSide, nil, reader)
	if r.Status != http.StatusOK || props(r.json(t))["replicationRole"] != "Secondary" {
		t.Fatalf("GET of the group in the secondary's subscription = %d %s", r.Status, r.Body)
	}
	for _, action := range []string{"failover", "forceFailoverAllowDataLoss"} {
		r = f.callWith("POST", secSide+"/"+action, nil, reader)
		if r.Status != http.StatusForbidden || r.code() != "AuthorizationFailed" || !strings.Contains(string(r.Body), action+"/action") {
			t.Fatalf("%s by a Reader = %d %s, want 403 AuthorizationFailed", action, r.Status, r.Body)
		}
	}
	// Replication authenticates by certificate: no password in the store or on disk.
	if b, err := os.ReadFile(filepath.Join(f.dataDir, "fog.db")); err != nil || bytes.Contains(b, []byte("replicationPassword")) || bytes.Contains(b, []byte("replicationVerifier")) {
		t.Errorf("the store holds a replication password (%v)", err)
	}
	if left, _ := filepath.Glob(filepath.Join(f.dataDir, "regions", "*", "*", "replication.pgpass")); len(left) > 0 {
		t.Errorf("password files: %v", left)
	}
	f.mustSucceed(f.callWith("POST", secSide+"/failover", nil, contrib))
	if g := f.call("GET", secSide, nil).json(t); props(g)["replicationRole"] != "Primary" {
		t.Errorf("after the failover the secondary's subscription side is %v", props(g)["replicationRole"])
	}

	// Another tenant: its subscription is registered there; a group across tenants is
	// refused, and its principal cannot reach this tenant's subscription.
	const tenant2, sub3 = "99999999-8888-4777-8666-555555555555", "33333333-2222-4333-8444-555555555555"
	if _, _, err := f.runCLI("", "account", "subscription", "register", "--subscription-id", sub3, "--tenant-id", tenant2); err != nil {
		t.Fatal(err)
	}
	other := f.createInstance("rg-x", "xs-o", "eastus", nil)
	farPath := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-z/providers/Microsoft.Sql/managedInstances/xs-far", sub3)
	f.mustSucceed(f.call("PUT", farPath, miBody("westus", map[string]any{"dnsZonePartner": other["id"]})))
	gp2 := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-x/providers/Microsoft.Sql/locations/eastus/instanceFailoverGroups/xt", sub)
	r = f.call("PUT", gp2, groupBody(other["id"].(string), f.call("GET", farPath, nil).json(t)["id"].(string), "westus", nil))
	if r.Status != http.StatusBadRequest || r.code() != "InstanceFailoverGroupPartnerManagedInstanceFromDifferentSubscription" || !strings.Contains(string(r.Body), "different tenants") {
		t.Fatalf("a group across tenants = %d %s", r.Status, r.Body)
	}
	stranger := token("stranger", "--tenant", tenant2)
	assign("stranger", "Owner", "/subscriptions/"+sub)
	r = f.callWith("GET", miPath("rg-x", "xs-p"), nil, stranger)
	if r.Status != http.StatusUnauthorized || r.code() != "InvalidAuthenticationTokenTenant" {
		t.Fatalf("a principal of another tenant = %d %s, want 401 InvalidAuthenticationTokenTenant", r.Status, r.Body)
	}
	if r := f.callWith("GET", farPath, nil, stranger); r.Status != http.StatusForbidden {
		t.Fatalf("the stranger in its own tenant without a role there = %d %s, want 403", r.Status, r.Body)
	}
}
