package agentapi_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fogdb/fog/internal/agentapi"
	"github.com/fogdb/fog/internal/devca"
	"github.com/fogdb/fog/internal/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type env struct {
	st  store.Store
	ca  *devca.CA
	srv []*httptest.Server
}

// newEnv serves the agent endpoints n times over one store, as several fog servers do; opts
// adjust each server.
func newEnv(t *testing.T, n int, opts ...func(*agentapi.Server)) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenBolt(filepath.Join(dir, "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, err := devca.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, ca: ca}
	for range n {
		crt, key, err := ca.Issue([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")})
		if err != nil {
			t.Fatal(err)
		}
		pair, _ := tls.X509KeyPair(crt, key)
		pool := x509.NewCertPool()
		pool.AddCert(ca.Cert)
		s := agentapi.NewServer(st, ca, []string{"eastus", "westus"}, quiet)
		s.Heartbeat = 100 * time.Millisecond
		for _, o := range opts {
			o(s)
		}
		hs := httptest.NewUnstartedServer(s.Handler())
		hs.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
		hs.StartTLS()
		t.Cleanup(hs.Close)
		e.srv = append(e.srv, hs)
	}
	return e
}

func (e *env) token(t *testing.T, region string, ttl time.Duration) string {
	t.Helper()
	tok, _, err := agentapi.CreateJoinToken(context.Background(), e.st, e.ca.CertPEM, region, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (e *env) join(t *testing.T, region string) *agentapi.Client {
	t.Helper()
	c, _ := e.joinIn(t, region, t.TempDir())
	return c
}

// joinIn joins an agent of region keeping its credentials in dir.
func (e *env) joinIn(t *testing.T, region, dir string) (*agentapi.Client, *agentapi.Credentials) {
	t.Helper()
	creds, err := agentapi.Join(context.Background(), []string{e.srv[0].URL}, e.token(t, region, time.Minute), region, dir)
	if err != nil {
		t.Fatal(err)
	}
	return e.client(t, creds), creds
}

// client is a client of every server with creds.
func (e *env) client(t *testing.T, creds *agentapi.Credentials) *agentapi.Client {
	t.Helper()
	var urls []string
	for _, s := range e.srv {
		urls = append(urls, s.URL)
	}
	c, err := agentapi.NewClient(urls, creds, quiet)
	if err != nil {
		t.Fatal(err)
	}
	c.HeartbeatTimeout = 500 * time.Millisecond
	t.Cleanup(func() { c.Close() })
	return c
}

// A join token admits one agent of its region, once, before it expires, and only from a
// server whose CA matches the pin the token carries; the certificate names the region.
func TestJoinToken(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	srv := []string{e.srv[0].URL}
	tok := e.token(t, "eastus", time.Minute)
	if _, err := agentapi.Join(ctx, srv, tok, "westus", t.TempDir()); err == nil || !strings.Contains(err.Error(), "region eastus") {
		t.Errorf("join as westus with an eastus token: %v", err)
	}
	// The failed attempt above used the token up: tokens are one-time even on a mistake.
	if _, err := agentapi.Join(ctx, srv, tok, "eastus", t.TempDir()); err == nil || !strings.Contains(err.Error(), "used already") {
		t.Errorf("second join with one token: %v, want it refused", err)
	}
	dir := t.TempDir()
	creds, err := agentapi.Join(ctx, srv, e.token(t, "eastus", time.Minute), "eastus", dir)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := agentapi.LoadCredentials(dir)
	if err != nil || loaded.Region != "eastus" || string(loaded.KeyPEM) != string(creds.KeyPEM) {
		t.Fatalf("saved credentials: %v %+v", err, loaded)
	}
	b, _ := pem.Decode(loaded.CertPEM)
	cert, _ := x509.ParseCertificate(b.Bytes)
	if cert.Subject.CommonName != "agent:eastus" || len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("agent certificate: CN %q, usage %v", cert.Subject.CommonName, cert.ExtKeyUsage)
	}

	expired := e.token(t, "eastus", time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	if _, err := agentapi.Join(ctx, srv, expired, "eastus", t.TempDir()); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("join with an expired token: %v", err)
	}
	other, _ := devca.LoadOrCreate(t.TempDir())
	pin, _ := agentapi.CAPin(other.CertPEM)
	good := e.token(t, "eastus", time.Minute)
	forged := good[:strings.LastIndex(good, ".")+1] + pin
	if _, err := agentapi.Join(ctx, srv, forged, "eastus", t.TempDir()); err == nil || !strings.Contains(err.Error(), "pin") {
		t.Errorf("join against a server whose CA is not the pinned one: %v", err)
	}
	if _, err := agentapi.Join(ctx, srv, "fogjoin.nope", "eastus", t.TempDir()); err == nil {
		t.Error("a malformed token was accepted")
	}
}

// An agent reads and writes only what its region's scope allows; the store's errors come
// back as the same errors.
func TestAgentScope(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	c := e.join(t, "eastus")
	if err := store.Put(ctx, e.st, "desired/eastus/a", map[string]int{"v": 1}); err != nil {
		t.Fatal(err)
	}
	_ = store.Put(ctx, e.st, "tokens/x", "secret")
	_ = store.Put(ctx, e.st, "ca/root", "key")
	kv, err := c.Get(ctx, "desired/eastus/a")
	if err != nil || string(kv.Value) != `{"v":1}` || kv.Rev == 0 {
		t.Fatalf("get desired/eastus/a = %+v, %v", kv, err)
	}
	if _, err := c.Get(ctx, "desired/eastus/none"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get of a missing key: %v, want ErrNotFound", err)
	}
	for _, k := range []string{"tokens/x", "ca/root", "ops/1", "mi/x", "commands/westus/1"} {
		if _, err := c.Get(ctx, k); !errors.Is(err, store.ErrForbidden) {
			t.Errorf("get %s: %v, want ErrForbidden", k, err)
		}
	}
	if _, err := c.List(ctx, ""); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("list of everything: %v, want ErrForbidden", err)
	}
	if err := store.Put(ctx, c, "observed/eastus/a", "ok"); err != nil {
		t.Errorf("write own observed state: %v", err)
	}
	for _, k := range []string{"observed/westus/a", "desired/eastus/a", "leases/westus", "leases/eastusx", "fog/g", "agents/westus"} {
		if err := store.Put(ctx, c, k, "x"); !errors.Is(err, store.ErrForbidden) {
			t.Errorf("write %s: %v, want ErrForbidden", k, err)
		}
	}
	// A compare on a key it may read guards its write, as a lease claim does.
	err = c.Txn(ctx, []store.Cond{{Key: "desired/eastus/a", Rev: kv.Rev + 100}}, []store.Op{store.PutOp("leases/eastus", "x")})
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("txn with a stale compare: %v, want ErrConflict", err)
	}
	if err := c.Txn(ctx, []store.Cond{{Key: "desired/eastus/a", Rev: kv.Rev}}, []store.Op{store.PutOp("leases/eastus", "x")}); err != nil {
		t.Errorf("txn with a current compare: %v", err)
	}
	if _, err := c.Grant(ctx, time.Second); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("grant: %v, want ErrForbidden", err)
	}

	// Without a client certificate nothing is served.
	pool := x509.NewCertPool()
	pool.AddCert(e.ca.Cert)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post(e.srv[0].URL+agentapi.Path+"get", "application/json", strings.NewReader(`{"key":"desired/eastus/a"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("get without a client certificate = %d, want 401", resp.StatusCode)
	}

}

// Watches deliver through the server, and survive the loss of the server they use: the
// client moves to the next one and says that something may have changed.
func TestWatchAcrossServers(t *testing.T) {
	e := newEnv(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := e.join(t, "eastus")
	_, _, err := c.Snapshot(ctx, "desired/eastus/")
	if err != nil {
		t.Fatal(err)
	}
	rev, _, _ := e.st.Snapshot(ctx, "desired/eastus/")
	w := c.Watch(ctx, "desired/eastus/")
	from := c.WatchFrom(ctx, "desired/eastus/", rev)
	time.Sleep(200 * time.Millisecond)
	_ = store.Put(ctx, e.st, "desired/eastus/1", "a")
	next := func(ch <-chan store.Event, what string) store.Event {
		t.Helper()
		select {
		case ev := <-ch:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatalf("no event on %s", what)
			return store.Event{}
		}
	}
	if ev := next(w, "watch"); ev.Key != "desired/eastus/1" {
		t.Errorf("watch event %+v", ev)
	}
	ev := next(from, "watchFrom")
	if ev.Key != "desired/eastus/1" || ev.Rev <= rev {
		t.Errorf("watchFrom event %+v", ev)
	}
	// The first server goes away; writes made meanwhile still arrive, in order, once.
	e.srv[0].CloseClientConnections()
	e.srv[0].Close()
	_ = store.Put(ctx, e.st, "desired/eastus/2", "b")
	_ = store.Put(ctx, e.st, "desired/eastus/3", "c")
	for _, want := range []string{"desired/eastus/2", "desired/eastus/3"} {
		if ev := next(from, "watchFrom after the server died"); ev.Key != want {
			t.Errorf("watchFrom after failover: %+v, want %s", ev, want)
		}
	}
	// The plain watch says "look again" (an event without a key) once its new stream is up,
	// and delivers what is written after.
	for ev := next(w, "watch after failover"); ev.Key != ""; ev = next(w, "watch after failover") {
	}
	_ = store.Put(ctx, e.st, "desired/eastus/4", "d")
	for ev := next(w, "watch after failover"); ev.Key != "desired/eastus/4"; ev = next(w, "watch after failover") {
	}
	if _, err := c.Get(ctx, "desired/eastus/3"); err != nil {
		t.Errorf("get after the first server died: %v", err)
	}
}
