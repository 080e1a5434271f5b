package e2e

import (
	"time"

	"bytes"
	"encoding/json"
	"github.com/fogdb/fog/internal/server"
	"net/http"
	"strings"
	"testing"
)

// TestHostHeaderIgnored: operation URLs come from the server's own URL, so a request whose
// Host header names another server cannot make a client send its token there.
func TestHostHeaderIgnored(t *testing.T) {
	f := startFog(t, "")
	body, _ := json.Marshal(miBody("eastus", nil))
	req, _ := http.NewRequest("PUT", f.info.APIURL+miPath("rg-h", "host1")+"?api-version="+apiVer, bytes.NewReader(body))
	req.Host = "attacker.example:443"
	req.Header.Set("Authorization", "Bearer "+f.info.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT = %d", resp.StatusCode)
	}
	for _, h := range []string{"Azure-AsyncOperation", "Location"} {
		if v := resp.Header.Get(h); v != "" && !strings.HasPrefix(v, f.info.APIURL+"/") {
			t.Errorf("%s = %s; want it on %s whatever the Host header says", h, v, f.info.APIURL)
		}
	}
	f.wait(response{Status: resp.StatusCode, Header: resp.Header})
}

// TestSubscriptionIDs: a subscription id must be a UUID, also when a '/' is hidden in it.
func TestSubscriptionIDs(t *testing.T) {
	f := startFog(t, "")
	for _, c := range []struct{ path, code string }{
		{"/subscriptions/not-a-uuid/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/x", "InvalidSubscriptionId"},
		{"/subscriptions/" + sub + "%2Fx/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/x", "InvalidSubscriptionId"},
		{"/subscriptions/" + sub + "%2f/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/x", "InvalidSubscriptionId"},
	} {
		r := f.call("GET", c.path, nil)
		if r.Status != http.StatusBadRequest || r.code() != c.code {
			t.Errorf("GET %s = %d %s, want 400 %s", c.path, r.Status, r.Body, c.code)
		}
	}
}

// TestTokens: a principal's token works until it is revoked, the activity log names the
// principal, and the admin token of fog up stays valid.
func TestTokens(t *testing.T) {
	f := startFog(t, "")
	tok, _, err := f.runCLI("", "token", "create", "--name", "ci", "--expires-in", "1h")
	tok = strings.TrimSpace(tok)
	if err != nil || !strings.HasPrefix(tok, "fog_") {
		t.Fatalf("token create: %q %v", tok, err)
	}
	// A new principal has no role: it is refused until one is assigned.
	r := f.callWith("PUT", miPath("rg-t", "tok1"), miBody("eastus", nil), "Bearer "+tok)
	if r.Status != http.StatusForbidden || r.code() != "AuthorizationFailed" {
		t.Fatalf("PUT by a principal without a role = %d %s, want 403 AuthorizationFailed", r.Status, r.Body)
	}
	if _, _, err := f.runCLI("", "role", "assignment", "create", "--assignee", "ci", "--role", "Contributor", "--resource-group", "rg-t"); err != nil {
		t.Fatal(err)
	}
	r = f.callWith("PUT", miPath("rg-t", "tok1"), miBody("eastus", nil), "Bearer "+tok)
	if r.Status != http.StatusAccepted && r.Status != http.StatusCreated {
		t.Fatalf("PUT with the ci token = %d %s", r.Status, r.Body)
	}
	f.wait(r)
	out, _, err := f.runCLI("", "token", "list")
	var list []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || strings.Contains(out, tok) {
		t.Fatalf("token list = %q %v", out, err)
	}
	var id string
	for _, e := range list {
		if e["name"] == "ci" {
			id = e["id"].(string)
			if e["expires"] == nil {
				t.Error("the ci token has no expiry")
			}
		}
	}
	found := false
	for _, e := range activity(t, f, "eventTimestamp ge '2020-01-01T00:00:00Z' and resourceGroupName eq 'rg-t'") {
		found = found || e["caller"] == "ci"
	}
	if !found {
		t.Error("the activity log does not name the principal ci")
	}
	if _, _, err := f.runCLI("", "token", "revoke", "--id", id); err != nil {
		t.Fatal(err)
	}
	if r := f.callWith("GET", miPath("rg-t", "tok1"), nil, "Bearer "+tok); r.Status != http.StatusUnauthorized {
		t.Errorf("a revoked token = %d, want 401", r.Status)
	}
	if r := f.call("GET", miPath("rg-t", "tok1"), nil); r.Status != http.StatusOK {
		t.Errorf("the admin token after revoking another = %d", r.Status)
	}
	for _, c := range []struct {
		body map[string]any
		code string
	}{
		{map[string]any{"name": "Bad Name"}, "InvalidPrincipalName"},
		{map[string]any{"name": "x", "expiresIn": "forever"}, "InvalidExpiresIn"},
	} {
		if r := f.call("POST", "/fog/v1/tokens", c.body); r.Status != http.StatusBadRequest || r.code() != c.code {
			t.Errorf("token %v = %d %s, want %s", c.body, r.Status, r.Body, c.code)
		}
	}
	if _, _, err := f.runCLI("", "token", "revoke", "--id", "0123456789abcdef"); err == nil || !strings.Contains(err.Error(), "TokenNotFound") {
		t.Errorf("revoke of an unknown id: %v", err)
	}
}

// TestRateLimit: each principal has its own request rate; over it, 429 TooManyRequests with
// Retry-After, and another principal is not affected.
func TestRateLimit(t *testing.T) {
	f := startFog(t, "", func(c *server.Config) { c.API.RateLimit = 5 })
	other, _, err := f.runCLI("", "token", "create", "--name", "other")
	if err != nil {
		t.Fatal(err)
	}
	other = strings.TrimSpace(other)
	if _, _, err := f.runCLI("", "role", "assignment", "create", "--assignee", "other", "--role", "Reader"); err != nil {
		t.Fatal(err)
	}
	path := "/subscriptions/" + sub + "/providers/Microsoft.Sql/managedInstances"
	var limited response
	for range 40 {
		if r := f.call("GET", path, nil); r.Status == http.StatusTooManyRequests {
			limited = r
			break
		}
	}
	if limited.Status != http.StatusTooManyRequests || limited.code() != "TooManyRequests" || limited.Header.Get("Retry-After") == "" {
		t.Fatalf("no 429 with Retry-After after a burst: %d %s", limited.Status, limited.Body)
	}
	if r := f.callWith("GET", path, nil, "Bearer "+other); r.Status != http.StatusOK {
		t.Errorf("another principal while the first is throttled = %d", r.Status)
	}
	time.Sleep(1100 * time.Millisecond)
	if r := f.call("GET", path, nil); r.Status != http.StatusOK {
		t.Errorf("after Retry-After = %d", r.Status)
	}
}

// TestRoleAssignments: az role assignment's create, list and delete, the ARM paths behind
// them, and their errors.
func TestRoleAssignments(t *testing.T) {
	f := startFog(t, "")
	rgScope := "/subscriptions/" + sub + "/resourceGroups/rg-r"
	out, _, err := f.runCLI("", "role", "assignment", "create", "--assignee", "alice", "--role", "reader", "--scope", rgScope)
	var created map[string]any
	if err != nil || json.Unmarshal([]byte(out), &created) != nil || created["roleDefinitionName"] != "Reader" || created["scope"] != rgScope || created["principalId"] != "alice" {
		t.Fatalf("create = %q %v", out, err)
	}
	if _, _, err := f.runCLI("", "role", "assignment", "create", "--assignee", "alice", "--role", "Reader", "--scope", rgScope); err == nil || !strings.Contains(err.Error(), "RoleAssignmentExists") {
		t.Errorf("the same assignment twice: %v", err)
	}
	out, _, err = f.runCLI("", "role", "assignment", "list", "--assignee", "alice", "--scope", rgScope+"/providers/Microsoft.Sql/managedInstances/x")
	var list []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0]["id"] != created["id"] {
		t.Fatalf("list below the scope = %q %v", out, err)
	}
	out, _, _ = f.runCLI("", "role", "assignment", "list", "--scope", "/")
	if !strings.Contains(out, `"principalId": "admin"`) || !strings.Contains(out, `"roleDefinitionName": "Owner"`) {
		t.Errorf("the admin's Owner assignment at the root is not listed: %s", out)
	}
	if _, _, err := f.runCLI("", "role", "assignment", "create", "--assignee", "alice", "--role", "Superhero"); err == nil || !strings.Contains(err.Error(), "--role") {
		t.Errorf("an unknown role: %v", err)
	}
	for _, c := range []struct {
		path string
		body any
		code string
	}{
		{rgScope + "/providers/Microsoft.Authorization/roleAssignments/not-a-guid?api-version=2022-04-01", map[string]any{"properties": map[string]any{"roleDefinitionId": "Reader", "principalId": "alice"}}, "InvalidRoleAssignmentId"},
		{rgScope + "/providers/Microsoft.Authorization/roleAssignments/0f8fad5b-d9cb-469f-a165-70867728950e?api-version=2022-04-01", map[string]any{"properties": map[string]any{"roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/00000000-0000-0000-0000-000000000000", "principalId": "alice"}}, "RoleDefinitionDoesNotExist"},
		{rgScope + "/providers/Microsoft.Authorization/roleAssignments/0f8fad5b-d9cb-469f-a165-70867728950e?api-version=2022-04-01", map[string]any{"properties": map[string]any{"roleDefinitionId": "Reader", "principalId": "Not Valid"}}, "InvalidPrincipalId"},
		{"/subscriptions/" + sub + "/junk/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01", nil, "InvalidScope"},
	} {
		method := "PUT"
		if c.body == nil {
			method = "GET"
		}
		if r := f.call(method, c.path, c.body); r.Status != http.StatusBadRequest || r.code() != c.code {
			t.Errorf("%s %s = %d %s, want 400 %s", method, c.path, r.Status, r.Body, c.code)
		}
	}
	if _, _, err := f.runCLI("", "role", "assignment", "delete", "--assignee", "alice", "--role", "Reader", "--scope", rgScope); err != nil {
		t.Fatal(err)
	}
	out, _, _ = f.runCLI("", "role", "assignment", "list", "--assignee", "alice", "--scope", rgScope)
	if strings.TrimSpace(out) != "[]" {
		t.Errorf("after delete: %s", out)
	}
	out, _, err = f.runCLI("", "role", "definition", "list", "--name", "SQL Managed Instance Contributor")
	if err != nil || !strings.Contains(out, "Microsoft.Sql/locations/instanceFailoverGroups/*") || !strings.Contains(out, "4939a1f6-9ae0-4e48-a1e0-f2cbe897382d") {
		t.Errorf("role definition list = %s %v", out, err)
	}
}
