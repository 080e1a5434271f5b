package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fogdb/fog/internal/api"
	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/fogclient"
	"github.com/fogdb/fog/internal/fogdns"
	"github.com/fogdb/fog/internal/gateway"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/server"
)

const (
	sub      = server.DefaultSubscription
	password = "Bench-Passw0rd-123456!"
)

// fog is an in-process Fog deployment for one benchmark run.
type fog struct {
	dir    string
	client server.ClientConfig
	api    *fogclient.Client
	stop   func() error
	ca     *x509.CertPool
	// dns is Fog's DNS server (direct mode).
	dns string
}

// startFog runs a Fog in this process with its regions' addresses from base; mutate changes
// its configuration before it starts.
func startFog(ctx context.Context, base string, mutate ...func(*server.Config)) (*fog, error) {
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
	cfg := server.Config{
		DataDir: dir, API: api.Config{Listen: "127.0.0.1:0"}, AddressBase: base,
		// The DNS server in direct mode: the gateway benchmark reaches the primary through
		// the read-write name as a relay-free application does.
		DNS: fogdns.Config{Listen: "127.0.0.1:0", Mode: fogdns.ModeDirect},
		// Kernel splicing on where it can be, for the listener's spliced rows (the
		// listener_loop rows turn it off for a while): it is off by default.
		Gateway: gateway.Config{KernelSplice: true},
		Log:     slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: logLevel()})),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	go func() {
		done <- server.Run(ctx, cfg, func(i server.Info) { ready <- i })
	}()
	var f *fog
	select {
	case info := <-ready:
		if f, err = newFogClient(dir, info.Client); err != nil {
			cancel()
			<-done
			return nil, err
		}
		f.dns = info.DNSAddr
	case err := <-done:
		cancel()
		return nil, err
	}
	f.stop = func() error {
		// Idle keep-alive connections would keep goroutines on both sides after the stop.
		f.api.CloseIdleConnections()
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
func newFogClient(dir string, cc server.ClientConfig) (*fog, error) {
	f := &fog{dir: dir, client: cc, ca: x509.NewCertPool(), stop: func() error { return nil }}
	f.ca.AppendCertsFromPEM([]byte(cc.CACert))
	// The load generators run many requests at once: keep their connections.
	api, err := fogclient.New(cc, fogclient.WithIdleConnsPerHost(100), fogclient.WithPollInterval(20*time.Millisecond))
	if err != nil {
		return nil, err
	}
	f.api = api
	return f, nil
}

// fogFromDir is a client of the `fog up` running on dir, from its client.json.
func fogFromDir(dir string) (*fog, error) {
	cc, err := fogclient.LoadConfig(filepath.Join(dir, "client.json"))
	if err != nil {
		return nil, err
	}
	return newFogClient(dir, cc)
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

// call sends a request and returns the answer whatever its status.
func (f *fog) call(ctx context.Context, method, path string, body any) (response, error) {
	r, err := f.api.Send(ctx, fogclient.Request{Method: method, Path: path, Body: body})
	if err != nil {
		return response{}, err
	}
	return response{status: r.Status, header: r.Header, body: r.Body}, nil
}

// wait follows a 202 to its end and returns the operation status body.
func (f *fog) wait(ctx context.Context, r response) (map[string]any, error) {
	if r.status != http.StatusAccepted {
		return nil, fmt.Errorf("status %d: %s", r.status, r.body)
	}
	st, resp, err := f.api.PollStatus(ctx, r.header.Get("Azure-AsyncOperation"), nil)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	_ = json.Unmarshal(resp.Body, &m)
	if st.Status != arm.StatusSucceeded {
		return m, fmt.Errorf("operation %v", m)
	}
	return m, nil
}

// do sends a request and follows its operation to the end.
func (f *fog) do(ctx context.Context, method, path string, body any) error {
	op, err := f.api.Begin(ctx, method, path, body, "")
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if op.Done() {
		return nil
	}
	_, err = f.wait(ctx, response{status: op.First.Status, header: op.First.Header, body: op.First.Body})
	return err
}

func (f *fog) getJSON(ctx context.Context, path string) (map[string]any, error) {
	var m map[string]any
	if _, err := f.api.Do(ctx, "GET", path, nil, &m); err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	return m, nil
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

func (f *fog) createInstance(ctx context.Context, rg, name, loc string, props resource.InstanceProperties) (instance, error) {
	admin, pw := "fogadmin", password
	props.AdministratorLogin, props.AdministratorLoginPassword = &admin, &pw
	if _, err := f.api.CreateOrUpdateManagedInstance(ctx, rg, name, fogclient.ManagedInstance{Location: loc, Properties: props}); err != nil {
		return instance{}, fmt.Errorf("create instance %s: %w", name, err)
	}
	m, err := f.api.GetManagedInstance(ctx, rg, name)
	if err != nil {
		return instance{}, err
	}
	return instance{id: m.ID, host: m.Properties.Host, port: m.Properties.Port}, nil
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
	storage := 256
	p, err := f.createInstance(ctx, "rg-p", name+"-p", "eastus", resource.InstanceProperties{StorageSizeInGB: &storage})
	if err != nil {
		return nil, err
	}
	s, err := f.createInstance(ctx, "rg-s", name+"-s", "westus", resource.InstanceProperties{StorageSizeInGB: &storage, DNSZonePartner: &p.id})
	if err != nil {
		return nil, err
	}
	return &group{f: f, name: name, prim: p, sec: s, primSide: [2]string{"rg-p", "eastus"}}, nil
}

func (g *group) body() fogclient.FailoverGroup {
	return fogclient.FailoverGroup{Properties: resource.FailoverGroupProperties{
		ReadWriteEndpoint:    &resource.ReadWriteEndpoint{FailoverPolicy: "Manual"},
		ReadOnlyEndpoint:     &resource.ReadOnlyEndpoint{FailoverPolicy: "Disabled"},
		PartnerRegions:       []resource.PartnerRegion{{Location: "westus"}},
		ManagedInstancePairs: []resource.InstancePair{{PrimaryManagedInstanceID: g.prim.id, PartnerManagedInstanceID: g.sec.id}},
	}}
}

func (g *group) create(ctx context.Context) error {
	if _, err := g.f.api.CreateOrUpdateFailoverGroup(ctx, "rg-p", "eastus", g.name, g.body()); err != nil {
		return fmt.Errorf("create group %s: %w", g.name, err)
	}
	m, err := g.f.api.GetFailoverGroup(ctx, "rg-p", "eastus", g.name)
	if err != nil {
		return err
	}
	l := m.Properties.Listeners
	if l == nil {
		return fmt.Errorf("group %s shows no listeners", g.name)
	}
	g.rw = net.JoinHostPort(l.ReadWrite.Host, fmt.Sprint(l.ReadWrite.Port))
	g.ro = net.JoinHostPort(l.ReadOnly.Host, fmt.Sprint(l.ReadOnly.Port))
	g.rwName = l.ReadWrite.FQDN
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
		m, err := g.f.api.GetFailoverGroup(ctx, g.primSide[0], g.primSide[1], g.name)
		if err == nil && m.Properties.ReplicationState == "CATCH_UP" {
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

// waitNoVerify waits until no `pgbackrest ... verify` runs on the machine (the verification
// an agent runs after each backup, which it reports after the backup): a scenario's timed
// runs then do not share the machine with it. It gives up after limit.
func waitNoVerify(ctx context.Context, limit time.Duration) error {
	quiet := 0
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); {
		running := false
		cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range cmdlines {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			args := strings.Split(string(b), "\x00")
			if len(args) > 1 && filepath.Base(args[0]) == "pgbackrest" && slices.Contains(args, "verify") {
				running = true
				break
			}
		}
		quiet++
		if running {
			quiet = 0
		}
		if quiet >= 5 { // a second without one
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("a pgBackRest verify still runs after %s", limit)
}
