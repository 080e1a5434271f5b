package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fogdb/fog/internal/guard"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/standalone"
)

func newUpCommand(g *globals) *cobra.Command {
	var cfg standalone.Config
	var regions, logLevel string
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
				fmt.Fprintf(g.io.Out, "Use the CLI in another terminal: FOG_CONFIG=%s fog sql mi list\n", info.ClientFile)
			})
		},
	}
	fl := up.Flags()
	fl.StringVar(&cfg.DataDir, "data-dir", ".fog", "where Fog keeps its store, CA, client config and PostgreSQL data")
	fl.StringVar(&regions, "regions", "eastus,westus", "comma-separated regions to run an agent for")
	fl.StringVar(&cfg.Listen, "listen", "127.0.0.1:7443", "address of the HTTPS API")
	fl.StringVar(&cfg.PGBin, "pg-bin", "", "directory of the PostgreSQL server binaries (default: $PG_BIN, pg_config, /usr/lib/postgresql/*/bin)")
	fl.StringVar(&cfg.PGUser, "pg-user", "postgres", "unprivileged OS user that runs PostgreSQL when fog runs as root")
	fl.StringVar(&cfg.DNSSuffix, "dns-suffix", "database.fog.internal", "DNS suffix of instance and listener names")
	fl.StringVar(&cfg.AddressBase, "address-base", "127.0.10.1", "first loopback address handed to instances")
	fl.IntVar(&cfg.Port, "pg-port", 5432, "PostgreSQL port of instances (a free port is used where it is taken)")
	fl.DurationVar(&cfg.LeaseTTL, "lease-ttl", lease.DefaultTTL, "how long a primary stays writable without its agent renewing its lease; a forced failover whose old primary's agent does not answer waits this long")
	fl.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return up
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
