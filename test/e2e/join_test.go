package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// TestJoinTokensAndAgentFlags: creating a join token needs the admin token and a region of
// the deployment; `fog agent` refuses bad flags with the flag and what to do, before it
// touches anything; a used token does not admit a second agent.
func TestJoinTokensAndAgentFlags(t *testing.T) {
	f := startFog(t, "")
	for _, c := range []struct {
		body       map[string]any
		status     int
		code, want string
	}{
		{map[string]any{"region": "northpole"}, http.StatusBadRequest, "InvalidRegion", "eastus"},
		{map[string]any{"region": "eastus", "expiresIn": "48h"}, http.StatusBadRequest, "InvalidExpiresIn", "24h"},
		{map[string]any{"region": "eastus", "expiresIn": "soon"}, http.StatusBadRequest, "InvalidExpiresIn", "30m"},
	} {
		r := f.call("POST", "/fog/v1/joinTokens", c.body)
		if r.Status != c.status || r.code() != c.code || !strings.Contains(string(r.Body), c.want) {
			t.Errorf("join token %v = %d %s, want %d %s mentioning %q", c.body, r.Status, r.Body, c.status, c.code, c.want)
		}
	}
	if r := f.callWith("POST", "/fog/v1/joinTokens", map[string]any{"region": "eastus"}, ""); r.Status != http.StatusUnauthorized {
		t.Errorf("join token without the admin token = %d, want 401", r.Status)
	}
	tok, _, err := f.runCLI("", "join-token", "create", "--region", "westus")
	tok = strings.TrimSpace(tok)
	if err != nil || !strings.HasPrefix(tok, "fogjoin.") || strings.Contains(tok, "\n") {
		t.Fatalf("join-token create printed %q, %v; want the token alone", tok, err)
	}

	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--server", "http://127.0.0.1:1", "--address-range", "127.0.50.1-127.0.50.9"}, "--server"},
		{[]string{"--server", f.info.APIURL}, "--address-range"},
		{[]string{"--server", f.info.APIURL, "--advertise", "somehost"}, "--advertise"},
		{[]string{"--server", f.info.APIURL, "--advertise", "127.0.50.1", "--port-range", "6000-5000"}, "--port-range"},
		{[]string{"--server", f.info.APIURL, "--address-range", "127.0.50.9-127.0.50.1"}, "--address-range"},
		{[]string{"--server", f.info.APIURL, "--address-range", "bogus"}, "--address-range"},
		{[]string{"--server", f.info.APIURL, "--address-range", "127.0.50.0/28"}, "--join-token"},
		{[]string{"--server", f.info.APIURL, "--address-range", "127.0.50.0/28", "--join-token", "fogjoin.x.y"}, "fogjoin.<secret>.<CA pin>"},
	} {
		args := append([]string{"agent", "--region", "westus", "--data-dir", dir}, c.args...)
		_, _, err := f.runCLI("", args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("fog %s: %v, want an error about %s", strings.Join(args, " "), err, c.want)
		}
	}
	// The token is for westus: an eastus agent cannot use it, and that spends it.
	_, _, err = f.runCLI("", "agent", "--region", "eastus", "--data-dir", dir, "--server", f.info.APIURL,
		"--address-range", "127.0.50.0/28", "--join-token", tok)
	if err == nil || !strings.Contains(err.Error(), "westus") {
		t.Errorf("an eastus agent with a westus token: %v", err)
	}
	_, _, err = f.runCLI("", "agent", "--region", "westus", "--data-dir", dir, "--server", f.info.APIURL,
		"--address-range", "127.0.50.0/28", "--join-token", tok)
	if err == nil || !strings.Contains(err.Error(), "used already") {
		t.Errorf("a second join with one token: %v", err)
	}
}
