package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fogdb/fog/internal/api"
	"github.com/fogdb/fog/internal/fogdns"
	"github.com/fogdb/fog/internal/server"
)

const (
	sub      = server.DefaultSubscription
	apiVer   = "2023-08-01"
	password = "Bench-Passw0rd-123456!"
)

// fog is an in-process Fog deployment for one benchmark run.
type fog struct {
	dir    string
	client server.ClientConfig
	hc     *http.Client
	stop   func() error
	ca     *x509.CertPool
	// dns is Fog's DNS server (direct mode).
	dns string
}

func startFog(ctx context.Context, base string) (*fog, error) {
	dir, err := os.MkdirTemp("", "fog-bench-")
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "fog.log"))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan server.Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, server.Config{
			DataDir: dir, API: api.Config{Listen: "127.0.0.1:0"}, AddressBase: base,
			// The DNS server in direct mode: the gateway benchmark reaches the primary through
			// the read-write name as a relay-free application does.
			DNS: fogdns.Config{Listen: "127.0.0.1:0", Mode: fogdns.ModeDirect},
			Log: slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: logLevel()})),
		}, func(i server.Info) { ready <- i })
	}()
	var f *fog
	select {
	case info := <-ready:
		f = newFogClient(dir, info.Client)
		f.dns = info.DNSAddr
	case err := <-done:
		cancel()
		return nil, err
	}
	f.stop = func() error {
		// Idle keep-alive connections would keep goroutines on both sides after the stop.
		f.hc.CloseIdleConnections()
		cancel()
		err := <-done
		logf.Close()
		if os.Getenv("FOG_BENCH_KEEP") == "" {
			os.RemoveAll(dir)
		} else {
			fmt.Println("  kept", dir)
		}
		return err
	}
	return f, nil
}

// newFogClient is a client of the deployment whose client config is cc.
func newFogClient(dir string, cc server.ClientConfig) *fog {
	f := &fog{dir: dir, client: cc, ca: x509.NewCertPool(), stop: func() error { return nil }}
	f.ca.AppendCertsFromPEM([]byte(cc.CACert))
	f.hc = &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: f.ca}, MaxIdleConnsPerHost: 100,
	}}
	return f
}

// fogFromDir is a client of the `fog up` running on dir, from its client.json.
func fogFromDir(dir string) (*fog, error) {
	b, err := os.ReadFile(filepath.Join(dir, "client.json"))
	if err != nil {
		return nil, err
	}
	var cc server.ClientConfig
	if err := json.Unmarshal(b, &cc); err != nil {
		return nil, err
	}
	return newFogClient(dir, cc), nil
}

// logLevel is Info, or Debug when the run's data is kept for inspection (FOG_BENCH_KEEP).
func logLevel() slog.Level {
	if os.Getenv("FOG_BENCH_KEEP") != "" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (f *fog) call(ctx context.Context, method, path string, body any) (response, error) {
	u := path
	if !strings.HasPrefix(u, "https://") {
		u = f.client.APIURL + path
		if strings.Contains(u, "?") {
			u += "&api-version=" + apiVer
		} else {
			u += "?api-version=" + apiVer
		}
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Authorization", "Bearer "+f.client.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.hc.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// wait follows a 202 to its end and returns the operation status body.
func (f *fog) wait(ctx context.Context, r response) (map[string]any, error) {
	if r.status != http.StatusAccepted {
		return nil, fmt.Errorf("status %d: %s", r.status, r.body)
	}
	for {
		st, err := f.call(ctx, "GET", r.header.Get("Azure-AsyncOperation"), nil)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		_ = json.Unmarshal(st.body, &m)
		if m["status"] != "InProgress" {
			if m["status"] != "Succeeded" {
				return m, fmt.Errorf("operation %v", m)
			}
			return m, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (f *fog) do(ctx context.Context, method, path string, body any) error {
	r, err := f.call(ctx, method, path, body)
	if err != nil {
		return err
	}
	if r.status == http.StatusAccepted {
		_, err = f.wait(ctx, r)
		return err
	}
	if r.status >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, r.status, r.body)
	}
	return nil
}

func (f *fog) getJSON(ctx context.Context, path string) (map[string]any, error) {
	r, err := f.call(ctx, "GET", path, nil)
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", path, r.status, r.body)
	}
	var m map[string]any
	return m, json.Unmarshal(r.body, &m)
}

func miPath(rg, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Sql/managedInstances/%s", sub, rg, name)
}

func groupPath(rg, loc, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Sql/locations/%s/instanceFailoverGroups/%s", sub, rg, loc, name)
}

// instance is a created managed instance.
type instance struct {
	id, host string
	port     int
}

func (f *fog) createInstance(ctx context.Context, rg, name, loc string, extra map[string]any) (instance, error) {
	props := map[string]any{"administratorLogin": "fogadmin", "administratorLoginPassword": password}
	for k, v := range extra {
		props[k] = v
	}
	if err := f.do(ctx, "PUT", miPath(rg, name), map[string]any{"location": loc, "properties": props}); err != nil {
		return instance{}, err
	}
	m, err := f.getJSON(ctx, miPath(rg, name))
	if err != nil {
		return instance{}, err
	}
	p := m["properties"].(map[string]any)
	return instance{id: m["id"].(string), host: p["host"].(string), port: int(p["port"].(float64))}, nil
}

// group is a failover group of two instances, primary in eastus.
type group struct {
	f        *fog
	name     string
	prim     instance
	sec      instance
	rw, ro   string
	rwName   string    // the read-write listener's DNS name
	primSide [2]string // rg, location of the current primary
}

func (f *fog) createPair(ctx context.Context, name string) (*group, error) {
	p, err := f.createInstance(ctx, "rg-p", name+"-p", "eastus", map[string]any{"storageSizeInGB": 256})
	if err != nil {
		return nil, err
	}
	s, err := f.createInstance(ctx, "rg-s", name+"-s", "westus", map[string]any{"storageSizeInGB": 256, "dnsZonePartner": p.id})
	if err != nil {
		return nil, err
	}
	return &group{f: f, name: name, prim: p, sec: s, primSide: [2]string{"rg-p", "eastus"}}, nil
}

func (g *group) body() map[string]any {
	return map[string]any{"properties": map[string]any{
		"readWriteEndpoint":    map[string]any{"failoverPolicy": "Manual"},
		"readOnlyEndpoint":     map[string]any{"failoverPolicy": "Disabled"},
		"partnerRegions":       []any{map[string]any{"location": "westus"}},
		"managedInstancePairs": []any{map[string]any{"primaryManagedInstanceId": g.prim.id, "partnerManagedInstanceId": g.sec.id}},
	}}
}

func (g *group) create(ctx context.Context) error {
	if err := g.f.do(ctx, "PUT", groupPath("rg-p", "eastus", g.name), g.body()); err != nil {
		return err
	}
	m, err := g.f.getJSON(ctx, groupPath("rg-p", "eastus", g.name))
	if err != nil {
		return err
	}
	l := m["properties"].(map[string]any)["listeners"].(map[string]any)
	rw, ro := l["readWrite"].(map[string]any), l["readOnly"].(map[string]any)
	g.rw = net.JoinHostPort(rw["host"].(string), fmt.Sprint(rw["port"]))
	g.ro = net.JoinHostPort(ro["host"].(string), fmt.Sprint(ro["port"]))
	g.rwName, _ = rw["fullyQualifiedDomainName"].(string)
	return nil
}

func (g *group) secondarySide() [2]string {
	if g.primSide[0] == "rg-p" {
		return [2]string{"rg-s", "westus"}
	}
	return [2]string{"rg-p", "eastus"}
}

// waitCatchUp waits until the group replicates again.
func (g *group) waitCatchUp(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		m, err := g.f.getJSON(ctx, groupPath(g.primSide[0], g.primSide[1], g.name))
		if err == nil && m["properties"].(map[string]any)["replicationState"] == "CATCH_UP" {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("group %s not CATCH_UP within 2 minutes", g.name)
}

// connect opens a session as the admin to addr over TLS.
func connect(ctx context.Context, ca *x509.CertPool, addr, db string) (*pgx.Conn, error) {
	host, port, _ := net.SplitHostPort(addr)
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=fogadmin dbname=%s sslmode=verify-ca connect_timeout=40", host, port, db))
	if err != nil {
		return nil, err
	}
	cfg.Password = password
	cfg.TLSConfig = &tls.Config{RootCAs: ca, InsecureSkipVerify: true, VerifyConnection: verifyCA(ca)}
	return pgx.ConnectConfig(ctx, cfg)
}

// verifyCA checks the chain but not the name: benchmarks dial addresses, not names.
func verifyCA(ca *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("no server certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: ca, Intermediates: inter})
		return err
	}
}

func addr(i instance) string { return net.JoinHostPort(i.host, fmt.Sprint(i.port)) }
