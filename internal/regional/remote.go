package regional

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/fogdb/fog/internal/agentapi"
)

// RemoteConfig configures a region's machines run against the servers (`fog agent`): the
// region's Config, plus how the agent reaches the servers.
type RemoteConfig struct {
	Config
	// Servers are the servers' HTTPS URLs.
	Servers []string
	// DataDir keeps the agent's credentials, and its instances under instances/.
	DataDir string
	// JoinToken is the one-time join token given, "" when none (agentapi.ConnectConfig).
	JoinToken string
	// MetricsListener, when set, serves the region's metrics and the process's at /metrics
	// (plain HTTP, as Prometheus scrapes by default; it shows no secrets). RunRemote closes
	// it.
	MetricsListener net.Listener
}

// RunRemote runs the region over the servers' agent endpoint until ctx ends: it loads the
// agent's credentials from DataDir, or joins with JoinToken (agentapi.Connect), keeps the
// agent certificate renewed, serves the metrics and runs the agent and gateway (Run). Every
// goroutine it starts has ended when it returns.
func RunRemote(ctx context.Context, cfg RemoteConfig, log *slog.Logger) error {
	if cfg.MetricsListener != nil {
		defer cfg.MetricsListener.Close()
	}
	region := cfg.Agent.Region
	client, err := agentapi.Connect(ctx, agentapi.ConnectConfig{Servers: cfg.Servers, Region: region, Dir: cfg.DataDir, JoinToken: cfg.JoinToken, Log: log})
	if err != nil {
		return err
	}
	defer client.Close()
	cert := client.Certificate()
	log.Info("agent certificate", "serial", agentapi.SerialHex(cert.SerialNumber), "expires", cert.NotAfter, "renews", agentapi.RenewAt(cert))
	if err := cfg.Agent.Validate(); err != nil {
		return err
	}
	if err := cfg.Gateway.Validate(); err != nil {
		return err
	}
	runner, err := cfg.Agent.Runner(ctx, log)
	if err != nil {
		return err
	}
	cfg.Agent.Dir, cfg.Agent.StopOnExit, cfg.Agent.CACertPEM = filepath.Join(cfg.DataDir, "instances"), true, client.CACertPEM()
	var metrics *http.Server
	if cfg.MetricsListener != nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		cfg.Metrics = reg
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		log.Info("metrics", "url", "http://"+cfg.MetricsListener.Addr().String()+"/metrics")
	}
	return runLinked(ctx, client, metrics, cfg.MetricsListener, log, func(ctx context.Context) error {
		return Run(ctx, cfg.Config, client, runner, client, log.With("region", region))
	})
}

// renewer keeps a client certificate renewed until ctx ends (agentapi.Client.KeepRenewed).
type renewer interface{ KeepRenewed(ctx context.Context) }

// runLinked runs the region (run) beside the certificate's renewal and, when metrics is set,
// its server on ln, and returns once all of them have ended: when ctx ends, or as soon as run
// returns, which ends the others. A metrics server that fails is logged; the region goes on.
func runLinked(ctx context.Context, certs renewer, metrics *http.Server, ln net.Listener, log *slog.Logger, run func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		certs.KeepRenewed(gctx)
		return nil
	})
	if metrics != nil {
		g.Go(func() error {
			if err := metrics.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server stopped", "err", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			_ = metrics.Close()
			return nil
		})
	}
	g.Go(func() error {
		defer cancel()
		return run(gctx)
	})
	return g.Wait()
}
