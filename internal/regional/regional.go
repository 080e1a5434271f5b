// Package regional runs what lives on a region's machines: the agent that reconciles the
// region's PostgreSQL instances and the gateway that serves the region's listeners. `fog
// agent` runs it against the server's agent endpoint (RunRemote: join or saved credentials,
// the agent certificate kept renewed, metrics); `fog up` runs one per region in its own
// process (Run), against the same store scoped the same way.
package regional

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/fogdb/fog/internal/agent"
	"github.com/fogdb/fog/internal/gateway"
	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/store"
)

// Issuer signs server certificates for instances and listeners.
type Issuer interface {
	agent.Issuer
	gateway.Issuer
}

// Config configures a region's agent and gateway.
type Config struct {
	Agent agent.Config
	// Gateway configures the region's listeners; Run sets the store prefixes it watches.
	Gateway gateway.Config
	// Ready, when set, is called once the agent and gateway run and the agent's record is
	// published (the control plane can place instances in the region).
	Ready func()
	// Metrics, when set, gets the region's collector (listeners' connections, lease age).
	Metrics prometheus.Registerer
	// LibDir is where the fog_guard library is built (default: lib beside Agent.Dir).
	LibDir string
}

// ReadCluster waits for the control plane's settings (the server writes them at start).
func ReadCluster(ctx context.Context, st store.Store, log *slog.Logger) (instance.ClusterConfig, error) {
	var cc instance.ClusterConfig
	for {
		_, err := store.Get(ctx, st, instance.ClusterKey, &cc)
		if err == nil {
			return cc, nil
		}
		if errors.Is(err, store.ErrForbidden) {
			return cc, err
		}
		log.Warn("waiting for the control plane's settings", "err", err)
		select {
		case <-ctx.Done():
			return cc, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// Run runs the region's agent and gateway over st (scoped to the region) until ctx ends.
func Run(ctx context.Context, cfg Config, st store.Store, runner *postgres.Runner, ca Issuer, log *slog.Logger) error {
	region := cfg.Agent.Region
	cc, err := ReadCluster(ctx, st, log)
	if err != nil {
		return fmt.Errorf("read the control plane's settings: %w", err)
	}
	ac := cfg.Agent
	if ac.Lease.TTL == 0 {
		ac.Lease.TTL = cc.LeaseTTL
	}
	if runner.Isolates() {
		log.Info("each instance's PostgreSQL runs as an OS user of its own (fogpg-...), which cannot read Fog's store, CA key, client config or another instance's files")
	} else {
		log.Warn("fog is not root, so every instance's PostgreSQL runs as fog's own user " + runner.Username + ": SQL cannot reach files or programs (admins are not superusers and fog_guard holds), but the OS does not separate instances from each other or from Fog's files; run fog as root for an OS user per instance")
	}
	if ac.GuardLibrary == "" {
		// The library instance admins are kept from the host by; built once per version.
		lib, err := postgres.BuildGuard(ctx, runner.Bin, cmp.Or(cfg.LibDir, filepath.Join(filepath.Dir(ac.Dir), "lib")))
		if err != nil {
			log.Warn("instance admins get no CREATEROLE: without the fog_guard library PostgreSQL 15 would let CREATEROLE grant pg_execute_server_program", "err", err)
		} else if err := runner.EnsureTraversable(filepath.Dir(lib)); err != nil {
			return err
		}
		ac.GuardLibrary = lib
	}
	a, err := agent.New(ac, st, runner, ca, log.With("component", "agent"))
	if err != nil {
		return err
	}
	// The gateway reads the groups and what the agents observe, and judges leases on its own
	// clock; it does not ask the controller.
	obs := lease.NewObserver(cmp.Or(ac.Lease.TTL, lease.DefaultTTL), nil)
	gc := cfg.Gateway
	gc.WatchPrefixes = []string{group.Prefix, "observed/", "desired/", lease.Prefix}
	gw := gateway.New(gc, st, func(ctx context.Context) ([]gateway.Listener, error) {
		routes, err := group.Routes(ctx, st, obs, cc.DNSSuffix, region)
		if err != nil {
			return nil, err
		}
		out := make([]gateway.Listener, 0, len(routes))
		for _, r := range routes {
			out = append(out, gateway.Listener{Addr: r.Addr, Names: r.Names, Route: gateway.Route{Target: r.Target, Hold: r.Hold, Refuse: r.Refuse, Fallback: r.Fallback}})
		}
		return out, nil
	}, ca, log.With("component", "gateway", "region", region))
	if cfg.Metrics != nil {
		col := &collector{gw: gw, keeper: a.Keeper()}
		reg := prometheus.WrapRegistererWith(prometheus.Labels{"region": region}, cfg.Metrics)
		if err := reg.Register(col); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
		defer reg.Unregister(col)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.Run(gctx) })
	g.Go(func() error { return gw.Run(gctx) })
	if cfg.Ready != nil {
		// Ready once the region can take instances: the agent's record, with its address
		// ranges, is in the store.
		g.Go(func() error {
			select {
			case <-a.Published():
				cfg.Ready()
			case <-gctx.Done():
			}
			return nil
		})
	}
	return g.Wait()
}
