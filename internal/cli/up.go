package cli

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fogdb/fog/internal/guard"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/standalone"
	"github.com/fogdb/fog/internal/store"
)

func newUpCommand(g *globals) *cobra.Command {
	var cfg standalone.Config
	var regions, logLevel string
	var etcd etcdFlags
	up := &cobra.Command{
		Use:   "up",
		Short: "Run Fog on this machine: API, controller and one agent per region, with real PostgreSQL",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return usageErr("--log-level", "use debug, info, warn or error")
			}
			cfg.Log = slog.New(slog.NewTextHandler(g.io.Err, &slog.HandlerOptions{Level: level}))
			ec, err := etcd.config()
			if err != nil {
				return err
			}
			cfg.Etcd = ec
			for _, r := range strings.Split(regions, ",") {
				if r = strings.TrimSpace(r); r != "" {
					cfg.Regions = append(cfg.Regions, r)
				}
			}
			if exe, err := os.Executable(); err == nil {
				cfg.GuardCommand = []string{exe, "guard"}
			}
			return standalone.Run(cmd.Context(), cfg, func(info standalone.Info) {
				fmt.Fprintf(g.io.Out, "Fog API: %s (regions: %s)\n", info.APIURL, strings.Join(cfg.Regions, ", "))
				banner(g.io.Out, info.APIURL, info.ClientFile)
				if info.DNSAddr != "" {
					fmt.Fprintf(g.io.Out, "DNS for *.%s on %s (UDP and TCP; listener names in %s mode)\n", cfg.DNSSuffix, info.DNSAddr, info.DNSMode)
				}
			})
		},
	}
	fl := up.Flags()
	fl.StringVar(&cfg.DataDir, "data-dir", ".fog", "where Fog keeps its store, CA, client config and PostgreSQL data")
	fl.StringVar(&regions, "regions", "eastus,westus", "comma-separated regions to run an agent for")
	fl.StringVar(&cfg.Listen, "listen", "127.0.0.1:7443", "address of the HTTPS API")
	fl.StringVar(&cfg.PGBin, "pg-bin", "", "directory of the PostgreSQL server binaries (default: $PG_BIN, pg_config, /usr/lib/postgresql/*/bin)")
	fl.StringVar(&cfg.PGUser, "pg-user", "postgres", "unprivileged OS user that runs PostgreSQL when fog runs as root")
	fl.StringVar(&cfg.DNSSuffix, "dns-suffix", instance.DefaultDNSSuffix, "DNS suffix of instance and listener names")
	fl.StringVar(&cfg.AddressBase, "address-base", "127.0.10.1", "first loopback address handed to instances")
	fl.IntVar(&cfg.Port, "pg-port", 5432, "port of the instances and listeners (each has a loopback address of its own)")
	fl.DurationVar(&cfg.LeaseTTL, "lease-ttl", lease.DefaultTTL, "how long a primary stays writable without its agent renewing its lease; a forced failover whose old primary's agent does not answer waits this long")
	fl.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	bindPolicy(fl, &cfg)
	bindListenerLimits(fl, &cfg.ListenerLimits)
	bindDNS(fl, &cfg, "127.0.0.1:8053")
	etcd.bind(fl)
	return up
}

// banner prints where the client config and the CA are, as absolute paths, and commands that
// work from any directory.
func banner(w io.Writer, apiURL, clientFile string) {
	cfg, err := filepath.Abs(clientFile)
	if err != nil {
		cfg = clientFile
	}
	fmt.Fprintf(w, "Console: %s/ (sign in with the token in the client config: fog account get-access-token)\n", apiURL)
	fmt.Fprintf(w, "CA certificate: %s\n", filepath.Join(filepath.Dir(cfg), "ca.crt"))
	fmt.Fprintf(w, "Client config:  %s\n", cfg)
	fmt.Fprintf(w, "In another terminal (fog on your PATH: go build -o bin/fog ./cmd/fog && export PATH=\"$PWD/bin:$PATH\"):\n")
	fmt.Fprintf(w, "  export FOG_CONFIG=%s\n  fog sql mi list\n", cfg)
}

// bindDNS adds the DNS server's flags.
func bindDNS(fl *pflag.FlagSet, cfg *standalone.Config, listen string) {
	fl.StringVar(&cfg.DNSListen, "dns-listen", listen, "address of the authoritative DNS server for instance and listener names, UDP and TCP (\"\" for none)")
	fl.StringVar(&cfg.DNSMode, "dns-mode", "gateway", "what listener names resolve to: gateway (the listeners, which relay) or direct (the current primary and secondary themselves)")
}

// bindPolicy adds the automatic failover policy's deployment settings.
func bindPolicy(fl *pflag.FlagSet, cfg *standalone.Config) {
	fl.DurationVar(&cfg.MinGracePeriod, "min-grace-period", 60*time.Minute, "shortest failoverWithDataLossGracePeriodMinutes an Automatic group may have: Azure's 60m, or down to 1m")
	fl.IntVar(&cfg.ActivityRetentionDays, "activity-log-retention-days", 90, "how long the activity log keeps an operation")
	fl.Float64Var(&cfg.RateLimit, "rate-limit", 100, "API requests per second per principal (bursts of twice as many); 0 for no limit")
	fl.StringVar(&cfg.ExternalURL, "external-url", "", "the API's URL as clients reach it (https://host:port); operation URLs point there (default: the listen address)")
	fl.BoolVar(&cfg.ObserveOnly, "observe-only", false, "run every group's automatic failover policy as events only (\"would fail over now\"), never acting")
}

// etcdFlags are the etcd client options, named as etcdctl names them.
type etcdFlags struct {
	endpoints, cacert, cert, key, user, prefix string
}

func (e *etcdFlags) bind(fl *pflag.FlagSet) {
	fl.StringVar(&e.endpoints, "etcd-endpoints", "", "keep Fog's state in etcd at these comma-separated URLs (https://host:2379,...) instead of the data directory's store file")
	fl.StringVar(&e.cacert, "etcd-cacert", "", "CA bundle that verifies the etcd servers' certificates")
	fl.StringVar(&e.cert, "etcd-cert", "", "client certificate for etcd (with --etcd-key)")
	fl.StringVar(&e.key, "etcd-key", "", "client key for etcd")
	fl.StringVar(&e.user, "etcd-user", "", "etcd user, as user:password (the password may also come from FOG_ETCD_PASSWORD)")
	fl.StringVar(&e.prefix, "etcd-prefix", "/fog/", "key prefix, so several deployments can share one etcd")
}

// config returns the store configuration, nil without --etcd-endpoints.
func (e *etcdFlags) config() (*store.EtcdConfig, error) {
	if e.endpoints == "" {
		for flag, v := range map[string]string{"--etcd-cacert": e.cacert, "--etcd-cert": e.cert, "--etcd-key": e.key, "--etcd-user": e.user} {
			if v != "" {
				return nil, usageErr(flag, "is only meaningful with --etcd-endpoints")
			}
		}
		return nil, nil
	}
	cfg := &store.EtcdConfig{Prefix: e.prefix}
	for _, ep := range strings.Split(e.endpoints, ",") {
		ep = strings.TrimSpace(ep)
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, usageErr("--etcd-endpoints", "%q is not an etcd URL such as https://10.0.0.5:2379", ep)
		}
		cfg.Endpoints = append(cfg.Endpoints, ep)
	}
	if (e.cert == "") != (e.key == "") {
		return nil, usageErr("--etcd-cert", "--etcd-cert and --etcd-key go together")
	}
	if e.cacert != "" || e.cert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if e.cacert != "" {
			pem, err := os.ReadFile(e.cacert)
			if err != nil {
				return nil, usageErr("--etcd-cacert", "%v", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, usageErr("--etcd-cacert", "%s holds no PEM certificate", e.cacert)
			}
		}
		if e.cert != "" {
			pair, err := tls.LoadX509KeyPair(e.cert, e.key)
			if err != nil {
				return nil, usageErr("--etcd-cert", "%v", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		cfg.TLS = tc
	}
	if e.user != "" {
		name, pw, ok := strings.Cut(e.user, ":")
		if !ok {
			pw = os.Getenv("FOG_ETCD_PASSWORD")
		}
		if name == "" || pw == "" {
			return nil, usageErr("--etcd-user", "give user:password, or the user with FOG_ETCD_PASSWORD set")
		}
		cfg.Username, cfg.Password = name, pw
	}
	return cfg, nil
}

// newGuardCommand is the process an agent starts to fence its primaries if the agent dies
// (package guard); it is not meant to be run by hand.
func newGuardCommand(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use: "guard", Short: "Fence this machine's primaries when their agent stops renewing its lease (started by the agent)",
		Args: cobra.NoArgs, Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(g.io.Err, nil)).With("component", "guard")
			return guard.Run(cmd.Context(), file, log)
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "the guard file the agent writes")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}
