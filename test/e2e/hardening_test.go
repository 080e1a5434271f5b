package e2e

import (
	"bytes"
	"encoding/json"
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

// TestSubscriptionIDs: a subscription id must be a UUID, and no path segment may hide a '/'.
func TestSubscriptionIDs(t *testing.T) {
	f := startFog(t, "")
	for _, c := range []struct{ path, code string }{
		{"/subscriptions/not-a-uuid/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/x", "InvalidSubscriptionId"},
		{"/subscriptions/" + sub + "%2Fx/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/x", "InvalidRequestUri"},
		{"/subscriptions/" + sub + "/resourceGroups/a%2fb/providers/Microsoft.Sql/managedInstances/x", "InvalidRequestUri"},
	} {
		r := f.call("GET", c.path, nil)
		if r.Status != http.StatusBadRequest || r.code() != c.code {
			t.Errorf("GET %s = %d %s, want 400 %s", c.path, r.Status, r.Body, c.code)
		}
	}
}
