package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fogdb/fog/internal/agent"
	"github.com/fogdb/fog/internal/agentapi"
	"github.com/fogdb/fog/internal/gateway"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/regional"
)

func (d *daemon) agentCommand() *cobra.Command {
	var servers, token, tokenFile, dataDir, addrRange, advertise, portRange, logLevel, metricsListen string
	rc := regional.Config{Agent: agent.Defaults(), Gateway: gateway.Defaults()}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a region's agent and listeners on this machine, managed by fog server",
		Long: `Run the agent of one region: it reconciles the region's PostgreSQL instances and serves the
region's listeners. The first start needs a join token (from 'fog join-token create') in
--join-token-file or $FOG_JOIN_TOKEN; the agent then keeps its client certificate in
--data-dir, talks to the servers over mutual TLS and renews the certificate before it expires.
'fog agent list' and 'fog agent revoke' manage the agents' certificates.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := d.logger(logLevel)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			region := rc.Agent.Region
			srvs := splitList(servers)
			for _, s := range srvs {
				if u, err := url.Parse(s); err != nil || u.Scheme != "https" || u.Host == "" {
					return usageErr("--server", "%q is not a server URL such as https://10.0.0.5:7443", s)
				}
			}
			if len(srvs) == 0 {
				return usageErr("--server", "give the URL of at least one fog server (comma-separated for several)")
			}
			if addrRange == "" {
				if advertise == "" {
					return usageErr("--address-range", "give the addresses of this machine for instances and listeners (or --advertise for one address, with ports from --port-range)")
				}
				addrRange = advertise + "-" + advertise
			}
			if advertise != "" {
				if _, err := netip.ParseAddr(advertise); err != nil {
					return usageErr("--advertise", "%q is not an IP address", advertise)
				}
			}
			first, last, err := parseRange(addrRange)
			if err != nil {
				return usageErr("--address-range", "%v", err)
			}
			port, portLast, err := parsePorts(portRange)
			if err != nil {
				return usageErr("--port-range", "%v", err)
			}
			dataDir, err = filepath.Abs(dataDir)
			if err != nil {
				return err
			}
			if token, err = d.joinToken(token, tokenFile); err != nil {
				return err
			}
			if exe, err := os.Executable(); err == nil {
				rc.Agent.GuardCommand = []string{exe, "guard"}
			}
			host, _ := os.Hostname()
			rc.Agent.Record = instance.AgentRecord{AddressFirst: first.String(), AddressLast: last.String(), Port: port, PortLast: portLast, Advertise: advertise, Hostname: host}
			rc.Ready = func() {
				fmt.Fprintf(d.io.Out, "Fog agent of %s: instances and listeners on %s-%s ports %d-%d, servers %s\n", region, first, last, port, portLast, strings.Join(srvs, ", "))
			}
			cfg := regional.RemoteConfig{Config: rc, Servers: srvs, DataDir: dataDir, JoinToken: token}
			if metricsListen != "" {
				if cfg.MetricsListener, err = net.Listen("tcp", metricsListen); err != nil {
					return usageErr("--metrics-listen", "%v", err)
				}
			}
			return joinErr(regional.RunRemote(ctx, cfg, log), region)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&rc.Agent.Region, "region", "", "the region this machine serves")
	fl.StringVar(&servers, "server", "", "comma-separated URLs of the fog servers (https://host:7443,...)")
	fl.StringVar(&token, "join-token", "", "one-time `TOKEN` from 'fog join-token create' (first start only; every local user sees it in ps: prefer --join-token-file or $FOG_JOIN_TOKEN)")
	fl.StringVar(&tokenFile, "join-token-file", "", "`FILE` holding the one-time token from 'fog join-token create' (first start only)")
	fl.StringVar(&dataDir, "data-dir", ".fog-agent", "where the agent keeps its certificate and its instances' data")
	fl.StringVar(&addrRange, "address-range", "", "addresses of this machine for instances and listeners: FIRST-LAST or a prefix (default: the --advertise address)")
	fl.StringVar(&advertise, "advertise", "", "the address at which other machines reach this one")
	fl.StringVar(&portRange, "port-range", "5432-5531", "ports of instances and listeners, FIRST-LAST (at most 1000; an instance's backup server takes its port + 1000); every address takes the first port before any takes the next")
	rc.Agent.RegisterFlags(fl)
	fl.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	rc.Gateway.RegisterFlags(fl)
	fl.StringVar(&metricsListen, "metrics-listen", "", "serve Prometheus metrics at http://ADDR/metrics (such as 127.0.0.1:9464)")
	_ = cmd.MarkFlagRequired("region")
	_ = cmd.MarkFlagRequired("server")
	return cmd
}

// joinTokenEnv is the environment variable `fog agent` reads a join token from.
const joinTokenEnv = "FOG_JOIN_TOKEN"

// joinToken returns the join token `fog agent` was given: --join-token-file, else
// --join-token, else $FOG_JOIN_TOKEN; "" when none. A token on the command line is in every
// local user's `ps` until the agent exits, so that form gets a warning; a token file others
// can read gets one too. The variable is removed from the environment once read, so that
// nothing the agent starts (the guard, PostgreSQL) inherits the secret.
func (d *daemon) joinToken(flagToken, file string) (string, error) {
	env := os.Getenv(joinTokenEnv)
	_ = os.Unsetenv(joinTokenEnv)
	switch {
	case file != "" && flagToken != "":
		return "", usageErr("--join-token-file", "give the join token once: --join-token-file or --join-token, not both")
	case file != "":
		fi, err := os.Stat(file)
		if err != nil {
			return "", usageErr("--join-token-file", "%v", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			d.warn("the join token file %s can be read by other users (mode %04o): create it with umask 077 or chmod 600 it", file, fi.Mode().Perm())
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", usageErr("--join-token-file", "%v", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", usageErr("--join-token-file", "%s is empty: write the token `fog join-token create` prints into it", file)
		}
		return tok, nil
	case flagToken != "":
		d.warn("--join-token shows the token to every user of this machine (ps); prefer --join-token-file FILE or $%s", joinTokenEnv)
		return flagToken, nil
	}
	return strings.TrimSpace(env), nil
}

// joinErr says what to do when the agent cannot reach the servers without a join token, or
// its data directory is another region's, in the flags' words; other errors are as they are.
func joinErr(err error, region string) error {
	var needToken *agentapi.TokenNeededError
	var wrongRegion *agentapi.WrongRegionError
	switch {
	case errors.As(err, &needToken) && needToken.Revoked != nil:
		return fmt.Errorf("this agent's certificate was revoked: start it with a new token from `fog join-token create --region %s` in --join-token-file or $%s to join again (%w)",
			needToken.Region, joinTokenEnv, needToken.Revoked)
	case errors.As(err, &needToken):
		return usageErr("--join-token", "this agent has not joined yet: create a token with `fog join-token create --region %s` and pass it in --join-token-file or $%s", region, joinTokenEnv)
	case errors.As(err, &wrongRegion):
		return usageErr("--region", "this data directory belongs to an agent of region %s", wrongRegion.Region)
	}
	return err
}

// parseRange reads an address range: FIRST-LAST, or a CIDR prefix (its host addresses).
func parseRange(s string) (netip.Addr, netip.Addr, error) {
	if first, last, ok := strings.Cut(s, "-"); ok {
		a, err1 := netip.ParseAddr(strings.TrimSpace(first))
		b, err2 := netip.ParseAddr(strings.TrimSpace(last))
		if err1 != nil || err2 != nil || a.BitLen() != b.BitLen() || b.Less(a) {
			return a, b, errors.New("give FIRST-LAST with FIRST not above LAST, such as 10.0.1.10-10.0.1.50")
		}
		return a, b, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Addr{}, netip.Addr{}, errors.New("give FIRST-LAST (10.0.1.10-10.0.1.50) or a prefix (10.0.1.0/26)")
	}
	p = p.Masked()
	first, last := p.Addr(), p.Addr()
	for n := last.Next(); n.IsValid() && p.Contains(n); n = n.Next() {
		last = n
	}
	if p.Addr().Is4() && p.Bits() < 31 {
		first, last = first.Next(), last.Prev() // neither the network nor the broadcast address
	}
	return first, last, nil
}

// parsePorts reads PORT or FIRST-LAST.
func parsePorts(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		b = a
	}
	first, err1 := strconv.Atoi(strings.TrimSpace(a))
	last, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || first < 1 || last > 65535 || last < first {
		return 0, 0, errors.New("give PORT or FIRST-LAST between 1 and 65535, such as 5432-5531")
	}
	// An instance's pgBackRest server (backups of its group's standby) listens 1000 ports
	// above it, which must be no instance's or listener's.
	if last-first >= 1000 || last+1000 > 65535 {
		return 0, 0, fmt.Errorf("%d-%d: at most 1000 ports, ending at most at 64535 (each instance's backup server takes its port + 1000)", first, last)
	}
	return first, last, nil
}
