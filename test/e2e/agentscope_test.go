package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/agentapi"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/server"
	"github.com/fogdb/fog/internal/store"
)

// TestAgentScopeSignRevoke: against a real `fog server`, a `fog agent` process joins with a
// token from a file (the token never on its command line), gets its instance's certificate
// signed and serves it; another agent of westus is refused certificates for the API's
// address, an eastus instance's name and address and any other name, and reads eastus's
// desired state only as addresses, never its admin's verifier; `fog agent revoke --region
// westus` cuts both westus agents off at their next request, and the eastus one not.
func TestAgentScopeSignRevoke(t *testing.T) {
	f := startFog(t, "", func(c *server.Config) { c.ServerOnly = true })
	ctx := context.Background()
	dir := t.TempDir()
	config := filepath.Join(f.dataDir, "client.json")
	newToken := func(region string) string {
		t.Helper()
		tok, _, err := f.runCLI("", "join-token", "create", "--region", region)
		if err != nil {
			t.Fatalf("join-token create: %v", err)
		}
		return strings.TrimSpace(tok)
	}

	// The westus agent, with its token in a file only its user reads.
	tok := newToken("westus")
	tokFile := filepath.Join(dir, "west.token")
	if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	prefix := strings.TrimSuffix(addressBase(), ".1")
	agent := startProc(t, "agent-westus", filepath.Join(dir, "agent-westus.log"), "agent", "--region", "westus",
		"--server", f.info.APIURL, "--join-token-file", tokFile, "--data-dir", filepath.Join(dir, "west"),
		"--address-range", prefix+".1-"+prefix+".20", "--log-level", "debug")
	agent.waitLog("Fog agent of westus", 60*time.Second)
	if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", agent.cmd.Process.Pid)); strings.Contains(string(cmdline), tok[8:20]) {
		t.Errorf("the agent's command line holds the join token: %q", cmdline)
	}

	// Its instance gets a certificate that clients verifying Fog's CA accept.
	west := f.createInstance("rg", "scopewest", "westus", nil)
	conn := mustConnect(t, f.info.CACert, west, "postgres")
	conn.Close(ctx)

	// Another westus agent and an eastus agent, in this process, as an attacker's would be.
	joinHere := func(region string) *agentapi.Client {
		t.Helper()
		creds, err := agentapi.Join(ctx, []string{f.info.APIURL}, newToken(region), region, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		c, err := agentapi.NewClient([]string{f.info.APIURL}, creds, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	attacker, east := joinHere("westus"), joinHere("eastus")
	// The eastus agent publishes its address range, so that an eastus instance gets a
	// desired state (no PostgreSQL runs for it here).
	if err := store.Put(ctx, east, instance.AgentKey("eastus"), instance.AgentRecord{Region: "eastus",
		AddressFirst: prefix + ".101", AddressLast: prefix + ".120", Port: 5432, Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if r := f.call("PUT", miPath("rg", "scopeeast"), miBody("eastus", nil)); r.Status != http.StatusAccepted {
		t.Fatalf("create scopeeast = %d %s", r.Status, r.Body)
	}
	var eastSpec instance.Spec
	eventually(t, 30*time.Second, "the eastus instance's desired state", func() bool {
		specs, err := store.List[instance.Spec](ctx, east, instance.SpecPrefix("eastus"))
		if err == nil && len(specs) == 1 {
			eastSpec = specs[0]
		}
		return eastSpec.UID != ""
	})

	wp := props(west)
	westHost := wp["host"].(string)
	apiHost, _, _ := net.SplitHostPort(strings.TrimPrefix(f.info.APIURL, "https://"))
	if _, _, err := attacker.Issue([]string{"scopewest"}, []net.IP{net.ParseIP(westHost)}); err != nil {
		t.Errorf("Issue(a westus instance) = %v, want it signed", err)
	}
	for _, c := range []struct {
		what string
		dns  []string
		ip   string
	}{
		{"the API's address", nil, apiHost},
		{"the API's name", []string{"localhost"}, ""},
		{"the eastus instance's name", []string{eastSpec.Name}, ""},
		{"the eastus instance's DNS name", eastSpec.DNSNames, ""},
		{"the eastus instance's address", []string{"scopewest"}, eastSpec.Host},
		{"an arbitrary name", []string{"www.example.com"}, ""},
	} {
		var ips []net.IP
		if c.ip != "" {
			ips = []net.IP{net.ParseIP(c.ip)}
		}
		_, _, err := attacker.Issue(c.dns, ips)
		if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "CertificateNameForbidden") {
			t.Errorf("Issue(%s: %v %v) = %v, want 403 CertificateNameForbidden", c.what, c.dns, c.ip, err)
		}
	}

	kv, err := attacker.Get(ctx, instance.SpecKey("eastus", eastSpec.UID))
	if err != nil || strings.Contains(string(kv.Value), "SCRAM") || strings.Contains(string(kv.Value), "adminLogin") ||
		!strings.Contains(string(kv.Value), eastSpec.Host) {
		t.Errorf("Get(eastus desired state) = %s, %v; want its address alone", kv.Value, err)
	}
	if _, err := attacker.List(ctx, instance.SpecPrefix("eastus")); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("List(eastus desired state) = %v, want ErrForbidden", err)
	}
	if _, err := attacker.List(ctx, "mi/"); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("List(mi/) = %v, want ErrForbidden", err)
	}

	// The operator lists the agents and revokes westus's.
	out, _, err := f.runCLI("", "agent", "list", "--config", config)
	var listed []agentapi.AgentCert
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 3 {
		t.Fatalf("fog agent list = %s, %v; want three certificates", out, err)
	}
	out, _, err = f.runCLI("", "agent", "revoke", "--region", "westus", "--config", config)
	var revoked []agentapi.AgentCert
	if err != nil || json.Unmarshal([]byte(out), &revoked) != nil || len(revoked) != 2 || revoked[0].Revoked == nil {
		t.Fatalf("fog agent revoke --region westus = %s, %v; want both westus certificates revoked", out, err)
	}
	if _, err := attacker.Get(ctx, instance.ClusterKey); !errors.Is(err, agentapi.ErrRevoked) {
		t.Errorf("revoked agent's next request: %v, want ErrRevoked", err)
	}
	if _, err := east.Get(ctx, instance.ClusterKey); err != nil {
		t.Errorf("the eastus agent after westus was revoked: %v", err)
	}
	// The agent process is refused too (its lease renewals and watches).
	agent.waitLog("revoked", 20*time.Second)
	if _, _, err := f.runCLI("", "agent", "revoke", "--config", config); err == nil {
		t.Error("fog agent revoke without a selector succeeded")
	}
}
