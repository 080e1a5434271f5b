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

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fogdb/fog/internal/guard"
	"github.com/fogdb/fog/internal/server"
	"github.com/fogdb/fog/internal/store"
)

func newUpCommand(g *globals) *cobra.Command {
	cfg := server.Defaults()
	cfg.DNS.Listen = "127.0.0.1:8053" // fog up answers for its names; fog server only when asked
	var logLevel string
	var etcd etcdFlags
	up := &cobra.Command{
		Use:   "up",
		Short: "Run Fog on this machine: API, controller and one agent per region, with real PostgreSQL",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Log, err = logger(g, logLevel); err != nil {
				return err
			}
			if cfg.Etcd, err = etcd.config(); err != nil {
				return err
			}
			if exe, err := os.Executable(); err == nil {
				cfg.Agent.GuardCommand = []string{exe, "guard"}
			}
			return server.Run(cmd.Context(), cfg, func(info server.Info) {
				fmt.Fprintf(g.io.Out, "Fog API: %s (regions: %s)\n", info.APIURL, strings.Join(cfg.Regions, ", "))
				banner(g.io.Out, info.APIURL, info.ClientFile)
				if info.DNSAddr != "" {
					fmt.Fprintf(g.io.Out, "DNS for *.%s on %s (UDP and TCP; listener names in %s mode)\n", cfg.DNSSuffix, info.DNSAddr, info.DNSMode)
				}
			})
		},
	}
	fl := up.Flags()
	fl.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "where Fog keeps its store, CA, client config and PostgreSQL data")
	fl.Var(listFlag{&cfg.Regions}, "regions", "comma-separated regions to run an agent for")
	fl.StringVar(&cfg.API.Listen, "listen", cfg.API.Listen, "address of the HTTPS API")
	fl.StringVar(&cfg.AddressBase, "address-base", cfg.AddressBase, "first loopback address handed to instances")
	fl.IntVar(&cfg.Port, "pg-port", cfg.Port, "port of the instances and listeners (each has a loopback address of its own)")
	fl.DurationVar(&cfg.LeaseTTL, "lease-ttl", cfg.LeaseTTL, "how long a primary stays writable without its agent renewing its lease; a forced failover whose old primary's agent does not answer waits this long")
	fl.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cfg.RegisterFlags(fl)
	cfg.Agent.RegisterFlags(fl)
	cfg.Gateway.RegisterFlags(fl)
	etcd.bind(fl)
	return up
}

// listFlag is a comma-separated list flag, bound to a []string; in help it reads as a
// string flag with its default quoted.
type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l listFlag) Set(s string) error {
	*l.v = splitList(s)
	return nil
}

func (listFlag) Type() string { return "string" }

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
