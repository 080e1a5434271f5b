package daemon

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fogdb/fog/internal/server"
)

func (d *daemon) upCommand() *cobra.Command {
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
			if cfg.Log, err = d.logger(logLevel); err != nil {
				return err
			}
			if cfg.Etcd, err = etcd.config(); err != nil {
				return err
			}
			if exe, err := os.Executable(); err == nil {
				cfg.Agent.GuardCommand = []string{exe, "guard"}
			}
			return server.Run(cmd.Context(), cfg, func(info server.Info) {
				fmt.Fprintf(d.io.Out, "Fog API: %s (regions: %s)\n", info.APIURL, strings.Join(cfg.Regions, ", "))
				banner(d.io.Out, info.APIURL, info.ClientFile)
				if info.DNSAddr != "" {
					fmt.Fprintf(d.io.Out, "DNS for *.%s on %s (UDP and TCP; listener names in %s mode)\n", cfg.DNSSuffix, info.DNSAddr, info.DNSMode)
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

func (d *daemon) serverCommand() *cobra.Command {
	cfg := server.Defaults()
	cfg.ServerOnly = true
	var logLevel string
	var etcd etcdFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run Fog's API and controller; the regions' agents run elsewhere (fog agent)",
		Long: `Run the API and the controller. With --etcd-endpoints, several servers share one etcd:
all of them serve the API, one is elected leader and drives operations, and another takes
over when it dies. Agents join with a token from 'fog join-token create'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Log, err = d.logger(logLevel); err != nil {
				return err
			}
			if cfg.Etcd, err = etcd.config(); err != nil {
				return err
			}
			return server.Run(cmd.Context(), cfg, func(info server.Info) {
				fmt.Fprintf(d.io.Out, "Fog API: %s (regions: %s)\n", info.APIURL, strings.Join(cfg.Regions, ", "))
				banner(d.io.Out, info.APIURL, info.ClientFile)
				fmt.Fprintf(d.io.Out, "  fog join-token create --region %s   # admits an agent of that region\n", cfg.Regions[0])
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "where this server keeps its store (without etcd), a copy of the CA and the client config")
	fl.Var(listFlag{&cfg.Regions}, "regions", "comma-separated regions of the deployment")
	fl.StringVar(&cfg.API.Listen, "listen", cfg.API.Listen, "address of the HTTPS API (agents connect here too)")
	fl.Var(listFlag{&cfg.API.Names}, "advertise", "comma-separated host names or addresses at which agents and clients reach this server; its certificate names them")
	fl.DurationVar(&cfg.LeaseTTL, "lease-ttl", cfg.LeaseTTL, "how long a primary stays writable without its agent renewing its lease")
	fl.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cfg.RegisterFlags(fl)
	etcd.bind(fl)
	return cmd
}
