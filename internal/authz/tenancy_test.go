package authz

import (
	"context"
	"testing"

	"github.com/fogdb/fog/internal/store"
)

// Permitted is the check a request gets: the subscription's tenant first, then the roles. A
// role assigned across the tenant boundary does not let a principal reach another tenant's
// subscription; an operator (a role at the root) reaches every one.
func TestPermitted(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenBolt(t.TempDir() + "/s.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := New(st)
	const (
		home    = "11111111-2222-4333-8444-555555555555"
		foreign = "33333333-2222-4333-8444-555555555555"
		tenant2 = "99999999-8888-4777-8666-555555555555"
		read    = "Microsoft.Sql/managedInstances/read"
	)
	if err := a.RegisterSubscription(ctx, Subscription{ID: foreign, TenantID: tenant2}); err != nil {
		t.Fatal(err)
	}
	assign := func(principal, role, scope string) {
		rd, _ := FindRole(role)
		if _, aerr := a.Create(ctx, Assignment{Name: NewGUID(), Scope: scope, RoleDefinitionID: rd.ID, PrincipalID: principal}); aerr != nil {
			t.Fatal(aerr)
		}
	}
	assign("op", "Reader", "/")
	assign("alice", "Contributor", "/subscriptions/"+home+"/resourceGroups/rg-a")
	assign("carol", "Contributor", "/subscriptions/"+foreign+"/resourceGroups/rg-c")
	assign("carol", "Owner", "/subscriptions/"+home) // across the tenant boundary
	mi := func(sub, rg string) string {
		return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.Sql/managedInstances/m"
	}
	for _, c := range []struct {
		principal, tenant, scope string
		want                     bool
	}{
		{"alice", "", mi(home, "rg-a"), true},
		{"alice", "", mi(home, "rg-b"), false},
		{"alice", "", mi(foreign, "rg-c"), false},
		{"carol", tenant2, mi(foreign, "rg-c"), true},
		{"carol", tenant2, mi(foreign, "rg-d"), false},
		{"carol", tenant2, mi(home, "rg-a"), false}, // Owner there, but of another tenant
		{"op", "", mi(home, "rg-b"), true},
		{"op", "", mi(foreign, "rg-c"), true},
		{"nobody", "", mi(home, "rg-a"), false},
	} {
		got, err := a.Permitted(ctx, c.principal, c.tenant, read, c.scope)
		if err != nil || got != c.want {
			t.Errorf("Permitted(%s of tenant %q, read, %s) = %v, %v; want %v", c.principal, c.tenant, c.scope, got, err, c.want)
		}
	}
	ok, mine, theirs, err := a.Reach(ctx, "carol", tenant2, home)
	def, _ := a.DefaultTenant(ctx)
	if err != nil || ok || mine != tenant2 || theirs != def {
		t.Errorf("Reach(carol, %s) = %v %q %q %v; want false %q %q", home, ok, mine, theirs, err, tenant2, def)
	}
}
