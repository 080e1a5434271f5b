// Package standalone runs Fog's server, as `fog server` does: the store (embedded or etcd),
// the CA, the HTTPS API with the agents' endpoint, and the elected controller; and, as `fog
// up` does, the server together with one region (agent and gateway) per region in the same
// process, each seeing the store through the same scope as a remote agent.
package standalone

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
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/fogdb/fog/internal/agent"
	"github.com/fogdb/fog/internal/agentapi"
	"github.com/fogdb/fog/internal/api"
	"github.com/fogdb/fog/internal/authz"
	"github.com/fogdb/fog/internal/console"
	"github.com/fogdb/fog/internal/controller"
	"github.com/fogdb/fog/internal/devca"
	"github.com/fogdb/fog/internal/election"
	"github.com/fogdb/fog/internal/fogdns"
	"github.com/fogdb/fog/internal/gateway"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/regional"
	"github.com/fogdb/fog/internal/store"
)

// Config configures a standalone deployment. Zero values take the defaults of `fog up`.
type Config struct {
	DataDir     string
	Regions     []string
	Listen      string
	PGBin       string
	PGUser      string
	DNSSuffix   string
	AddressBase string
	Port        int
	// LocaleOK overrides the check of locales against `locale -a` (tests use it to make
	// initdb fail on purpose).
	LocaleOK func(string) bool
	// Resync is the agents' periodic check interval.
	Resync time.Duration
	// Observe is how often agents publish what they observe of running instances.
	Observe time.Duration
	// Etcd, when set, keeps Fog's state in etcd instead of the embedded store file.
	Etcd *store.EtcdConfig
	// HoldTimeout bounds how long a listener holds new connections during a failover.
	HoldTimeout time.Duration
	// RateLimit is each API principal's requests per second (bursts of twice as many); 0
	// sets no limit (fog up and fog server default to 100 through their flag).
	RateLimit float64
	// ListenerLimits caps the listeners' connections (zero fields: defaults).
	ListenerLimits gateway.Config
	// MaxSlotWALKeepSize overrides the WAL a replication slot may hold back.
	MaxSlotWALKeepSize string
	// LeaseTTL is the agents' lease TTL (package lease); 0 takes the default.
	LeaseTTL time.Duration
	// GuardCommand starts the process that fences a region's primaries if fog dies (the fog
	// binary and "guard"); nil runs none.
	GuardCommand []string
	// MinGracePeriod is the shortest grace period an Automatic group may have (default and
	// maximum 60m, Azure's; at least 1m).
	MinGracePeriod time.Duration
	// ObserveOnly runs every group's automatic failover policy as events only.
	ObserveOnly bool
	// ActivityRetentionDays is how long the activity log keeps an operation (default 90).
	ActivityRetentionDays int
	// ServerOnly runs the API and the controller without agents (`fog server`); the regions'
	// agents run elsewhere (`fog agent`) and join with a token.
	ServerOnly bool
	// ExternalURL is the API's URL as clients reach it (a load balancer's, say); operation
	// URLs point there. Default: the listen address (or the first APINames entry).
	ExternalURL string
	// APINames are extra host names and addresses the API's certificate names (`fog server
	// --advertise`), for agents and clients on other machines.
	APINames []string
	// DNSListen is where the authoritative DNS server for instance and listener names
	// answers, over UDP and TCP ("" runs none).
	DNSListen string
	// DNSMode is how listener names resolve: fogdns.ModeGateway (to the gateway's listener
	// addresses) or fogdns.ModeDirect (to the current primary and secondary themselves).
	DNSMode string
	Log     *slog.Logger
}

// LeaderKey is the store key of the control plane's leader election.
const LeaderKey = "leader/controller"

// DefaultSubscription is the subscription id written to a new client config.
const DefaultSubscription = "00000000-0000-0000-0000-000000000000"

var regionRe = regexp.MustCompile(`^[a-z][a-z0-9]{1,31}$`)

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	if c.DNSMode != "" && c.DNSMode != fogdns.ModeGateway && c.DNSMode != fogdns.ModeDirect {
		return fmt.Errorf("--dns-mode %q: use %s or %s", c.DNSMode, fogdns.ModeGateway, fogdns.ModeDirect)
	}
	if c.DataDir == "" {
		c.DataDir = ".fog"
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return err
	}
	c.DataDir = abs
	if len(c.Regions) == 0 {
		c.Regions = []string{"eastus", "westus"}
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
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7443"
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("--listen %q: %w", c.Listen, err)
	}
	if c.PGUser == "" {
		c.PGUser = "postgres"
	}
	if c.AddressBase == "" {
		c.AddressBase = "127.0.10.1"
	}
	a, err := netip.ParseAddr(c.AddressBase)
	if err != nil || !a.Is4() || !a.IsLoopback() {
		return fmt.Errorf("--address-base %q must be an IPv4 loopback address such as 127.0.10.1", c.AddressBase)
	}
	if c.Port == 0 {
		c.Port = 5432
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("--pg-port %d is out of range", c.Port)
	}
	if c.ExternalURL != "" {
		u, err := url.Parse(c.ExternalURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("--external-url %q: give the API's URL as clients reach it, such as https://fog.example.com:7443", c.ExternalURL)
		}
	}
	if c.ActivityRetentionDays < 0 || c.ActivityRetentionDays > 3650 {
		return fmt.Errorf("--activity-log-retention-days %d: give 1 to 3650 days", c.ActivityRetentionDays)
	}
	if c.MinGracePeriod == 0 {
		c.MinGracePeriod = 60 * time.Minute
	}
	if c.MinGracePeriod%time.Minute != 0 || c.MinGracePeriod < time.Minute || c.MinGracePeriod > 60*time.Minute {
		return fmt.Errorf("--min-grace-period %s: give whole minutes from 1m to 60m (Azure's minimum, the default)", c.MinGracePeriod)
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return nil
}

// ClientConfig is what the CLI needs to reach the API; `fog up` writes it to client.json.
type ClientConfig struct {
	APIURL       string `json:"apiUrl"`
	CACert       string `json:"caCert"`
	Token        string `json:"token"`
	Subscription string `json:"subscription"`
}

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
	leaseTTL := cmp.Or(cfg.LeaseTTL, lease.DefaultTTL)
	if err := store.Put(ctx, st, instance.ClusterKey, instance.ClusterConfig{
		Regions: cfg.Regions, DNSSuffix: cmp.Or(cfg.DNSSuffix, instance.DefaultDNSSuffix), LeaseTTL: leaseTTL}); err != nil {
		return fmt.Errorf("write the deployment settings: %w", err)
	}
	localeOK := cfg.LocaleOK
	if localeOK == nil {
		localeOK = systemLocales(ctx)
	}
	ctrl, err := controller.New(controller.Config{
		Regions: cfg.Regions, DNSSuffix: cfg.DNSSuffix, LocaleOK: localeOK, LeaseTTL: leaseTTL,
		MinGracePeriod: cfg.MinGracePeriod, ObserveOnly: cfg.ObserveOnly,
		ActivityRetentionDays: cfg.ActivityRetentionDays,
	}, st, log.With("component", "controller"))
	if err != nil {
		return err
	}
	tokens := api.NewTokens(st)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (pass --listen to use another address)", cfg.Listen, err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	tlsCert, err := apiCertificate(ca, host, cfg.APINames)
	if err != nil {
		ln.Close()
		return err
	}
	urlHost := host
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() && len(cfg.APINames) > 0 {
		urlHost = cfg.APINames[0]
	}
	apiURL := "https://" + net.JoinHostPort(urlHost, port)
	if cfg.ExternalURL != "" {
		apiURL = strings.TrimRight(cfg.ExternalURL, "/")
	}
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
	// One port serves the ARM API (bearer tokens) and the agents' endpoint (client
	// certificates signed by the CA, which the TLS handshake verifies when one is sent).
	agents := agentapi.NewServer(st, ca, cfg.Regions, log.With("component", "agentapi"))
	// Metrics: the control plane's, and in fog up every region's, on the API's /metrics.
	reg := prometheus.NewRegistry()
	reg.MustRegister(ctrl.Collector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	armAPI := api.New(ctrl, tokens, log.With("component", "api")).WithAuthz(access).WithBaseURL(apiURL).WithRateLimit(cfg.RateLimit, int(2*cfg.RateLimit)).WithMetrics(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})).WithJoinTokens(
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
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(ca.Cert)
	srv := &http.Server{
		Handler: mux,
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
		return elector.Run(gctx, func(lctx context.Context, gst store.Store) { _ = ctrl.Driver(gst).Run(lctx) })
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
	if cfg.DNSListen != "" {
		pc, dln, err := fogdns.Listen(cfg.DNSListen)
		if err != nil {
			return fmt.Errorf("DNS server on %s: %w (pass --dns-listen to use another address, or \"\" for none)", cfg.DNSListen, err)
		}
		srvDNS, err := fogdns.New(fogdns.Config{Suffix: cmp.Or(cfg.DNSSuffix, instance.DefaultDNSSuffix), Mode: cfg.DNSMode, NSAddr: dln.Addr().(*net.TCPAddr).IP}, st, log.With("component", "dns"))
		if err != nil {
			return err
		}
		g.Go(func() error { return srvDNS.Run(gctx, pc, dln) })
		info.DNSAddr, info.DNSMode = dln.Addr().String(), srvDNS.Mode()
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

// runRegions starts, in g, one region (agent and gateway) per configured region, each with
// the store scoped as a remote agent's is and the CA as issuer.
func runRegions(ctx context.Context, g *errgroup.Group, cfg Config, st store.Store, ca *devca.CA, reg prometheus.Registerer) error {
	bin, err := postgres.FindBinaries(ctx, cfg.PGBin)
	if err != nil {
		return err
	}
	runner, err := postgres.NewRunner(bin, cfg.PGUser, cfg.Log)
	if err != nil {
		return err
	}
	fogUser := "root"
	if u, err := user.Current(); err == nil {
		fogUser = u.Username
	}
	first := netip.MustParseAddr(cfg.AddressBase)
	last := first
	for range 1023 {
		if n := last.Next(); n.IsValid() && n.IsLoopback() {
			last = n
		}
	}
	for _, region := range cfg.Regions {
		gc := cfg.ListenerLimits
		gc.HoldTimeout = cfg.HoldTimeout
		rc := regional.Config{Metrics: reg, Gateway: gc, LibDir: filepath.Join(cfg.DataDir, "lib"), Agent: agent.Config{
			Region: region, Dir: filepath.Join(cfg.DataDir, "regions", region), FogUser: fogUser,
			Resync: cfg.Resync, Observe: cfg.Observe, StopOnExit: true, CACertPEM: ca.CertPEM, MaxSlotWALKeepSize: cfg.MaxSlotWALKeepSize,
			GuardCommand: cfg.GuardCommand,
			// Every region of one machine hands out addresses from the one range; the
			// controller never gives an address twice.
			Record: instance.AgentRecord{AddressFirst: first.String(), AddressLast: last.String(), Port: cfg.Port, PortLast: cfg.Port},
		}}
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

func bootstrapAccess(ctx context.Context, access *authz.Authorizer, tokens *api.Tokens) error {
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
func clientConfig(ctx context.Context, dir, apiURL string, ca *devca.CA, tokens *api.Tokens) (ClientConfig, string, error) {
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
