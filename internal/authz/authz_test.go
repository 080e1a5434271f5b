package authz

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/store"
)

func TestAction(t *testing.T) {
	const sub = "/subscriptions/11111111-2222-3333-4444-555555555555"
	const rg = sub + "/resourceGroups/rg1"
	mi := rg + "/providers/Microsoft.Sql/managedInstances/mi1"
	fog := rg + "/providers/Microsoft.Sql/locations/eastus/instanceFailoverGroups/fg1"
	for _, c := range []struct{ method, path, action, scope string }{
		{"GET", mi, "Microsoft.Sql/managedInstances/read", mi},
		{"PUT", mi, "Microsoft.Sql/managedInstances/write", mi},
		{"DELETE", mi, "Microsoft.Sql/managedInstances/delete", mi},
		{"GET", rg + "/providers/Microsoft.Sql/managedInstances", "Microsoft.Sql/managedInstances/read", rg + "/providers/Microsoft.Sql"},
		{"PUT", mi + "/databases/db1", "Microsoft.Sql/managedInstances/databases/write", mi + "/databases/db1"},
		{"GET", fog, "Microsoft.Sql/locations/instanceFailoverGroups/read", fog},
		{"PUT", fog, "Microsoft.Sql/locations/instanceFailoverGroups/write", fog},
		{"POST", fog + "/failover", "Microsoft.Sql/locations/instanceFailoverGroups/failover/action", fog},
		{"POST", fog + "/forceFailoverAllowDataLoss", "Microsoft.Sql/locations/instanceFailoverGroups/forceFailoverAllowDataLoss/action", fog},
		{"GET", sub + "/providers/Microsoft.Sql/locations/eastus/managedInstanceAzureAsyncOperation/abc", "Microsoft.Sql/locations/managedInstanceAzureAsyncOperation/read", sub + "/providers/Microsoft.Sql/locations/eastus/managedInstanceAzureAsyncOperation/abc"},
		{"GET", sub + "/providers/Microsoft.Insights/eventtypes/management/values", "Microsoft.Insights/eventtypes/values/read", sub + "/providers/Microsoft.Insights/eventtypes/management"},
		{"PUT", rg + "/providers/Microsoft.Authorization/roleAssignments/0f8fad5b-d9cb-469f-a165-70867728950e", "Microsoft.Authorization/roleAssignments/write", rg + "/providers/Microsoft.Authorization/roleAssignments/0f8fad5b-d9cb-469f-a165-70867728950e"},
		{"GET", "/providers/Microsoft.Authorization/roleAssignments", "Microsoft.Authorization/roleAssignments/read", "/providers/Microsoft.Authorization"},
		{"GET", sub, "Microsoft.Resources/subscriptions/read", sub},
		{"POST", "/fog/v1/tokens", "Fog/tokens/write", "/"},
		{"DELETE", "/fog/v1/tokens/abcdef12", "Fog/tokens/delete", "/"},
		{"GET", "/metrics", "Microsoft.Insights/metrics/read", "/"},
	} {
		a, s, ok := Action(c.method, c.path)
		if !ok || a != c.action || s != c.scope {
			t.Errorf("%s %s: got %q at %q (%v), want %q at %q", c.method, c.path, a, s, ok, c.action, c.scope)
		}
	}
	for _, bad := range []string{"/", "/nothing", "/fog/v1/unknown"} {
		if a, _, ok := Action("GET", bad); ok {
			t.Errorf("GET %s: derived %q, want none", bad, a)
		}
	}
}

func TestRoles(t *testing.T) {
	role := func(n string) RoleDefinition {
		r, ok := FindRole(n)
		if !ok {
			t.Fatalf("no role %s", n)
		}
		return r
	}
	cases := []struct {
		role, action string
		want         bool
	}{
		{"Reader", "Microsoft.Sql/managedInstances/read", true},
		{"reader", "Microsoft.Sql/locations/instanceFailoverGroups/failover/action", false},
		{"Reader", "Microsoft.Sql/managedInstances/write", false},
		{"SQL Managed Instance Contributor", "Microsoft.Sql/managedInstances/write", true},
		{"SQL Managed Instance Contributor", "Microsoft.Sql/locations/instanceFailoverGroups/forceFailoverAllowDataLoss/action", true},
		{"SQL Managed Instance Contributor", "Microsoft.Sql/locations/managedInstanceAzureAsyncOperation/read", true},
		{"SQL Managed Instance Contributor", "Microsoft.Authorization/roleAssignments/write", false},
		{"SQL Managed Instance Contributor", "Microsoft.Sql/managedInstances/azureADOnlyAuthentications/write", false},
		{"Contributor", "Microsoft.Sql/managedInstances/delete", true},
		{"Contributor", "Microsoft.Authorization/roleAssignments/write", false},
		{"Contributor", "Fog/tokens/write", false},
		{"Owner", "Microsoft.Authorization/roleAssignments/write", true},
		{"8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Fog/tokens/write", true},
	}
	for _, c := range cases {
		if got := role(c.role).Allows(c.action); got != c.want {
			t.Errorf("%s allows %s: %v, want %v", c.role, c.action, got, c.want)
		}
	}
	if _, ok := FindRole("/subscriptions/x/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"); !ok {
		t.Error("a role definition id did not resolve")
	}
	for _, c := range []struct {
		scope, target string
		want          bool
	}{
		{"/", "/subscriptions/a", true},
		{"/subscriptions/a", "/subscriptions/a/resourceGroups/r", true},
		{"/subscriptions/A/resourcegroups/R", "/subscriptions/a/resourceGroups/r/providers/x", true},
		{"/subscriptions/a/resourceGroups/r", "/subscriptions/a/resourceGroups/r2", false},
		{"/subscriptions/a", "/subscriptions/ab", false},
	} {
		if got := ScopeCovers(c.scope, c.target); got != c.want {
			t.Errorf("ScopeCovers(%q, %q) = %v", c.scope, c.target, got)
		}
	}
}

func TestAssignmentsAndBootstrap(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenBolt(t.TempDir() + "/s.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := New(st)
	if err := a.Bootstrap(ctx, "admin", "ci"); err != nil {
		t.Fatal(err)
	}
	if err := a.Bootstrap(ctx, "later"); err != nil { // only the first start bootstraps
		t.Fatal(err)
	}
	for p, want := range map[string]bool{"admin": true, "ci": true, "later": false} {
		if ok, _ := a.Allowed(ctx, p, "Microsoft.Sql/managedInstances/write", "/subscriptions/a"); ok != want {
			t.Errorf("%s after bootstrap: %v, want %v", p, ok, want)
		}
	}
	reader, _ := FindRole("Reader")
	as := Assignment{Name: NewGUID(), Scope: "/subscriptions/a/resourceGroups/r", RoleDefinitionID: reader.ID, PrincipalID: "bob"}
	if _, aerr := a.Create(ctx, as); aerr != nil {
		t.Fatal(aerr)
	}
	dup := as
	dup.Name = NewGUID()
	var aerr *fault.Error
	if _, err := a.Create(ctx, dup); !errors.As(err, &aerr) || aerr.Code != "RoleAssignmentExists" || aerr.Class != fault.Conflict {
		t.Fatalf("duplicate assignment: %v", err)
	}
	if aerr := a.Check(ctx, "bob", "Microsoft.Sql/managedInstances/read", "/subscriptions/a/resourceGroups/r/providers/Microsoft.Sql/managedInstances/m"); aerr != nil {
		t.Fatal(aerr)
	}
	err = a.Check(ctx, "bob", "Microsoft.Sql/managedInstances/read", "/subscriptions/a/resourceGroups/other")
	if !errors.As(err, &aerr) || aerr.Code != "AuthorizationFailed" || aerr.Class != fault.Forbidden {
		t.Fatalf("bob outside his scope: %v", err)
	}
	if _, ok, err := a.Delete(ctx, as.Name); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, _ := a.Allowed(ctx, "bob", "Microsoft.Sql/managedInstances/read", "/subscriptions/a/resourceGroups/r"); ok {
		t.Fatal("a deleted assignment still allows")
	}
	t1, _ := a.DefaultTenant(ctx)
	t2, _ := a.DefaultTenant(ctx)
	if t1 == "" || t1 != t2 {
		t.Fatalf("default tenant %q then %q", t1, t2)
	}
}

// FuzzAction: any method and path derive an action at a scope or none, never a panic; a
// derived scope is a path, and a derived action names a namespace and a verb.
func FuzzAction(f *testing.F) {
	for _, p := range []string{"/subscriptions/s/resourceGroups/r/providers/Microsoft.Sql/managedInstances/m",
		"/providers/Microsoft.Authorization/roleAssignments", "/fog/v1/tokens/x", "/subscriptions/%2F/providers/a/b/c", "//providers//", "/metrics"} {
		f.Add("GET", p)
		f.Add("POST", p)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		a, s, ok := Action(method, path)
		if ok && (!strings.HasPrefix(s, "/") || !strings.Contains(a, "/")) {
			t.Fatalf("%s %q: action %q at %q", method, path, a, s)
		}
		_ = SubscriptionOf(path)
	})
}
