// Package agent is the regional agent: it reconciles the PostgreSQL instances of one region to
// the desired state in the store, carries out commands (create or drop a database), and
// publishes each instance's observed state.
package agent

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/store"
)

// Issuer signs server certificates.
type Issuer interface {
	Issue(dnsNames []string, ips []net.IP) (certPEM, keyPEM []byte, err error)
}

// Config configures one agent.
type Config struct {
	Region string
	// Dir holds the region's instances, one directory each.
	Dir string
	// FogUser is the OS user this process runs as; it may connect as the system role.
	FogUser string
	// CACertPEM is the CA that standbys verify their primary's certificate with.
	CACertPEM []byte
	// Resync is how often every instance is checked even without a change.
	Resync time.Duration
	// StopOnExit stops every instance when Run returns (fog up's Ctrl-C).
	StopOnExit bool
	// MaxSlotWALKeepSize overrides PostgreSQL's bound on WAL kept for a slot.
	MaxSlotWALKeepSize string
}

// Agent reconciles one region. Each instance has its own worker, so a long seed of one
// instance never delays a promotion of another.
type Agent struct {
	cfg    Config
	st     store.Store
	runner *postgres.Runner
	ca     Issuer
	log    *slog.Logger

	mu      sync.Mutex
	workers map[string]*worker
}

// New returns an agent.
func New(cfg Config, st store.Store, runner *postgres.Runner, ca Issuer, log *slog.Logger) *Agent {
	if cfg.Resync == 0 {
		cfg.Resync = 2 * time.Second
	}
	return &Agent{cfg: cfg, st: st, runner: runner, ca: ca, log: log.With("region", cfg.Region), workers: map[string]*worker{}}
}

// Run reconciles until ctx ends, then (with StopOnExit) stops every instance cleanly.
func (a *Agent) Run(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	specs := a.st.Watch(wctx, instance.SpecPrefix(a.cfg.Region))
	cmds := a.st.Watch(wctx, instance.CommandPrefix(a.cfg.Region))
	tick := time.NewTicker(a.cfg.Resync)
	defer tick.Stop()
	var wg sync.WaitGroup
	for {
		a.dispatch(ctx, &wg)
		select {
		case <-ctx.Done():
			wg.Wait()
			if a.cfg.StopOnExit {
				a.stopAll()
			}
			return nil
		case <-specs:
		case <-cmds:
		case <-tick.C:
		}
	}
}

// dispatch starts a worker for every instance that lacks one and wakes every worker.
func (a *Agent) dispatch(ctx context.Context, wg *sync.WaitGroup) {
	uids := map[string]bool{}
	for _, s := range a.specs(ctx) {
		uids[s.UID] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for uid := range uids {
		w, ok := a.workers[uid]
		if !ok {
			w = &worker{a: a, uid: uid, kick: make(chan struct{}, 1), log: a.log.With("uid", uid)}
			a.workers[uid] = w
			wg.Go(func() { w.run(ctx) })
		}
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	for uid, w := range a.workers {
		if !uids[uid] {
			close(w.kick)
			delete(a.workers, uid)
		}
	}
}

func (a *Agent) specs(ctx context.Context) []instance.Spec {
	specs, err := store.List[instance.Spec](ctx, a.st, instance.SpecPrefix(a.cfg.Region))
	if err != nil && ctx.Err() == nil {
		a.log.Error("list desired instances", "err", err)
	}
	return specs
}

func (a *Agent) cluster(s instance.Spec) *postgres.Cluster {
	return &postgres.Cluster{
		Dir:       filepath.Join(a.cfg.Dir, s.UID),
		SocketDir: postgres.SocketDirFor(s.UID),
		Host:      s.Host, Port: s.Port, R: a.runner,
	}
}

func (a *Agent) stopAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, s := range a.specs(ctx) {
		c := a.cluster(s)
		if _, ok := c.PID(); !ok {
			continue
		}
		a.log.Info("stopping instance", "instance", s.Name)
		if err := c.StopNow(ctx, false); err != nil {
			a.log.Error("stop instance", "instance", s.Name, "err", err)
			continue
		}
		var st instance.Status
		if _, err := store.Get(ctx, a.st, instance.StatusKey(a.cfg.Region, s.UID), &st); err == nil && st.Phase == instance.PhaseReady {
			st.Phase = instance.PhaseStopped
			st.Heartbeat = time.Now().UTC()
			_ = store.Put(ctx, a.st, instance.StatusKey(a.cfg.Region, s.UID), st)
		}
	}
}

func (a *Agent) commandsFor(ctx context.Context, uid string) []instance.Command {
	cmds, err := store.List[instance.Command](ctx, a.st, instance.CommandPrefix(a.cfg.Region))
	if err != nil {
		return nil
	}
	return slices.DeleteFunc(cmds, func(c instance.Command) bool { return c.Done || c.InstanceUID != uid })
}
