// Package agent is the regional agent: it reconciles the PostgreSQL instances of one region to
// the desired state in the store, carries out commands (create or drop a database), and
// publishes each instance's observed state.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"reflect"
	"slices"
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
	// Resync is how often every instance is checked even without a change.
	Resync time.Duration
	// StopOnExit stops every instance when Run returns (fog up's Ctrl-C).
	StopOnExit bool
}

// Agent reconciles one region.
type Agent struct {
	cfg    Config
	st     store.Store
	runner *postgres.Runner
	ca     Issuer
	log    *slog.Logger

	// last is the status last written per instance, to skip writes that change nothing.
	last map[string]instance.Status
}

// New returns an agent.
func New(cfg Config, st store.Store, runner *postgres.Runner, ca Issuer, log *slog.Logger) *Agent {
	if cfg.Resync == 0 {
		cfg.Resync = 2 * time.Second
	}
	return &Agent{cfg: cfg, st: st, runner: runner, ca: ca, log: log.With("region", cfg.Region), last: map[string]instance.Status{}}
}

// Run reconciles until ctx ends, then (with StopOnExit) stops every instance cleanly.
func (a *Agent) Run(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	specs := a.st.Watch(wctx, instance.SpecPrefix(a.cfg.Region))
	cmds := a.st.Watch(wctx, instance.CommandPrefix(a.cfg.Region))
	tick := time.NewTicker(a.cfg.Resync)
	defer tick.Stop()
	for {
		a.reconcileAll(ctx)
		a.runCommands(ctx)
		select {
		case <-ctx.Done():
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

func (a *Agent) cluster(s instance.Spec) *postgres.Cluster {
	return &postgres.Cluster{
		Dir:       filepath.Join(a.cfg.Dir, s.UID),
		SocketDir: postgres.SocketDirFor(s.UID),
		Host:      s.Host, Port: s.Port, R: a.runner,
	}
}

func (a *Agent) specs(ctx context.Context) []instance.Spec {
	specs, err := store.List[instance.Spec](ctx, a.st, instance.SpecPrefix(a.cfg.Region))
	if err != nil {
		a.log.Error("list desired instances", "err", err)
	}
	return specs
}

func (a *Agent) reconcileAll(ctx context.Context) {
	for _, s := range a.specs(ctx) {
		if ctx.Err() != nil {
			return
		}
		st := a.reconcile(ctx, s)
		a.publish(ctx, st)
	}
}

func (a *Agent) status(ctx context.Context, uid string) (instance.Status, bool) {
	var st instance.Status
	if _, err := store.Get(ctx, a.st, instance.StatusKey(a.cfg.Region, uid), &st); err != nil {
		return st, false
	}
	return st, true
}

// reconcile brings one instance to its spec and returns what it observed.
func (a *Agent) reconcile(ctx context.Context, s instance.Spec) instance.Status {
	c := a.cluster(s)
	prev, _ := a.status(ctx, s.UID)
	st := instance.Status{UID: s.UID, ObservedGeneration: prev.ObservedGeneration, Phase: prev.Phase, Databases: prev.Databases, ServerVersion: prev.ServerVersion}

	if s.Deleted {
		if prev.Phase == instance.PhaseDeleted {
			return prev
		}
		if err := c.Stop(ctx, "fast"); err != nil {
			a.log.Warn("fast stop before delete failed; stopping immediately", "instance", s.Name, "err", err)
			_ = c.Stop(ctx, "immediate")
		}
		if err := c.Remove(); err != nil {
			st.Error = fmt.Sprintf("remove data: %v", err)
			return st
		}
		a.log.Info("instance deleted", "instance", s.Name)
		st.Phase, st.Databases, st.ObservedGeneration = instance.PhaseDeleted, nil, s.Generation
		return st
	}
	// A failed generation is not retried: the control plane decides (a failed create is
	// deleted; a new PUT bumps the generation).
	if prev.Phase == instance.PhaseFailed && prev.ObservedGeneration == s.Generation {
		return prev
	}
	applied := prev.ObservedGeneration == s.Generation && prev.Phase != instance.PhaseFailed
	fail := func(err error) instance.Status {
		a.log.Error("reconcile failed", "instance", s.Name, "err", err)
		st.Error, st.ObservedGeneration = err.Error(), s.Generation
		if applied {
			// The instance ran with this spec before: a crash or a start failure is retried
			// on every resync, not given up on.
			st.Phase = instance.PhaseStopped
			return st
		}
		st.Phase = instance.PhaseFailed
		if prev.ObservedGeneration == 0 {
			// A create that failed leaves nothing behind.
			_ = c.Stop(ctx, "immediate")
			_ = c.Remove()
		}
		return st
	}

	changed := prev.ObservedGeneration != s.Generation || prev.Phase != instance.PhaseReady
	if !c.Initialized() {
		st.Phase = instance.PhaseCreating
		a.publish(ctx, st)
		a.log.Info("initialising instance", "instance", s.Name, "addr", net.JoinHostPort(s.Host, fmt.Sprint(s.Port)))
		if err := c.Init(ctx, s.Locale); err != nil {
			return fail(err)
		}
		changed = true
	}
	if _, running := c.PID(); !running || changed {
		if err := a.configure(c, s); err != nil {
			return fail(err)
		}
	}
	if _, running := c.PID(); running {
		if changed {
			if err := c.Reload(ctx); err != nil {
				return fail(err)
			}
		}
	} else {
		if prev.Phase == instance.PhaseReady {
			a.log.Warn("instance was not running; starting it", "instance", s.Name)
			st.Phase = instance.PhaseStopped
			a.publish(ctx, st)
		}
		if err := c.Start(ctx); err != nil {
			return fail(err)
		}
	}
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		return fail(fmt.Errorf("connect: %w", err))
	}
	defer conn.Close(context.Background())
	if changed {
		if err := postgres.EnsureAdmin(ctx, conn, s.AdminLogin, s.AdminVerifier); err != nil {
			return fail(err)
		}
		st.ServerVersion, _ = postgres.ServerVersion(ctx, conn)
	}
	dbs, err := postgres.ListDatabases(ctx, conn)
	if err != nil {
		return fail(err)
	}
	st.Databases = toDBs(dbs)
	st.Phase, st.Error, st.ObservedGeneration = instance.PhaseReady, "", s.Generation
	return st
}

func toDBs(dbs []postgres.Database) []instance.DB {
	out := make([]instance.DB, 0, len(dbs))
	for _, d := range dbs {
		out = append(out, instance.DB{Name: d.Name, Collation: d.Collation, Created: d.Created.UTC()})
	}
	return out
}

func (a *Agent) configure(c *postgres.Cluster, s instance.Spec) error {
	var ips []net.IP
	if ip := net.ParseIP(s.Host); ip != nil {
		ips = append(ips, ip)
	}
	crt, key, err := a.ca.Issue(append([]string{s.Name}, s.DNSNames...), ips)
	if err != nil {
		return err
	}
	return c.WriteConfig(postgres.Config{Name: s.Name, Timezone: s.Timezone, CertPEM: crt, KeyPEM: key, FogUser: a.cfg.FogUser})
}

// publish writes st if it differs from what was last written, or to refresh the heartbeat.
func (a *Agent) publish(ctx context.Context, st instance.Status) {
	prev, ok := a.last[st.UID]
	st.Heartbeat = prev.Heartbeat
	if ok && reflect.DeepEqual(prev, st) && time.Since(prev.Heartbeat) < 10*time.Second {
		return
	}
	st.Heartbeat = time.Now().UTC()
	if err := store.Put(ctx, a.st, instance.StatusKey(a.cfg.Region, st.UID), st); err != nil {
		if !errors.Is(err, context.Canceled) {
			a.log.Error("publish status", "uid", st.UID, "err", err)
		}
		return
	}
	a.last[st.UID] = st
}

func (a *Agent) runCommands(ctx context.Context) {
	cmds, err := store.List[instance.Command](ctx, a.st, instance.CommandPrefix(a.cfg.Region))
	if err != nil {
		a.log.Error("list commands", "err", err)
		return
	}
	var specs []instance.Spec
	for _, cmd := range cmds {
		if cmd.Done {
			continue
		}
		if specs == nil {
			specs = a.specs(ctx)
		}
		i := slices.IndexFunc(specs, func(s instance.Spec) bool { return s.UID == cmd.InstanceUID })
		if i < 0 || specs[i].Deleted {
			cmd.Error = "the instance does not exist"
		} else if err := a.execute(ctx, specs[i], cmd); err != nil {
			cmd.Error = err.Error()
		}
		cmd.Done = true
		if err := store.Put(ctx, a.st, instance.CommandKey(a.cfg.Region, cmd.ID), cmd); err != nil {
			a.log.Error("complete command", "id", cmd.ID, "err", err)
		}
	}
}

func (a *Agent) execute(ctx context.Context, s instance.Spec, cmd instance.Command) error {
	c := a.cluster(s)
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		return fmt.Errorf("instance %s is not accepting connections: %w", s.Name, err)
	}
	defer conn.Close(context.Background())
	switch cmd.Kind {
	case instance.CmdCreateDatabase:
		err = postgres.CreateDatabase(ctx, conn, cmd.Database, cmd.Owner)
	case instance.CmdDropDatabase:
		err = postgres.DropDatabase(ctx, conn, cmd.Database)
	case instance.CmdRefresh:
	default:
		err = fmt.Errorf("unknown command %q", cmd.Kind)
	}
	if err != nil {
		return err
	}
	dbs, lerr := postgres.ListDatabases(ctx, conn)
	if lerr != nil {
		return lerr
	}
	prev, _ := a.status(ctx, s.UID)
	prev.Databases = toDBs(dbs)
	a.publish(ctx, prev)
	return nil
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
		if err := c.Stop(ctx, "fast"); err != nil {
			a.log.Error("stop instance", "instance", s.Name, "err", err)
			continue
		}
		if st, ok := a.status(ctx, s.UID); ok && st.Phase == instance.PhaseReady {
			st.Phase = instance.PhaseStopped
			a.publish(ctx, st)
		}
	}
}
