package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/authz"
	"github.com/fogdb/fog/internal/controller"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/store"
)

const (
	tSub    = "6f1c3c8e-4b7e-4f4e-9d3a-2a1b0c9d8e7f"
	tSub2   = "33333333-2222-4333-8444-555555555555"
	tTenant = "99999999-8888-4777-8666-555555555555"
	miVer   = "2023-08-01"
)

// tenancyAPI is Fog's API over a real store, with access control, served over TLS on
// loopback, and a token for each principal: admin (Owner at the root), alice (Contributor on
// rg-a), bob (Contributor on rg-b), carol, of another tenant, Contributor on rg-c of that
// tenant's subscription and, by an assignment across the tenant boundary, Owner of tSub's rg-a,
// and dave, Contributor on one failover group's scope in rg-b.
// No controller runs: a request gets its synchronous answer, and the operations it starts stay
// in progress.
type tenancyAPI struct {
	t   *testing.T
	srv *httptest.Server
	tok map[string]string
}

func newTenancyAPI(t *testing.T, http2 bool) *tenancyAPI {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.DiscardHandler)
	ctrl, err := controller.New(controller.Config{Regions: []string{"eastus", "westus"}}, st, log)
	if err != nil {
		t.Fatal(err)
	}
	for i, region := range []string{"eastus", "westus"} {
		rec := instance.AgentRecord{Region: region, AddressFirst: fmt.Sprintf("127.0.%d.1", 60+i), AddressLast: fmt.Sprintf("127.0.%d.250", 60+i), Port: 5432}
		if err := store.Put(ctx, st, instance.AgentKey(region), rec); err != nil {
			t.Fatal(err)
		}
	}
	tokens := authz.NewTokens(st)
	access := authz.New(st)
	if err := access.RegisterSubscription(ctx, authz.Subscription{ID: tSub2, TenantID: tTenant}); err != nil {
		t.Fatal(err)
	}
	a := &tenancyAPI{t: t, tok: map[string]string{}}
	for _, p := range []struct{ name, tenant, role, scope string }{
		{"admin", "", "Owner", "/"},
		{"alice", "", "Contributor", "/subscriptions/" + tSub + "/resourceGroups/rg-a"},
		{"bob", "", "Contributor", "/subscriptions/" + tSub + "/resourceGroups/rg-b"},
		{"carol", tTenant, "Contributor", "/subscriptions/" + tSub2 + "/resourceGroups/rg-c"},
		{"carol", tTenant, "Owner", "/subscriptions/" + tSub + "/resourceGroups/rg-a"},
		{"dave", "", "Contributor", "/subscriptions/" + tSub + "/resourceGroups/rg-b/providers/Microsoft.Sql/locations/westus/instanceFailoverGroups/fgd"},
	} {
		if a.tok[p.name] == "" {
			tok, _, err := tokens.CreateFor(ctx, p.name, 0, p.tenant)
			if err != nil {
				t.Fatal(err)
			}
			a.tok[p.name] = tok
		}
		rd, _ := authz.FindRole(p.role)
		if _, aerr := access.Create(ctx, authz.Assignment{Name: authz.NewGUID(), Scope: p.scope, RoleDefinitionID: rd.ID, PrincipalID: p.name}); aerr != nil {
			t.Fatal(aerr)
		}
	}
	s := New(ctrl, tokens, log).WithAuthz(access).WithJoinTokens(controllerlessJoinTokens)
	a.srv = httptest.NewUnstartedServer(s.Handler())
	a.srv.EnableHTTP2 = http2
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	return a
}

func controllerlessJoinTokens(_ context.Context, _ string, ttl time.Duration) (string, time.Time, error) {
	return "join-token", time.Now().Add(ttl), nil
}

// answer is a response: status, error code and body.
type answer struct {
	status int
	code   string
	body   string
}

func (a *tenancyAPI) call(who, method, path string, body any) answer {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	if !strings.Contains(path, "?") && strings.HasPrefix(path, "/subscriptions/") {
		path += "?api-version=" + miVer
	}
	req, err := http.NewRequest(method, a.srv.URL+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.tok[who])
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		a.t.Fatalf("%s %s as %s: %v", method, path, who, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, code: resp.Header.Get("x-ms-error-code"), body: string(b)}
}

func instancePath(sub, rg, name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.Sql/managedInstances/" + name
}

func instanceBody(loc string, props map[string]any) map[string]any {
	p := map[string]any{"administratorLogin": "miadmin", "administratorLoginPassword": "Str0ng-Password-123!"}
	for k, v := range props {
		p[k] = v
	}
	return map[string]any{"location": loc, "properties": p}
}

// create has who create an instance and fails the test unless it is accepted.
func (a *tenancyAPI) create(who, sub, rg, name, loc string, props map[string]any) string {
	a.t.Helper()
	path := instancePath(sub, rg, name)
	if got := a.call(who, "PUT", path, instanceBody(loc, props)); got.status != http.StatusAccepted {
		a.t.Fatalf("create %s as %s = %d %s, want 202", name, who, got.status, got.body)
	}
	return path
}

// sameAsMissing fails unless got, the answer about a resource the caller cannot read (sent as
// hiddenID), is the answer about one that does not exist (sent as missingID), word for word
// but for the id the caller sent itself.
func sameAsMissing(t *testing.T, what string, got answer, hiddenID string, missing answer, missingID string) {
	t.Helper()
	g := strings.ReplaceAll(got.body, hiddenID, "{id}")
	m := strings.ReplaceAll(missing.body, missingID, "{id}")
	if got.status != missing.status || got.code != missing.code || g != m {
		t.Errorf("%s: a resource the caller cannot read = %d %s %s\nwant what a missing one gets: %d %s %s", what, got.status, got.code, got.body, missing.status, missing.code, missing.body)
	}
}

// A Contributor of one resource group names, as dnsZonePartner or as a failover group's
// partner, an instance of another resource group or another tenant: the answer is the one a
// missing instance gets, and the caller's instance does not join the other's DNS zone. An
// operator, who can read everything, gets the real answer.
func TestPartnerOutsideReachIsMissing(t *testing.T) {
	a := newTenancyAPI(t, false)
	aOwn := a.create("alice", tSub, "rg-a", "a1", "eastus", nil)
	bobs := a.create("bob", tSub, "rg-b", "b1", "westus", nil)
	missing := instancePath(tSub, "rg-b", "b-none")
	carols := a.create("carol", tSub2, "rg-c", "c1", "westus", nil)

	t.Run("dnsZonePartner", func(t *testing.T) {
		for _, c := range []struct {
			who, sub, rg, hidden, missing string
		}{
			{"alice", tSub, "rg-a", bobs, missing},
			// carol is Owner of rg-a by an assignment, but of another tenant: she reaches
			// nothing of tSub.
			{"carol", tSub2, "rg-c", aOwn, instancePath(tSub, "rg-a", "a-none")},
			{"alice", tSub, "rg-a", carols, instancePath(tSub2, "rg-c", "c-none")},
		} {
			path := instancePath(c.sub, c.rg, c.who+"-z")
			want := a.call(c.who, "PUT", path, instanceBody("westus", map[string]any{"dnsZonePartner": c.missing}))
			if want.status != http.StatusBadRequest || want.code != "InvalidDnsZonePartner" {
				t.Fatalf("dnsZonePartner naming a missing instance = %d %s, want 400 InvalidDnsZonePartner", want.status, want.body)
			}
			got := a.call(c.who, "PUT", path, instanceBody("westus", map[string]any{"dnsZonePartner": c.hidden}))
			sameAsMissing(t, c.who+" naming "+c.hidden, got, c.hidden, want, c.missing)
			if r := a.call(c.who, "GET", path, nil); r.status != http.StatusNotFound {
				t.Errorf("%s's instance was made with a partner it cannot read: GET = %d %s", c.who, r.status, r.body)
			}
		}
		// Its own instance, alice may name; the operator may name bob's.
		if r := a.call("alice", "PUT", instancePath(tSub, "rg-a", "a2"), instanceBody("westus", map[string]any{"dnsZonePartner": aOwn})); r.status != http.StatusAccepted {
			t.Errorf("dnsZonePartner of the caller's own instance = %d %s, want 202", r.status, r.body)
		}
		if r := a.call("admin", "PUT", instancePath(tSub, "rg-a", "a3"), instanceBody("eastus", map[string]any{"dnsZonePartner": bobs})); r.status != http.StatusAccepted {
			t.Errorf("dnsZonePartner by an operator = %d %s, want 202", r.status, r.body)
		}
	})

	t.Run("failover group partner", func(t *testing.T) {
		group := "/subscriptions/" + tSub + "/resourceGroups/rg-a/providers/Microsoft.Sql/locations/eastus/instanceFailoverGroups/fg1"
		body := func(partner string) map[string]any {
			return map[string]any{"properties": map[string]any{
				"readWriteEndpoint":    map[string]any{"failoverPolicy": "Manual"},
				"partnerRegions":       []map[string]any{{"location": "westus"}},
				"managedInstancePairs": []map[string]any{{"primaryManagedInstanceId": aOwn, "partnerManagedInstanceId": partner}},
			}}
		}
		want := a.call("alice", "PUT", group, body(missing))
		if want.status != http.StatusBadRequest || want.code != "InstanceFailoverGroupCreateOrUpdateRequestInvalidPartner" {
			t.Fatalf("group with a missing partner = %d %s, want 400 InstanceFailoverGroupCreateOrUpdateRequestInvalidPartner", want.status, want.body)
		}
		got := a.call("alice", "PUT", group, body(bobs))
		sameAsMissing(t, "partner in rg-b", got, bobs, want, missing)
		wantC := a.call("alice", "PUT", group, body(instancePath(tSub2, "rg-c", "c-none")))
		sameAsMissing(t, "partner in another tenant", a.call("alice", "PUT", group, body(carols)), carols, wantC, instancePath(tSub2, "rg-c", "c-none"))
		// The operator reads bob's instance: its answer is about the instances themselves.
		if r := a.call("admin", "PUT", group, body(bobs)); r.code == want.code {
			t.Errorf("an operator's group with bob's instance = %d %s, want an answer that is not 'no such partner'", r.status, r.body)
		}
	})

	t.Run("failover group primary", func(t *testing.T) {
		// dave may write the group fgd of rg-b (an assignment at the group's scope), not
		// read the instances of rg-b: bob's instance as the primary is missing to him.
		group := "/subscriptions/" + tSub + "/resourceGroups/rg-b/providers/Microsoft.Sql/locations/westus/instanceFailoverGroups/fgd"
		body := func(primary string) map[string]any {
			return map[string]any{"properties": map[string]any{
				"readWriteEndpoint":    map[string]any{"failoverPolicy": "Manual"},
				"partnerRegions":       []map[string]any{{"location": "eastus"}},
				"managedInstancePairs": []map[string]any{{"primaryManagedInstanceId": primary, "partnerManagedInstanceId": aOwn}},
			}}
		}
		want := a.call("dave", "PUT", group, body(missing))
		if want.status != http.StatusBadRequest || want.code != "InstanceFailoverGroupCreateOrUpdateRequestInvalidPrimary" {
			t.Fatalf("group with a missing primary = %d %s, want 400 InstanceFailoverGroupCreateOrUpdateRequestInvalidPrimary", want.status, want.body)
		}
		sameAsMissing(t, "primary dave cannot read", a.call("dave", "PUT", group, body(bobs)), bobs, want, missing)
	})
}

// Instance names are unique in the deployment: a name another resource group or tenant took
// is refused without naming that resource, its resource group or its subscription; one the
// caller can read is named.
func TestNameConflictDoesNotNameHiddenResource(t *testing.T) {
	a := newTenancyAPI(t, false)
	bobs := a.create("bob", tSub, "rg-b", "taken", "eastus", nil)
	for _, c := range []struct{ who, sub, rg string }{
		{"alice", tSub, "rg-a"},
		{"carol", tSub2, "rg-c"},
	} {
		r := a.call(c.who, "PUT", instancePath(c.sub, c.rg, "taken"), instanceBody("eastus", nil))
		if r.status != http.StatusConflict || r.code != "NameAlreadyExists" {
			t.Fatalf("%s: PUT of a taken name = %d %s, want 409 NameAlreadyExists", c.who, r.status, r.body)
		}
		for _, leak := range []string{"rg-b", bobs, tSub + "/"} {
			if strings.Contains(r.body, leak) {
				t.Errorf("%s: the conflict names %q: %s", c.who, leak, r.body)
			}
		}
		if !strings.Contains(r.body, "'taken' already exists") || !strings.Contains(r.body, "choose a different name") {
			t.Errorf("%s: the conflict does not say the name is taken and what to do: %s", c.who, r.body)
		}
	}
	r := a.call("admin", "PUT", instancePath(tSub, "rg-a", "taken"), instanceBody("eastus", nil))
	if r.status != http.StatusConflict || r.code != "NameAlreadyExists" || !strings.Contains(r.body, bobs) {
		t.Errorf("an operator's conflict = %d %s, want 409 NameAlreadyExists naming %s", r.status, r.body, bobs)
	}
}

// Every reserved administratorLogin, in any case, is refused at create with 400
// InvalidLoginName and a message that says to choose another; nothing is created.
func TestReservedAdministratorLogin(t *testing.T) {
	a := newTenancyAPI(t, false)
	for _, login := range []string{
		"fog_admin", "fog_system", "fog_replication", "fog_monitor", "fog_guard", "FOG_ADMIN", "Fog_System",
		"pg_monitor", "pg_read_all_data", "PG_SIGNAL_BACKEND", "pg_anything",
		"postgres", "Postgres", "public", "PUBLIC", "none", "current_user", "session_user", "current_role", "Current_User",
		"admin", "administrator", "sa", "SA", "root", "dbmanager", "loginmanager", "dbo", "guest",
	} {
		t.Run(login, func(t *testing.T) {
			path := instancePath(tSub, "rg-a", "mi-"+strings.ToLower(strings.ReplaceAll(login, "_", "-")))
			r := a.call("alice", "PUT", path, instanceBody("eastus", map[string]any{"administratorLogin": login}))
			if r.status != http.StatusBadRequest || r.code != "InvalidLoginName" || !strings.Contains(r.body, "reserved") || !strings.Contains(r.body, "choose another name") {
				t.Errorf("PUT with administratorLogin %q = %d %s, want 400 InvalidLoginName saying it is reserved and to choose another", login, r.status, r.body)
			}
			if r := a.call("alice", "GET", path, nil); r.status != http.StatusNotFound {
				t.Errorf("an instance with login %q exists: %d", login, r.status)
			}
		})
	}
	for _, login := range []string{"miadmin", "fogadmin", "pgadmin", "sa_team", "admins", "postgres_app"} {
		path := instancePath(tSub, "rg-a", "ok-"+strings.ReplaceAll(login, "_", "-"))
		if r := a.call("alice", "PUT", path, instanceBody("eastus", map[string]any{"administratorLogin": login})); r.status != http.StatusAccepted {
			t.Errorf("PUT with administratorLogin %q = %d %s, want 202", login, r.status, r.body)
		}
	}
}
