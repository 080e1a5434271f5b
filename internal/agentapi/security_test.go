package agentapi_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/agentapi"
	"github.com/fogdb/fog/internal/authz"
	"github.com/fogdb/fog/internal/devca"
	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/store"
)

const suffix = "database.fog.internal"

// deployment writes what the control plane would for a failover group "grp" of instance e1
// (eastus, primary) and w1 (westus), each with its admin's verifier, and a westus instance w2
// in no group.
func deployment(t *testing.T, st store.Store) {
	t.Helper()
	ctx := context.Background()
	g := group.FailoverGroup{
		Name: "grp", DNSZone: "zone", ID: "g1", Epoch: 1,
		Sides: [2]group.GroupSide{{Location: "eastus", InstanceName: "east1", InstanceUID: "e1"},
			{Location: "westus", InstanceName: "west1", InstanceUID: "w1"}},
		ReadWrite: group.Address{Host: "127.0.30.50", Port: 5432}, ReadOnly: group.Address{Host: "127.0.30.51", Port: 5432},
		PartnerReadWrite: group.Address{Host: "127.0.31.50", Port: 5432}, PartnerReadOnly: group.Address{Host: "127.0.31.51", Port: 5432},
	}
	rw, ro := group.ListenerNames("grp", "zone", suffix)
	spec := func(uid, name, region, host string, peer *instance.Peer) instance.Spec {
		s := instance.Spec{UID: uid, Name: name, Region: region, Host: host, Port: 5432, AdminLogin: name + "admin",
			AdminVerifier: "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy", DNSNames: []string{name + ".zone." + suffix}}
		if peer != nil {
			s.Peer = peer
			s.DNSNames = append(s.DNSNames, rw, ro)
			s.ExtraIPs = g.ListenerHosts()
		}
		return s
	}
	for key, v := range map[string]any{
		instance.ClusterKey:                instance.ClusterConfig{Regions: []string{"eastus", "westus"}, DNSSuffix: suffix},
		group.Key("grp"):                   g,
		instance.SpecKey("eastus", "e1"):   spec("e1", "east1", "eastus", "127.0.30.1", &instance.Peer{UID: "w1", Region: "westus", Host: "127.0.31.1", Port: 5432}),
		instance.SpecKey("westus", "w1"):   spec("w1", "west1", "westus", "127.0.31.1", &instance.Peer{UID: "e1", Region: "eastus", Host: "127.0.30.1", Port: 5432}),
		instance.SpecKey("westus", "w2"):   spec("w2", "west2", "westus", "127.0.31.2", nil),
		"mi/sub/rg/east1":                  map[string]string{"passwordVerifier": "SCRAM-SHA-256$4096:x"},
		instance.StatusKey("eastus", "e1"): instance.Status{UID: "e1", Phase: instance.PhaseReady},
	} {
		if err := store.Put(ctx, st, key, v); err != nil {
			t.Fatal(err)
		}
	}
}

func ips(ss ...string) []net.IP {
	var out []net.IP
	for _, s := range ss {
		out = append(out, net.ParseIP(s))
	}
	return out
}

// TestSignOnlyTheRegionsNames: an agent has server certificates signed only for its
// region's instances and listeners: never for the API's names or addresses, another
// region's instance, or any other name; a refusal is a 403 naming the name refused.
func TestSignOnlyTheRegionsNames(t *testing.T) {
	e := newEnv(t, 1)
	deployment(t, e.st)
	west := e.join(t, "westus")
	pool := x509.NewCertPool()
	pool.AddCert(e.ca.Cert)
	rw, ro := group.ListenerNames("grp", "zone", suffix)

	for _, c := range []struct {
		what string
		dns  []string
		ips  []net.IP
	}{
		{"its grouped instance (as the agent asks)", []string{"west1", "west1.zone." + suffix, rw, ro}, ips("127.0.31.1", "127.0.30.50", "127.0.30.51", "127.0.31.50", "127.0.31.51")},
		{"its ungrouped instance", []string{"west2", "west2.zone." + suffix}, ips("127.0.31.2")},
		{"its read-write listener (as the gateway asks)", []string{rw}, ips("127.0.31.50")},
		{"its read-only listener", []string{ro}, ips("127.0.31.51")},
		{"its instance, names in another case with a final dot", []string{"West1.ZONE." + strings.ToUpper(suffix) + "."}, nil},
	} {
		crt, key, err := west.Issue(c.dns, c.ips)
		if err != nil {
			t.Errorf("Issue(%s: %v %v) = %v, want it signed", c.what, c.dns, c.ips, err)
			continue
		}
		if _, err := tls.X509KeyPair(crt, key); err != nil {
			t.Errorf("Issue(%s): pair %v", c.what, err)
		}
		b, _ := pem.Decode(crt)
		cert, _ := x509.ParseCertificate(b.Bytes)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: c.dns[0]}); err != nil {
			t.Errorf("Issue(%s) does not verify: %v", c.what, err)
		}
	}

	for _, c := range []struct {
		what, want string
		dns        []string
		ips        []net.IP
	}{
		{"the API's address", "127.0.0.1", nil, ips("127.0.0.1")},
		{"the API's name", "localhost", []string{"localhost"}, nil},
		{"its instance and the API's address", "127.0.0.1", []string{"west1"}, ips("127.0.31.1", "127.0.0.1")},
		{"the eastus instance's name", "east1", []string{"east1"}, nil},
		{"the eastus instance's DNS name", "east1.zone." + suffix, []string{"west1", "east1.zone." + suffix}, nil},
		{"the eastus instance's address", "127.0.30.1", []string{"west1"}, ips("127.0.30.1")},
		{"an arbitrary name", "evil.example", []string{"evil.example"}, nil},
		{"a wildcard", "*.zone." + suffix, []string{"*.zone." + suffix}, nil},
		{"an arbitrary address", "10.9.8.7", []string{"west1"}, ips("10.9.8.7")},
		{"the partner's replication identity", "repl.e1", []string{"repl.e1"}, nil},
		{"nothing at all", "no name", nil, nil},
	} {
		_, _, err := west.Issue(c.dns, c.ips)
		if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "CertificateNameForbidden") ||
			!strings.Contains(err.Error(), c.want) {
			t.Errorf("Issue(%s: %v %v) = %v; want 403 CertificateNameForbidden naming %s", c.what, c.dns, c.ips, err, c.want)
		}
	}
	_, _, err := west.Issue(nil, ips("127.0.0.1"))
	if !strings.Contains(err.Error(), "API") {
		t.Errorf("Issue(the API's address) = %v; want it to say whose the address is", err)
	}
	_, _, err = west.Issue([]string{"east1"}, nil)
	if !strings.Contains(err.Error(), "eastus") {
		t.Errorf("Issue(east1) = %v; want it to say it is eastus's", err)
	}

	// The eastus agent, for its side, gets its own instance and the shared listeners.
	east := e.join(t, "eastus")
	if _, _, err := east.Issue([]string{"east1", rw}, ips("127.0.30.1", "127.0.30.50", "127.0.31.50")); err != nil {
		t.Errorf("eastus Issue(its instance) = %v", err)
	}
	if _, _, err := east.Issue([]string{"west1"}, nil); err == nil {
		t.Error("eastus Issue(west1) was signed")
	}

	// Replication identities: only of the region's own instances in a group.
	if _, _, err := west.IssueReplication("w1"); err != nil {
		t.Errorf("IssueReplication(w1) = %v", err)
	}
	for _, uid := range []string{"e1", "w2", "nope", "../eastus/e1"} {
		if _, _, err := west.IssueReplication(uid); !errors.Is(err, store.ErrForbidden) && (err == nil || !strings.Contains(err.Error(), "400")) {
			t.Errorf("IssueReplication(%s) = %v, want it refused", uid, err)
		}
	}
}

// TestAgentReadsNoOtherRegionsSecrets: over the agent endpoint, the westus agent reads its
// own desired state whole; eastus's only as where its instances listen (its gateway routes
// there), never with the admin's verifier; listing eastus's desired state, and any record
// holding a verifier, is refused.
func TestAgentReadsNoOtherRegionsSecrets(t *testing.T) {
	e := newEnv(t, 1)
	deployment(t, e.st)
	west := e.join(t, "westus")
	ctx := context.Background()

	var own instance.Spec
	if _, err := store.Get(ctx, west, instance.SpecKey("westus", "w1"), &own); err != nil || own.AdminVerifier == "" {
		t.Errorf("Get(own desired state) = %+v, %v; want it whole", own, err)
	}
	kv, err := west.Get(ctx, instance.SpecKey("eastus", "e1"))
	if err != nil {
		t.Fatalf("Get(eastus desired state) = %v; want the address projection", err)
	}
	var fields map[string]any
	_ = json.Unmarshal(kv.Value, &fields)
	if len(fields) != 4 || fields["host"] != "127.0.30.1" || fields["port"] != float64(5432) {
		t.Errorf("Get(eastus desired state) = %s; want uid, region, host and port alone", kv.Value)
	}
	if strings.Contains(string(kv.Value), "SCRAM") {
		t.Errorf("Get(eastus desired state) = %s: carries a verifier", kv.Value)
	}
	for _, k := range []string{"desired/eastus/", "desired/", "mi/"} {
		if _, err := west.List(ctx, k); !errors.Is(err, store.ErrForbidden) {
			t.Errorf("List(%s) = %v, want ErrForbidden", k, err)
		}
	}
	if _, _, err := west.Snapshot(ctx, "desired/"); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("Snapshot(desired/) = %v, want ErrForbidden", err)
	}
	for _, k := range []string{"mi/sub/rg/east1", "tokens/x", "agentcerts/x", "agentrevocations/westus"} {
		if _, err := west.Get(ctx, k); !errors.Is(err, store.ErrForbidden) {
			t.Errorf("Get(%s) = %v, want ErrForbidden", k, err)
		}
	}
	// The gateway watches every region's desired state (keys only) and routes as before.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := west.Watch(wctx, "desired/")
	time.Sleep(200 * time.Millisecond)
	_ = store.Put(ctx, e.st, instance.SpecKey("eastus", "e9"), instance.Spec{UID: "e9"})
	select {
	case ev, ok := <-ch:
		if !ok || ev.Key != instance.SpecKey("eastus", "e9") {
			t.Errorf("Watch(desired/) = %+v, %v", ev, ok)
		}
	case <-time.After(5 * time.Second):
		t.Error("Watch(desired/) delivered nothing")
	}
	routes, err := group.Routes(ctx, west, lease.NewObserver(time.Second, nil), suffix, "westus")
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 2 || routes[0].Addr != "127.0.31.50:5432" {
		t.Errorf("Routes(westus) through the agent's view = %+v", routes)
	}
}

// TestRenewal: an agent renews its certificate through the endpoint its current one
// authenticates, saves it, and keeps working, its watches too; the old certificate is
// refused once the grace has passed.
func TestRenewal(t *testing.T) {
	e := newEnv(t, 2, func(s *agentapi.Server) { s.RenewalGrace = 300 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	c, creds := e.joinIn(t, "westus", dir)
	oldCreds := *creds
	old := c.Certificate()
	w := c.Watch(ctx, "observed/")
	time.Sleep(200 * time.Millisecond)

	if err := c.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	next := c.Certificate()
	if next.SerialNumber.Cmp(old.SerialNumber) == 0 || next.Subject.CommonName != "agent:westus" {
		t.Fatalf("after Renew: serial %s (was %s), CN %q", next.SerialNumber, old.SerialNumber, next.Subject.CommonName)
	}
	saved, err := agentapi.LoadCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(saved.CertPEM); b == nil || string(b.Bytes) != string(next.Raw) {
		t.Error("the renewed certificate was not saved")
	}
	if err := store.Put(ctx, c, "observed/westus/a", "after renewal"); err != nil {
		t.Errorf("write after Renew: %v", err)
	}
	// The watch goes on: it delivers the write, or, when the renewal's new stream came up
	// after the write, says it was set up again (Key ""), after which the write is there to
	// read (a plain watch's contract: changes may have been missed in between).
	written := func() bool {
		var v string
		_, err := store.Get(ctx, c, "observed/westus/a", &v)
		return err == nil && v == "after renewal"
	}
	for seen, deadline := false, time.After(10*time.Second); !seen; {
		select {
		case ev, ok := <-w:
			if !ok {
				t.Fatal("the watch ended at the renewal")
			}
			seen = ev.Key == "observed/westus/a" || ev.Key == "" && written()
		case <-deadline:
			t.Fatal("after Renew the watch delivered neither the write nor a restart within 10 s")
		}
	}

	// The old certificate, within its grace: still good (a request under way completes).
	stale := e.client(t, &oldCreds)
	if _, err := stale.Get(ctx, instance.ClusterKey); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old certificate within the grace: %v, want ErrNotFound", err)
	}
	time.Sleep(400 * time.Millisecond)
	if _, err := stale.Get(ctx, instance.ClusterKey); !errors.Is(err, agentapi.ErrRevoked) {
		t.Errorf("old certificate after the grace: %v, want ErrRevoked", err)
	}
	if _, err := c.Get(ctx, instance.ClusterKey); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("renewed certificate after the grace: %v, want ErrNotFound", err)
	}

	// The records name one agent across the renewal.
	recs, err := agentapi.Agents(ctx, e.st)
	if err != nil || len(recs) != 2 || recs[0].Agent != recs[1].Agent || recs[1].Renews != recs[0].Serial || recs[0].RenewedTo != recs[1].Serial {
		t.Errorf("Agents = %+v, %v; want the join certificate renewed to the new one, one agent", recs, err)
	}
}

// TestKeepRenewed: a short-lived certificate is renewed at two thirds of its life, again and
// again, and the agent's requests never fail on the way.
func TestKeepRenewed(t *testing.T) {
	e := newEnv(t, 1, func(s *agentapi.Server) { s.CertValidity = 3 * time.Second; s.RenewalGrace = time.Second })
	ctx, cancel := context.WithCancel(context.Background())
	c, _ := e.joinIn(t, "westus", t.TempDir())
	first := c.Certificate()
	if at := agentapi.RenewAt(first); at.Before(time.Now()) || at.After(first.NotAfter) {
		t.Fatalf("RenewAt = %s, want within the lifetime %s-%s", at, first.NotBefore, first.NotAfter)
	}
	done := make(chan struct{})
	go func() { defer close(done); c.KeepRenewed(ctx) }()
	defer func() { cancel(); <-done }()
	seen := map[string]bool{agentapi.SerialHex(first.SerialNumber): true}
	deadline := time.Now().Add(8 * time.Second)
	for len(seen) < 3 && time.Now().Before(deadline) {
		if _, err := c.Get(ctx, instance.ClusterKey); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get during renewals: %v", err)
		}
		seen[agentapi.SerialHex(c.Certificate().SerialNumber)] = true
		time.Sleep(50 * time.Millisecond)
	}
	if len(seen) < 3 {
		t.Errorf("certificates used in 8 s of 3 s certificates: %d, want renewals", len(seen))
	}
}

// TestRevocation: a revoked agent is refused from its next request on (its open watch ends
// too), by agent id or by region, and another agent is not; a certificate signed before
// servers kept records falls with its region.
func TestRevocation(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	a := e.join(t, "westus")
	b := e.join(t, "westus")
	east := e.join(t, "eastus")
	legacy := e.legacyClient(t, "westus")
	for name, c := range map[string]*agentapi.Client{"a": a, "b": b, "east": east, "legacy": legacy} {
		if _, err := c.Get(ctx, instance.ClusterKey); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s before any revocation: %v", name, err)
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := a.Watch(wctx, "observed/")

	agentID := agentapi.SerialHex(a.Certificate().SerialNumber)
	recs, err := agentapi.Revoke(ctx, e.st, agentapi.Revocation{Agent: agentID[:12]}, "alice")
	if err != nil || len(recs) != 1 || recs[0].Revoked == nil || recs[0].RevokedBy != "alice" {
		t.Fatalf("Revoke(agent a) = %+v, %v", recs, err)
	}
	_, err = a.Get(ctx, instance.ClusterKey)
	if !errors.Is(err, agentapi.ErrRevoked) || !errors.Is(err, store.ErrForbidden) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("revoked agent's next request: %v, want ErrRevoked (a store.ErrForbidden)", err)
	}
	if err := a.Renew(ctx); !errors.Is(err, agentapi.ErrRevoked) {
		t.Errorf("revoked agent's renewal: %v, want ErrRevoked", err)
	}
	if _, _, err := a.Issue([]string{"x"}, nil); !errors.Is(err, agentapi.ErrRevoked) {
		t.Errorf("revoked agent's signing request: %v, want ErrRevoked", err)
	}
	select {
	case <-drained(w):
	case <-time.After(5 * time.Second):
		t.Error("the revoked agent's watch is still open")
	}
	for name, c := range map[string]*agentapi.Client{"b": b, "east": east, "legacy": legacy} {
		if _, err := c.Get(ctx, instance.ClusterKey); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s after agent a was revoked: %v", name, err)
		}
	}

	if _, err := agentapi.Revoke(ctx, e.st, agentapi.Revocation{Region: "westus"}, "alice"); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*agentapi.Client{"b": b, "legacy": legacy} {
		if _, err := c.Get(ctx, instance.ClusterKey); !errors.Is(err, agentapi.ErrRevoked) {
			t.Errorf("%s after westus was revoked: %v, want ErrRevoked", name, err)
		}
	}
	if _, err := east.Get(ctx, instance.ClusterKey); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("eastus after westus was revoked: %v", err)
	}
	// A new join of the region works again.
	if _, err := e.join(t, "westus").Get(ctx, instance.ClusterKey); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a westus agent joined after the revocation: %v", err)
	}
	for _, sel := range []agentapi.Revocation{{}, {Region: "westus", Agent: agentID}, {Agent: "abc"}, {Serial: "zz"}} {
		if _, err := agentapi.Revoke(ctx, e.st, sel, "alice"); err == nil {
			t.Errorf("Revoke(%+v) = nil, want an error", sel)
		}
	}
}

// legacyClient is an agent of region with a certificate signed before servers kept records
// of them.
func (e *env) legacyClient(t *testing.T, region string) *agentapi.Client {
	t.Helper()
	csr, key, err := devca.NewRequest("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	crt, err := e.ca.SignRequest(csr, devca.ClientUsage, agentapi.CommonNamePrefix+region, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return e.client(t, &agentapi.Credentials{Region: region, CertPEM: crt, KeyPEM: key, CAPEM: e.ca.CertPEM})
}

// drained is closed once ch is.
func drained(ch <-chan store.Event) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		for range ch {
		}
		close(done)
	}()
	return done
}

// TestRevokeEndpoint: the admin endpoints take the API's bearer token of a principal with
// the right role at the root scope, and no agent certificate.
func TestRevokeEndpoint(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	a := e.join(t, "westus")
	if err := authz.New(e.st).Bootstrap(ctx, "admin"); err != nil {
		t.Fatal(err)
	}
	// Tokens as the API makes them: the admin endpoints authenticate them as the API does.
	token := func(name string, ttl time.Duration, tenant ...string) string {
		tok, _, err := authz.NewTokens(e.st).CreateFor(ctx, name, ttl, tenant...)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	admin, nobody := token("admin", 0), token("nobody", 0)
	expired := token("admin", time.Nanosecond)
	// An Owner at the root, but of a tenant: a tenant never manages the deployment's machines.
	tenantAdmin := token("admin", 0, "aaaaaaaa-1111-2222-3333-444444444444")
	pool := x509.NewCertPool()
	pool.AddCert(e.ca.Cert)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	call := func(method, path, tok, body string) (int, string) {
		req, _ := http.NewRequest(method, e.srv[0].URL+agentapi.Path+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = io.Copy(&b, resp.Body)
		return resp.StatusCode, b.String()
	}
	for _, c := range []struct {
		tok, body string
		status    int
		code      string
	}{
		{"", `{"region":"westus"}`, 401, "InvalidAuthenticationToken"},
		{"fog_unknown", `{"region":"westus"}`, 401, "InvalidAuthenticationToken"},
		{expired, `{"region":"westus"}`, 401, "InvalidAuthenticationToken"},
		{tenantAdmin, `{"region":"westus"}`, 403, "AuthorizationFailed"},
		{nobody, `{"region":"westus"}`, 403, "AuthorizationFailed"},
		{admin, `{"region":"northpole"}`, 400, "InvalidRegion"},
		{admin, `{}`, 400, "InvalidRevocation"},
		{admin, `{"agent":"0123456789abcdef"}`, 404, "AgentNotFound"},
	} {
		if status, body := call("POST", "revoke", c.tok, c.body); status != c.status || !strings.Contains(body, c.code) {
			t.Errorf("POST revoke %s with token %q = %d %s, want %d %s", c.body, c.tok, status, body, c.status, c.code)
		}
	}
	if _, err := a.Get(ctx, instance.ClusterKey); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("agent after refused revocations: %v", err)
	}
	if status, body := call("GET", "agents", nobody, ""); status != 403 {
		t.Errorf("GET agents as nobody = %d %s, want 403", status, body)
	}
	status, body := call("GET", "agents", admin, "")
	if status != 200 || !strings.Contains(body, agentapi.SerialHex(a.Certificate().SerialNumber)) {
		t.Errorf("GET agents = %d %s, want the agent's certificate", status, body)
	}
	if status, body := call("POST", "revoke", admin, `{"region":"westus"}`); status != 200 || !strings.Contains(body, `"revokedBy":"admin"`) {
		t.Errorf("POST revoke westus = %d %s", status, body)
	}
	if _, err := a.Get(ctx, instance.ClusterKey); !errors.Is(err, agentapi.ErrRevoked) {
		t.Errorf("agent after its region was revoked: %v, want ErrRevoked", err)
	}
}

// TestRenewalSaveInterrupted: a crash between the renewal's two renames leaves the new key
// beside the old certificate; loading the credentials finishes the save.
func TestRenewalSaveInterrupted(t *testing.T) {
	e := newEnv(t, 1)
	dir := t.TempDir()
	c, _ := e.joinIn(t, "westus", dir)
	if err := c.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	renewed, _ := os.ReadFile(filepath.Join(dir, "agent.crt"))
	// Put the state back to just before the certificate's rename.
	_ = os.WriteFile(filepath.Join(dir, "agent.crt.tmp"), renewed, 0o644)
	old := e.legacyCert(t)
	_ = os.WriteFile(filepath.Join(dir, "agent.crt"), old, 0o644)
	creds, err := agentapi.LoadCredentials(dir)
	if err != nil || string(creds.CertPEM) != string(renewed) {
		t.Fatalf("LoadCredentials after an interrupted save = %v; want the renewed certificate", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "agent.crt.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary certificate is still there: %v", err)
	}
}

// legacyCert is some other agent certificate (its key is not the saved one).
func (e *env) legacyCert(t *testing.T) []byte {
	t.Helper()
	csr, _, _ := devca.NewRequest("", nil, nil)
	crt, err := e.ca.SignRequest(csr, devca.ClientUsage, "agent:westus", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return crt
}
