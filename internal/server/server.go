// Package server runs Fog's server process, as `fog server` does: the store (embedded or
// etcd), the CA, the HTTPS API with the agents' endpoint, the elected controller and the DNS
// server. As `fog up` does, it runs the same server with one region (agent and gateway) per
// region in its own process, each seeing the store through the same scope as a remote agent.
//
// Its Config composes the components' configs (api, controller, fogdns, agent, gateway)
// rather than repeating their fields; the fog command binds their flags (package daemon).
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/fogdb/fog/internal/agent"
	"github.com/fogdb/fog/internal/agentapi"
	"github.com/fogdb/fog/internal/api"
	"github.com/fogdb/fog/internal/authz"
	"github.com/fogdb/fog/internal/console"
	"github.com/fogdb/fog/internal/controller"
	"github.com/fogdb/fog/internal/devca"
	"github.com/fogdb/fog/internal/election"
	"github.com/fogdb/fog/internal/fogclient"
	"github.com/fogdb/fog/internal/fogdns"
	"github.com/fogdb/fog/internal/gateway"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/regional"
	"github.com/fogdb/fog/internal/store"
)

// Config configures the server process. Zero values take the defaults of `fog up`, except
// API.RateLimit (0: no limit) and DNS.Listen ("": no DNS server), whose flags default to a
// limit and, for fog up, an address: Defaults gives the flags' defaults.
type Config struct {
	// ClusterConfig holds the deployment's settings (regions, DNS suffix, lease TTL): the
	// server writes them to the store for the agents and gives them to the controller and
	// the DNS server, whose own fields for them it overwrites.
	instance.ClusterConfig
	// DataDir holds the store (without etcd), a copy of the CA and the client config; fog
	// up's regions keep their instances beneath it.
	DataDir string
	// Etcd, when set, keeps Fog's state in etcd instead of the embedded store file.
	Etcd *store.EtcdConfig
	// ServerOnly runs the API and the controller without agents (`fog server`); the regions'
	// agents run elsewhere (`fog agent`) and join with a token.
	ServerOnly bool

	API        api.Config
	Controller controller.Config
	DNS        fogdns.Config

	// Agent and Gateway configure fog up's regions: each region's agent is Agent with its
	// region, directory, CA and addresses filled in.
	Agent   agent.Config
	Gateway gateway.Config
	// AddressBase is the first loopback address fog up's regions hand to instances and
	// listeners, and Port their one port.
	AddressBase string
	Port        int

	Log *slog.Logger
}

// Defaults of the server process's own settings.
const (
	DefaultDataDir     = ".fog"
	DefaultAddressBase = "127.0.10.1"
	DefaultPort        = 5432
)

// DefaultRegions are the regions of a deployment that names none.
func DefaultRegions() []string { return []string{"eastus", "westus"} }

// Defaults returns the configuration with every default filled in, as the flags show it.
func Defaults() Config {
	return Config{
		ClusterConfig: instance.ClusterConfig{Regions: DefaultRegions(), DNSSuffix: instance.DefaultDNSSuffix, LeaseTTL: lease.DefaultTTL},
		DataDir:       DefaultDataDir,
		API:           api.Defaults(), Controller: controller.Defaults(), DNS: fogdns.Defaults(),
		Agent: agent.Defaults(), Gateway: gateway.Defaults(),
		AddressBase: DefaultAddressBase, Port: DefaultPort,
	}
}

// RegisterFlags binds the flags that fog up and fog server share to c: the DNS suffix and
// the controller's, the API's and the DNS server's flags. Their defaults are c's values.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.DNSSuffix, "dns-suffix", c.DNSSuffix, "DNS suffix of instance and listener names")
	c.Controller.RegisterFlags(fs)
	c.API.RegisterFlags(fs)
	c.DNS.RegisterFlags(fs)
}

// LeaderKey is the store key of the control plane's leader election.
const LeaderKey = "leader/controller"

// DefaultSubscription is the subscription id written to a new client config.
const DefaultSubscription = "00000000-0000-0000-0000-000000000000"

var regionRe = regexp.MustCompile(`^[a-z][a-z0-9]{1,31}$`)

// Validate fills defaults and checks the configuration and each component's.
func (c *Config) Validate() error {
	if err := c.DNS.Validate(); err != nil {
		return err
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return err
	}
	c.DataDir = abs
	if len(c.Regions) == 0 {
		c.Regions = DefaultRegions()
	}
	seen := map[string]bool{}
	for _, r := range c.Regions {
		if !regionRe.MatchString(r) {
			return fmt.Errorf("region %q is invalid: use 2 to 32 lowercase letters and digits, starting with a letter (like eastus)", r)
		}
		if seen[r] {
			return fmt.Errorf("region %q is listed twice", r)
		}
		seen[r] = true
	}
	if err := c.API.Validate(); err != nil {
		return err
	}
	if c.AddressBase == "" {
		c.AddressBase = DefaultAddressBase
	}
	a, err := netip.ParseAddr(c.AddressBase)
	if err != nil || !a.Is4() || !a.IsLoopback() {
		return fmt.Errorf("--address-base %q must be an IPv4 loopback address such as 127.0.10.1", c.AddressBase)
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("--pg-port %d is out of range", c.Port)
	}
	c.DNSSuffix = cmp.Or(c.DNSSuffix, instance.DefaultDNSSuffix)
	c.LeaseTTL = cmp.Or(c.LeaseTTL, lease.DefaultTTL)
	c.Controller.Regions, c.Controller.DNSSuffix, c.Controller.LeaseTTL = c.Regions, c.DNSSuffix, c.LeaseTTL
	if err := c.Controller.Validate(); err != nil {
		return err
	}
	c.DNS.Suffix = c.DNSSuffix
	if err := c.Agent.Validate(); err != nil {
		return err
	}
	if err := c.Gateway.Validate(); err != nil {
		return err
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return nil
}

// ClientConfig is what the CLI needs to reach the API; `fog up` writes it to client.json.
// It is the API client's config, so what the server writes is what the client reads.
type ClientConfig = fogclient.Config

// Info is what a running deployment tells its caller.
type Info struct {
	APIURL     string
	ClientFile string
	Client     ClientConfig
	// DNSAddr is the DNS server's address ("" without one), DNSMode its listener mode.
	DNSAddr, DNSMode string
}

// Run runs the deployment until ctx ends, then stops every PostgreSQL instance it runs and
// returns. ready is called once the API is serving.
func Run(ctx context.Context, cfg Config, ready func(Info)) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.Log
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	var st store.Store
	var err error
	if cfg.Etcd != nil {
		st, err = store.OpenEtcd(ctx, *cfg.Etcd)
	} else {
		st, err = store.OpenBolt(filepath.Join(cfg.DataDir, "fog.db"))
	}
	if err != nil {
		return err
	}
	defer st.Close()
	ca, err := loadCA(ctx, st, cfg.DataDir)
	if err != nil {
		return err
	}
	if err := store.Put(ctx, st, instance.ClusterKey, cfg.ClusterConfig); err != nil {
		return fmt.Errorf("write the deployment settings: %w", err)
	}
	if cfg.Controller.LocaleOK == nil {
		cfg.Controller.LocaleOK = systemLocales(ctx)
	}
	ctrl, err := controller.New(cfg.Controller, st, log.With("component", "controller"))
	if err != nil {
		return err
	}
	tokens := authz.NewTokens(st)

	ln, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (pass --listen to use another address)", cfg.API.Listen, err)
	}
	host, _, _ := net.SplitHostPort(ln.Addr().String())
	tlsCert, err := apiCertificate(ca, host, cfg.API.Names)
	if err != nil {
		ln.Close()
		return err
	}
	apiURL := cfg.API.URL(ln.Addr())
	client, clientFile, err := clientConfig(ctx, cfg.DataDir, apiURL, ca, tokens)
	if err != nil {
		ln.Close()
		return err
	}
	// Access control: the first start of a deployment makes the admin (and any principal
	// that already held a token) an Owner at the root scope.
	access := authz.New(st)
	if err := bootstrapAccess(ctx, access, tokens); err != nil {
		ln.Close()
		return fmt.Errorf("set up access control: %w", err)
	}
	// Metrics: the control plane's, and in fog up every region's, on the API's /metrics.
	reg := prometheus.NewRegistry()
	reg.MustRegister(ctrl.Collector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(ca.Cert)
	srv := &http.Server{
		Handler: handler(cfg, st, ca, ctrl, tokens, access, apiURL, reg),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{tlsCert}, MinVersion: tls.VersionTLS12,
			ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: clientCAs},
		// Slow or endless requests do not hold connections: the agents' watch streams lift
		// the deadlines for themselves.
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 2 * time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	g, gctx := errgroup.WithContext(ctx)
	if !cfg.ServerOnly {
		if err := runRegions(gctx, g, cfg, st, ca, reg); err != nil {
			ln.Close()
			return err
		}
	}
	// The same election as on several servers: with the embedded store this process always
	// wins it, and its drivers write through the leader's guard all the same.
	hostname, _ := os.Hostname()
	elector := election.New(election.Config{Key: LeaderKey, ID: fmt.Sprintf("%s/%d", hostname, os.Getpid()), TTL: 5 * time.Second},
		st, log.With("component", "election"))
	g.Go(func() error {
		return elector.Run(gctx, func(lctx context.Context, gst store.Store) { _ = ctrl.Lead(lctx, gst) })
	})
	g.Go(func() error {
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("api: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	info := Info{APIURL: apiURL, ClientFile: clientFile, Client: client}
	if cfg.DNS.Listen != "" {
		if info.DNSAddr, info.DNSMode, err = runDNS(gctx, g, cfg.DNS, st, log); err != nil {
			return err
		}
	}
	if ready != nil {
		ready(info)
	}
	err = g.Wait()
	what := "the API"
	if !cfg.ServerOnly {
		what = "the API, the agents of " + strings.Join(cfg.Regions, ", ") + " and every PostgreSQL they ran"
	}
	if err != nil {
		log.Error("fog stopped", "stopped", what, "err", err)
	} else {
		log.Info("fog stopped", "stopped", what, "api", apiURL)
	}
	return err
}

// handler serves, on one port, the ARM API (bearer tokens), the agents' endpoint (client
// certificates signed by the CA, which the TLS handshake verifies when one is sent) and the
// web console.
func handler(cfg Config, st store.Store, ca *devca.CA, ctrl *controller.Controller, tokens *authz.Tokens, access *authz.Authorizer, apiURL string, reg *prometheus.Registry) http.Handler {
	log := cfg.Log
	agents := agentapi.NewServer(st, ca, cfg.Regions, log.With("component", "agentapi"))
	armAPI := api.New(ctrl, tokens, log.With("component", "api")).WithAuthz(access).WithBaseURL(apiURL).WithRateLimit(cfg.API.RateLimit, int(2*cfg.API.RateLimit)).WithMetrics(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})).WithJoinTokens(
		func(ctx context.Context, region string, ttl time.Duration) (string, time.Time, error) {
			return agentapi.CreateJoinToken(ctx, st, ca.CertPEM, region, ttl)
		}).Handler()
	mux := http.NewServeMux()
	mux.Handle(agentapi.Path, agents.Handler())
	mux.Handle("/", armAPI)
	// The web console, on the API's origin and TLS; it calls the API above in process.
	web := console.New(console.Config{API: armAPI, Regions: cfg.Regions, Subscription: DefaultSubscription, Log: log.With("component", "console"),
		Principal: func(ctx context.Context, tok string) string {
			info, ok, err := tokens.Info(ctx, tok)
			if err != nil || !ok {
				return ""
			}
			return info.Name
		}})
	mux.Handle("/console/", web)
	mux.Handle("GET /{$}", web)
	return mux
}

// runDNS starts, in g, the DNS server for instance and listener names; it returns the
// address it answers on and its listener mode.
func runDNS(ctx context.Context, g *errgroup.Group, cfg fogdns.Config, st store.Store, log *slog.Logger) (addr, mode string, err error) {
	pc, dln, err := fogdns.Listen(cfg.Listen)
	if err != nil {
		return "", "", fmt.Errorf("DNS server on %s: %w (pass --dns-listen to use another address, or \"\" for none)", cfg.Listen, err)
	}
	cfg.NSAddr = dln.Addr().(*net.TCPAddr).IP
	srv, err := fogdns.New(cfg, st, log.With("component", "dns"))
	if err != nil {
		pc.Close()
		dln.Close()
		return "", "", err
	}
	g.Go(func() error { return srv.Run(ctx, pc, dln) })
	return dln.Addr().String(), srv.Mode(), nil
}

// runRegions starts, in g, one region (agent and gateway) per configured region, each with
// the store scoped as a remote agent's is and the CA as issuer.
func runRegions(ctx context.Context, g *errgroup.Group, cfg Config, st store.Store, ca *devca.CA, reg prometheus.Registerer) error {
	runner, err := cfg.Agent.Runner(ctx, cfg.Log)
	if err != nil {
		return err
	}
	first := netip.MustParseAddr(cfg.AddressBase)
	last := first
	for range 1023 {
		if n := last.Next(); n.IsValid() && n.IsLoopback() {
			last = n
		}
	}
	for _, region := range cfg.Regions {
		ac := cfg.Agent
		ac.Region, ac.Dir, ac.StopOnExit, ac.CACertPEM = region, filepath.Join(cfg.DataDir, "regions", region), true, ca.CertPEM
		// Every region of one machine hands out addresses from the one range; the
		// controller never gives an address twice.
		ac.Record = instance.AgentRecord{AddressFirst: first.String(), AddressLast: last.String(), Port: cfg.Port, PortLast: cfg.Port}
		rc := regional.Config{Agent: ac, Gateway: cfg.Gateway, Metrics: reg, LibDir: filepath.Join(cfg.DataDir, "lib")}
		scoped := store.Scoped(st, store.AgentScope(region))
		g.Go(func() error { return regional.Run(ctx, rc, scoped, runner, ca, cfg.Log.With("region", region)) })
	}
	// The API is ready once every region's agent has told the control plane its addresses.
	deadline := time.Now().Add(30 * time.Second)
	for _, region := range cfg.Regions {
		for {
			_, err := st.Get(ctx, instance.AgentKey(region))
			if err == nil {
				break
			}
			if ctx.Err() != nil || time.Now().After(deadline) {
				return fmt.Errorf("the agent of region %s did not start: %v", region, cmp.Or(ctx.Err(), err))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// loadCA returns the deployment's CA. Several servers on one etcd must sign with one CA, so
// the CA lives in the store (where agents cannot read it); a data directory's CA from
// before is moved there, and each server keeps a copy beside its data.
func loadCA(ctx context.Context, st store.Store, dir string) (*devca.CA, error) {
	type caRecord struct {
		Cert string `json:"cert"`
		Key  string `json:"key"`
	}
	const key = "ca/root"
	var rec caRecord
	_, err := store.Get(ctx, st, key, &rec)
	if err == nil {
		ca, err := devca.FromPEM([]byte(rec.Cert), []byte(rec.Key))
		if err != nil {
			return nil, err
		}
		return ca, ca.Save(dir)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("read the CA: %w", err)
	}
	ca, err := devca.LoadOrCreate(dir)
	if err != nil {
		return nil, err
	}
	err = st.Txn(ctx, []store.Cond{{Key: key, Rev: 0}}, []store.Op{store.PutOp(key, caRecord{Cert: string(ca.CertPEM), Key: string(ca.KeyPEM())})})
	if errors.Is(err, store.ErrConflict) {
		// Another server stored its CA first: use that one.
		return loadCA(ctx, st, dir)
	}
	return ca, err
}

func apiCertificate(ca *devca.CA, host string, names []string) (tls.Certificate, error) {
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		ips = append(ips, ip)
	}
	dns := []string{"localhost"}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, n)
		}
	}
	crt, key, err := ca.Issue(dns, ips)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(crt, key)
}

func bootstrapAccess(ctx context.Context, access *authz.Authorizer, tokens *authz.Tokens) error {
	infos, err := tokens.List(ctx)
	if err != nil {
		return err
	}
	principals := []string{"admin"}
	for _, t := range infos {
		principals = append(principals, t.Name)
	}
	if err := access.Bootstrap(ctx, principals...); err != nil {
		return err
	}
	_, err = access.DefaultTenant(ctx)
	return err
}

// clientConfig writes client.json, keeping the existing token when it is still valid so that
// a restarted fog does not lock out a configured CLI.
func clientConfig(ctx context.Context, dir, apiURL string, ca *devca.CA, tokens *authz.Tokens) (ClientConfig, string, error) {
	path := filepath.Join(dir, "client.json")
	var cc ClientConfig
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &cc)
	}
	if ok, err := tokens.Valid(ctx, cc.Token); err != nil {
		return cc, "", fmt.Errorf("check the admin token: %w", err)
	} else if !ok {
		tok, err := tokens.Create(ctx, "admin")
		if err != nil {
			return cc, "", fmt.Errorf("create admin token: %w", err)
		}
		cc.Token = tok
	}
	if cc.Subscription == "" {
		cc.Subscription = DefaultSubscription
	}
	cc.APIURL, cc.CACert = apiURL, string(ca.CertPEM)
	b, _ := json.MarshalIndent(cc, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return cc, "", err
	}
	return cc, path, os.Rename(tmp, path)
}

// systemLocales returns a check against `locale -a`. glibc accepts "en_US.UTF-8" for a locale
// listed as "en_US.utf8", so names compare with the codeset normalised.
func systemLocales(ctx context.Context) func(string) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "locale", "-a").Output()
	have := map[string]bool{"c": true, "posix": true}
	for _, l := range strings.Fields(string(out)) {
		have[normLocale(l)] = true
	}
	return func(l string) bool { return have[normLocale(l)] }
}

func normLocale(l string) string {
	name, codeset, ok := strings.Cut(l, ".")
	if !ok {
		return strings.ToLower(l)
	}
	codeset, mod, _ := strings.Cut(codeset, "@")
	codeset = strings.ToLower(strings.ReplaceAll(codeset, "-", ""))
	n := name + "." + codeset
	if mod != "" {
		n += "@" + mod
	}
	return strings.ToLower(n)
}
