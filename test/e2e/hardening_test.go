package e2e

import (
	"time"

	"bytes"
	"encoding/json"
	"github.com/fogdb/fog/internal/standalone"
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
	r := f.callWith("PUT", miPath("rg-t", "tok1"), miBody("eastus", nil), "Bearer "+tok)
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
	f := startFog(t, "", func(c *standalone.Config) { c.RateLimit = 5 })
	other, _, err := f.runCLI("", "token", "create", "--name", "other")
	if err != nil {
		t.Fatal(err)
	}
	other = strings.TrimSpace(other)
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
