package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/store"
)

// Issuer signs server certificates and the instances' replication client certificates.
type Issuer interface {
	Issue(dnsNames []string, ips []net.IP) (certPEM, keyPEM []byte, err error)
	IssueReplication(uid string) (certPEM, keyPEM []byte, err error)
}

// Agent reconciles one region. Each instance has its own worker, so a long seed of one
// instance never delays a promotion of another.
type Agent struct {
	cfg    Config
	st     store.Store
	runner *postgres.Runner
	// isolationWarned: instances whose own OS user could not be made (warned once each).
	isolationWarned sync.Map
	ca              Issuer
	log             *slog.Logger

	mu      sync.Mutex
	workers map[string]*worker
	// specs is the desired state last read, by uid, for the lease keeper's fences.
	specByUID map[string]instance.Spec
	// locks serialise, per instance, a start or promotion with a fence, so that a fence never
	// looks between the lease gate and the postmaster's pid file.
	locks map[string]*sync.Mutex

	keeper *lease.Keeper

	probeMu sync.Mutex
	probes  map[string]lease.Probe

	// az is the region's repository in Azure Blob Storage (nil: a directory).
	az *azureRepos

	// bk runs the region's backups, one at a time; rs its restores.
	bk *backupRunner
	rs *restoreRunner
	// served are the pgBackRest TLS servers of the region's group primaries.
	served *backupServers

	// published is closed once the agent record (its address and port ranges) is in the
	// store: from then on the control plane can place instances in the region.
	published chan struct{}
}

// Published is closed once the agent has published its record, so that the control plane
// can place instances in its region.
func (a *Agent) Published() <-chan struct{} { return a.published }

// New returns an agent.
func New(cfg Config, st store.Store, runner *postgres.Runner, ca Issuer, log *slog.Logger) (*Agent, error) {
	if cfg.Resync == 0 {
		cfg.Resync = DefaultResync
	}
	if cfg.Observe == 0 {
		cfg.Observe = DefaultObserve
	}
	if err := cfg.Backup.validate(cfg.Dir, cfg.Region); err != nil {
		return nil, err
	}
	if cfg.Backup.RestoreDir == "" {
		cfg.Backup.RestoreDir = filepath.Join(filepath.Dir(cfg.Dir), "restores", cfg.Region)
	}
	a := &Agent{cfg: cfg, st: st, runner: runner, ca: ca, log: log.With("region", cfg.Region), workers: map[string]*worker{}, published: make(chan struct{}),
		specByUID: map[string]instance.Spec{}, locks: map[string]*sync.Mutex{}, bk: newBackupRunner(), rs: newRestoreRunner(), served: newBackupServers()}
	if cfg.Backup.RepoType == RepoAzure {
		a.az = newAzureRepos(&a.cfg.Backup.Azure, cfg.Region)
	}
	guardFile := ""
	if len(cfg.GuardCommand) > 0 {
		guardFile = cfg.GuardFile
		if guardFile == "" {
			guardFile = filepath.Join(filepath.Dir(cfg.Dir), cfg.Region+".guard.json")
		}
	}
	k, err := lease.NewKeeper(lease.KeeperConfig{Region: cfg.Region, Timing: cfg.Lease, GuardFile: guardFile, GuardCommand: cfg.GuardCommand},
		st, a.leaseDemands, a.fenceNow, a.log.With("component", "lease"))
	if err != nil {
		return nil, err
	}
	a.keeper = k
	return a, nil
}

// Keeper is the agent's lease keeper.
func (a *Agent) Keeper() *lease.Keeper { return a.keeper }

// leaseDemands reads the region's desired state for the lease keeper: the primaries the
// store names in their current epoch, and the demoted primaries to stop at once.
func (a *Agent) leaseDemands(ctx context.Context) (lease.Demands, error) {
	kvs, err := a.st.List(ctx, instance.SpecPrefix(a.cfg.Region))
	if err != nil {
		return lease.Demands{}, err
	}
	var d lease.Demands
	specs := map[string]instance.Spec{}
	for _, kv := range kvs {
		var s instance.Spec
		if err := json.Unmarshal(kv.Value, &s); err != nil {
			return d, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		specs[s.UID] = s
		dataDir, server := a.server(s).Guarded()
		c := lease.Claim{UID: s.UID, Epoch: s.Epoch, Key: kv.Key, Rev: kv.Rev, DataDir: dataDir, Server: server}
		switch {
		case s.Deleted || s.Epoch == 0:
		case s.Role == instance.RolePrimary && !s.Paused:
			d.Claims = append(d.Claims, c)
		case s.Paused && s.StopImmediately:
			d.Fence = append(d.Fence, c)
		}
	}
	a.mu.Lock()
	a.specByUID = specs
	a.mu.Unlock()
	a.probeMu.Lock()
	if len(a.probes) > 0 {
		d.Probes = maps.Clone(a.probes)
	}
	a.probeMu.Unlock()
	return d, nil
}

// probe looks, once a second, at the primary of every standby of the region (a connection
// and an SSLRequest to its replication endpoint), apart from reconciling, which may be busy
// for long: the results go out with every lease renewal, as fresh as the lease itself. It
// is one of the observers the automatic failover policy needs to agree.
func (a *Agent) probe(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		a.mu.Lock()
		var standbys []instance.Spec
		for _, s := range a.specByUID {
			if s.Role == instance.RoleStandby && s.Upstream != nil && !s.Deleted && !s.Paused {
				standbys = append(standbys, s)
			}
		}
		a.mu.Unlock()
		results := make([]error, len(standbys))
		var wg sync.WaitGroup
		for i, s := range standbys {
			wg.Go(func() {
				results[i] = pgtypes.Probe(ctx, net.JoinHostPort(s.Upstream.Host, strconv.Itoa(s.Upstream.Port)), time.Second)
			})
		}
		wg.Wait()
		a.probeMu.Lock()
		next := map[string]lease.Probe{}
		for i, s := range standbys {
			p := lease.Probe{Reachable: results[i] == nil}
			if !p.Reachable {
				p.Failures = a.probes[s.UID].Failures + 1
			}
			next[s.UID] = p
		}
		a.probes = next
		a.probeMu.Unlock()
	}
}

// fenceNow stops an instance at once (immediate shutdown); nil when it is not running.
func (a *Agent) fenceNow(ctx context.Context, uid string) error {
	a.mu.Lock()
	s, ok := a.specByUID[uid]
	a.mu.Unlock()
	if !ok {
		return fmt.Errorf("instance %s is not in this region's desired state", uid)
	}
	c := a.server(s)
	if _, running := c.PID(); !running {
		return nil
	}
	l := a.instLock(uid)
	l.Lock()
	defer l.Unlock()
	a.log.Warn("fencing instance: immediate shutdown", "instance", s.Name, "epoch", s.Epoch)
	return c.StopNow(ctx, true)
}

func (a *Agent) instLock(uid string) *sync.Mutex {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.locks[uid]
	if !ok {
		l = &sync.Mutex{}
		a.locks[uid] = l
	}
	return l
}

// Run reconciles until ctx ends, then (with StopOnExit) stops every instance cleanly.
func (a *Agent) Run(ctx context.Context) error {
	if len(a.cfg.GuardCommand) == 0 {
		a.log.Warn("no guard process: if this agent dies, its primaries stay writable until it returns")
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var lwg sync.WaitGroup
	defer lwg.Wait()
	lwg.Go(func() { _ = a.keeper.Run(wctx) })
	lwg.Go(func() { a.probe(wctx) })
	lwg.Go(func() { a.bk.run(wctx) })
	lwg.Go(func() { a.runRestores(wctx) })
	defer a.served.stopAll()
	if a.cfg.Backup.Off {
		a.log.Warn("backups are off", "reason", a.cfg.Backup.OffReason)
	}
	if err := a.publish(ctx); err != nil {
		return err
	}
	if ctx.Err() == nil {
		close(a.published)
	}
	specs := a.st.Watch(wctx, instance.SpecPrefix(a.cfg.Region))
	cmds := a.st.Watch(wctx, instance.CommandPrefix(a.cfg.Region))
	// A partner's role or streaming state changing elsewhere (a standby of ours started
	// streaming there, say) is looked at at once, not at the next observation.
	peers := a.st.Watch(wctx, "observed/")
	peerSeen := map[string]string{}
	tick := time.NewTicker(a.cfg.Resync)
	defer tick.Stop()
	var wg sync.WaitGroup
	only, wake := "", true
	for {
		if wake {
			a.dispatch(ctx, &wg, only)
		}
		only, wake = "", true
		select {
		case <-ctx.Done():
			wg.Wait()
			if a.cfg.StopOnExit {
				a.stopAll()
				a.keeper.Disarm()
			}
			return nil
		case ev := <-specs:
			only = strings.TrimPrefix(ev.Key, instance.SpecPrefix(a.cfg.Region))
		case ev := <-cmds:
			// Only a new command wakes its instance's worker: the worker marking commands
			// done, or the controller removing them, must not set off a full reconcile
			// just when the controller moves on to its next step.
			if ev.Key == "" {
				continue // the watch was set up again: look at everything
			}
			var cmd instance.Command
			// A restore under way writes its progress into its command.
			if _, err := store.Get(ctx, a.st, ev.Key, &cmd); err != nil || cmd.Done || a.rs.has(cmd.ID) {
				wake = false
				continue
			}
			only = cmd.InstanceUID
		case ev := <-peers:
			wake = false
			if uid := a.peerChanged(ctx, ev.Key, peerSeen); uid != "" {
				only, wake = uid, true
			}
		case <-tick.C:
		}
	}
}

// peerChanged returns the local instance whose failover-group partner's observed state under
// key changed in what matters to the link (phase, role, whether it streams), or "".
func (a *Agent) peerChanged(ctx context.Context, key string, seen map[string]string) string {
	rest, ok := strings.CutPrefix(key, "observed/")
	region, uid, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || region == a.cfg.Region {
		return ""
	}
	var st instance.Status
	if _, err := store.Get(ctx, a.st, key, &st); err != nil {
		return ""
	}
	sum := st.Phase + "/" + st.Role
	if st.Replication != nil {
		sum += "/" + st.Replication.ReceiverStatus
	}
	if st.Backup != nil && st.Backup.Served != nil {
		sum += "/serves backups" // the standby's backup may go ahead
	}
	if seen[uid] == sum {
		return ""
	}
	seen[uid] = sum
	for _, s := range a.specs(ctx) {
		if s.Peer != nil && s.Peer.UID == uid {
			return s.UID
		}
	}
	return ""
}

// publish writes the agent record, retrying while the store does not answer.
func (a *Agent) publish(ctx context.Context) error {
	rec := a.cfg.Record
	rec.Region, rec.Started = a.cfg.Region, time.Now().UTC()
	for {
		err := store.Put(ctx, a.st, instance.AgentKey(a.cfg.Region), rec)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, store.ErrForbidden) {
			return fmt.Errorf("publish the agent record: %w", err)
		}
		a.log.Warn("cannot publish the agent record yet; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// dispatch starts a worker for every instance that lacks one and wakes every worker, or only
// the worker of instance only when it is set.
func (a *Agent) dispatch(ctx context.Context, wg *sync.WaitGroup, only string) {
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
		} else if only != "" && uid != only {
			continue
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

// kickWorker asks instance uid's worker, if it has one, for a pass.
func (a *Agent) kickWorker(uid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if w, ok := a.workers[uid]; ok {
		select {
		case w.kick <- struct{}{}:
		default:
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

// runnerFor is the runner of instance uid: its own OS user when fog is root. If that user
// cannot be made, the instance runs as the shared user, and the agent says so.
func (a *Agent) runnerFor(uid string) *postgres.Runner {
	r, err := a.runner.ForInstance(uid)
	if err != nil {
		if _, warned := a.isolationWarned.LoadOrStore(uid, true); !warned {
			a.log.Warn("the instance runs as the shared PostgreSQL user, not an OS user of its own", "instance", uid, "user", a.runner.Username, "err", err)
		}
		return a.runner
	}
	return r
}

func (a *Agent) cluster(s instance.Spec) *postgres.Cluster {
	return &postgres.Cluster{
		Dir:       filepath.Join(a.cfg.Dir, s.UID),
		SocketDir: postgres.SocketDirFor(s.UID),
		Host:      s.Host, Port: s.Port, R: a.runnerFor(s.UID),
	}
}

func (a *Agent) stopAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, s := range a.specs(ctx) {
		c := a.server(s)
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
			st.Heartbeat, st.LeaseIncarnation = time.Now().UTC(), a.keeper.Incarnation()
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
