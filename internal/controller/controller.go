package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fogdb/fog/internal/activity"
	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/autofailover"
	"github.com/fogdb/fog/internal/backupsched"
	"github.com/fogdb/fog/internal/engine"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// operationRetention is how long a finished operation's status stays readable.
const operationRetention = 24 * time.Hour

// Controller is the control plane: the API's service, and, while this process leads (Lead),
// the scheduler of the operations it and the other servers' APIs accept. There is one per
// process.
type Controller struct {
	cfg Config
	// access checks the partner side of group operations (nil: all allowed).
	access Access
	st     store.Store
	log    *slog.Logger
	// eng is the engine over the API's store: desired state and group writes made when a
	// request is accepted. Operations are driven by the engine of the leader's store.
	eng *engine.Engine

	createMu sync.Mutex // serialises address allocation and name reservation
	// kick tells the leading term of an operation this process's API accepted, so that it
	// starts at once; a process that does not lead drops it (the leader learns of the
	// operation from the store).
	kick   chan string
	leases *lease.Observer
	// resync is how often the leader lists the operations, looks after groups and runs the
	// automatic policy; backupEvery how often it runs the backup schedule.
	resync, backupEvery time.Duration
}

// New returns a controller; call Run or Lead to drive operations.
func New(cfg Config, st store.Store, log *slog.Logger) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Controller{cfg: cfg, st: st, log: log, kick: make(chan string, 128), leases: lease.NewObserver(cfg.LeaseTTL, nil), resync: time.Second, backupEvery: backupEvery}
	if cfg.BackupTick > 0 {
		c.backupEvery = cfg.BackupTick
	}
	c.eng = c.engine(st)
	return c, nil
}

// engine returns an engine that drives through st.
func (c *Controller) engine(st store.Store) *engine.Engine {
	return engine.New(engine.Config{DNSSuffix: c.cfg.DNSSuffix, OperationTimeout: c.cfg.OperationTimeout}, st, c.leases, c.log)
}

// DNSSuffix is the suffix of instance and listener names.
func (c *Controller) DNSSuffix() string { return c.cfg.DNSSuffix }

// Regions returns the deployment's regions.
func (c *Controller) Regions() []string { return c.cfg.Regions }

// Run drives operations through the controller's own store until ctx ends (a process that
// needs no election: tests).
func (c *Controller) Run(ctx context.Context) error { return c.Lead(ctx, c.st) }

// term is what one leadership of this process holds: the engine over the leader's store and
// what the schedulers remember while it lasts (a new leader starts afresh).
type term struct {
	eng *engine.Engine
	mu  sync.Mutex
	// driving are the operations a runner drives (under mu).
	driving map[string]bool
	// seedSeen is, per group and seed generation, the store revision at which the monitor
	// first saw that seed done (the scheduling goroutine only).
	seedSeen map[string]int64
	// policy is the automatic failover policy, which remembers the outages it sees (the
	// scheduling goroutine only).
	policy *autofailover.Policy
	// backups is the backup schedule, which remembers the failures it sees, backupSeq the
	// last backup of each instance (by UID) noted in the activity log, and backupVerified
	// the last whose verification is in its record (the scheduling goroutine only).
	backups        *backupsched.Scheduler
	backupSeq      map[string]int64
	backupVerified map[string]int64
}

// Lead drives operations through st, the leader's store, whose every write carries the
// leadership's token (package election), so that a deposed leader's runners can no longer
// change anything, until ctx ends and every runner has returned. Operations this process's
// API accepts are started at once (kick); others are learnt of from the store.
func (c *Controller) Lead(ctx context.Context, st store.Store) error {
	t := &term{eng: c.engine(st), driving: map[string]bool{}, seedSeen: map[string]int64{}}
	t.policy = c.autoPolicy(t.eng)
	t.backups, t.backupSeq, t.backupVerified = c.backupSchedule(t.eng), map[string]int64{}, map[string]int64{}
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(c.resync)
	defer tick.Stop()
	// Operations are accepted by any server's API; the leader learns of them from the store.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	accepted := st.Watch(wctx, engine.OpPrefix)
	// Every lease renewal is noted as it happens, so that a lease's expiry counts from the
	// last renewal this controller saw, not from when an operation first asked.
	renewals := st.Watch(wctx, lease.Prefix)
	wg.Go(func() {
		for ev := range renewals {
			if ev.Rev != 0 {
				c.leases.Note(ev.Key, ev.Rev)
			}
		}
	})
	start := func(id string) {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.driving[id] {
			return
		}
		t.driving[id] = true
		wg.Go(func() {
			c.drive(ctx, t.eng, id)
			t.mu.Lock()
			delete(t.driving, id)
			t.mu.Unlock()
		})
	}
	var lastPrune time.Time
	// The first backup run waits a full period: a new leader has nothing urgent to ask that
	// the last one did not, and a controller started for a moment (tests, a restart) asks
	// nothing at once.
	lastBackups := time.Now()
	for {
		ops, err := store.List[Operation](ctx, st, engine.OpPrefix)
		if err != nil && ctx.Err() == nil {
			c.log.Error("list operations", "err", err)
		}
		var prune []store.Op
		for _, op := range ops {
			if !op.Terminal() {
				start(op.ID)
			} else if op.EndTime != nil && time.Since(*op.EndTime) > operationRetention {
				prune = append(prune, store.Op{Key: opKey(op.ID), Delete: true})
			}
		}
		if len(prune) > 0 {
			_ = st.Txn(ctx, nil, prune)
		}
		select {
		case <-ctx.Done():
			return nil
		case id := <-c.kick:
			start(id)
		case <-accepted:
		case <-tick.C:
			c.monitor(ctx, t)
			t.policy.Tick(ctx)
			if time.Since(lastBackups) >= c.backupEvery {
				lastBackups = time.Now()
				c.noteBackups(ctx, t)
				c.ltrTick(ctx, t.eng)
				t.backups.Tick(ctx)
			}
			if time.Since(lastPrune) > 10*time.Minute {
				lastPrune = time.Now()
				if err := activity.Prune(ctx, st, c.cfg.activityRetention()); err != nil {
					c.log.Warn("prune the activity log", "err", err)
				}
			}
		}
	}
}

// autoPolicy returns the automatic failover policy of a leadership whose engine is e: it
// reads through e, starts its forced failovers there (and at once, as the API's are), and
// probes primaries for no longer than the configured probe timeout.
func (c *Controller) autoPolicy(e *engine.Engine) *autofailover.Policy {
	return autofailover.New(autofailover.Deps{
		Engine: e,
		StartForced: func(ctx context.Context, g *FailoverGroup, rev int64, target int, initiator string) (string, error) {
			op, err := c.startFailover(ctx, e, g, rev, target, true, initiator)
			if err != nil {
				return "", err
			}
			return op.ID, nil
		},
		Probe: func(ctx context.Context, addr string) error {
			return pgtypes.Probe(ctx, addr, c.cfg.ProbeTimeout)
		},
		ObserveOnly: c.cfg.ObserveOnly,
		Log:         c.log,
	})
}

func miKey(sub, rg, name string) string { return group.InstanceKey(sub, rg, name) }
func nameKey(name string) string        { return engine.NameKey(name) }

type nameRecord struct {
	ID string `json:"id"`
}

// StoreUnavailable is the answer to a request the store could not serve in time.
func StoreUnavailable() error { return engine.StoreUnavailable() }

// StoreError is the error a client is told for a store failure.
func StoreError(err error) error { return engine.Internal(err) }

func internalError(err error) error { return engine.Internal(err) }

func (c *Controller) getInstance(ctx context.Context, sub, rg, name string) (*resource.ManagedInstance, int64, error) {
	var m resource.ManagedInstance
	rev, err := store.Get(ctx, c.st, miKey(sub, rg, name), &m)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, resource.NotFound(resource.TypeManagedInstance, name)
	}
	if err != nil {
		return nil, 0, internalError(err)
	}
	return &m, rev, nil
}

// lookupByID finds the instance another one names (its dnsZonePartner): nil when there is
// none the caller may read.
func (c *Controller) lookupByID(ctx context.Context, id string) (*resource.ManagedInstance, error) {
	p, err := arm.ParseInstanceID(id)
	if err != nil {
		return nil, nil
	}
	m, _, aerr := c.readableInstance(ctx, p.Subscription, p.ResourceGroup, p.Name)
	if aerr != nil && errors.Is(aerr, fault.ErrNotFound) {
		return nil, nil
	}
	return m, aerr
}

func (c *Controller) observed(ctx context.Context, m *resource.ManagedInstance) (instance.Status, bool) {
	var st instance.Status
	_, err := store.Get(ctx, c.st, instance.StatusKey(m.Location, m.UID), &st)
	return st, err == nil
}

// View renders an instance with its observed state.
func (c *Controller) view(ctx context.Context, m *resource.ManagedInstance) resource.InstanceJSON {
	state := "Creating"
	st, ok := c.observed(ctx, m)
	if ok {
		switch st.Phase {
		case instance.PhaseReady, instance.PhaseDrained:
			state = "Ready"
		case instance.PhaseFailed:
			state = "Failed"
		case instance.PhaseDeleted:
			state = "Deleted"
		case instance.PhaseStopped:
			state = "Stopped"
		}
	}
	if m.ProvisioningState == resource.ProvisioningDeleting {
		state = "Deleting"
	}
	// Observed state is news from the agent; without its lease it says nothing about now,
	// nor does what it published before its lease lapsed (it has fenced its primaries since).
	if rec, live := c.regionLease(ctx, m.Location); state == "Ready" && (!live || !lease.Current(rec, st.LeaseIncarnation)) {
		state = "Unknown"
	}
	return m.View(c.cfg.DNSSuffix, state)
}

// GetInstance returns one instance.
func (c *Controller) GetInstance(ctx context.Context, sub, rg, name string) (resource.InstanceJSON, error) {
	m, _, err := c.getInstance(ctx, sub, rg, name)
	if err != nil {
		return resource.InstanceJSON{}, err
	}
	return c.view(ctx, m), nil
}

// ListInstances lists the instances of a resource group, or of the subscription if rg is "".
func (c *Controller) ListInstances(ctx context.Context, sub, rg string) ([]resource.InstanceJSON, error) {
	prefix := "mi/" + strings.ToLower(sub) + "/"
	if rg != "" {
		prefix += strings.ToLower(rg) + "/"
	}
	ms, err := store.List[resource.ManagedInstance](ctx, c.st, prefix)
	if err != nil {
		return nil, internalError(err)
	}
	out := make([]resource.InstanceJSON, 0, len(ms))
	for i := range ms {
		out = append(out, c.view(ctx, &ms[i]))
	}
	return out, nil
}

// running returns the operation id if it exists and has not ended.
func (c *Controller) running(ctx context.Context, id string) (*Operation, bool) {
	if id == "" {
		return nil, false
	}
	var op Operation
	if _, err := store.Get(ctx, c.st, opKey(id), &op); err != nil || op.Terminal() {
		return nil, false
	}
	return &op, true
}

func (c *Controller) busy(ctx context.Context, m *resource.ManagedInstance) error {
	op, ok := c.running(ctx, m.ActiveOperation)
	if !ok {
		return nil
	}
	return fault.New(fault.Conflict, "ConflictingServerOperation",
		"An operation (%s) is in progress on managed instance '%s'. Retry when it has finished.", op.Name, m.Name)
}

func (c *Controller) newOp(ctx context.Context, kind, name, sub string, m *resource.ManagedInstance, resourceID string) *Operation {
	return &Operation{
		ID: resource.NewUID(), Name: name, Kind: kind, Subscription: sub, Location: m.Location,
		ResourceID: resourceID, InstanceKey: miKey(m.Subscription, m.ResourceGroup, m.Name), Initiator: callerOf(ctx),
		InstanceUID: m.UID, Region: m.Location, Status: arm.StatusInProgress, StartTime: time.Now().UTC(),
	}
}

// PutInstance creates or updates an instance and returns the operation that completes it.
func (c *Controller) PutInstance(ctx context.Context, sub, rg, name string, body resource.InstanceJSON) (*Operation, error) {
	if err := resource.ValidateResourceGroupName(rg); err != nil {
		return nil, err
	}
	if err := resource.ValidateInstanceName(name); err != nil {
		return nil, err
	}
	c.createMu.Lock()
	defer c.createMu.Unlock()

	cur, rev, aerr := c.getInstance(ctx, sub, rg, name)
	if aerr != nil && !errors.Is(aerr, fault.ErrNotFound) {
		return nil, aerr
	}
	create := cur == nil
	if !create {
		if err := c.busy(ctx, cur); err != nil {
			return nil, err
		}
		if cur.ProvisioningState == resource.ProvisioningDeleting {
			return nil, fault.New(fault.Conflict, "ConflictingServerOperation", "Managed instance '%s' is being deleted.", name)
		}
	}
	env := resource.Env{Regions: c.cfg.Regions, LocaleOK: c.cfg.LocaleOK,
		Lookup: func(id string) (*resource.ManagedInstance, error) { return c.lookupByID(ctx, id) }}
	m, password, verr := resource.ApplyInstance(env, cur, sub, rg, name, body)
	if verr != nil {
		return nil, verr
	}
	conds := []store.Cond{{Key: miKey(sub, rg, name), Rev: rev}}
	var ops []store.Op
	if create {
		if aerr := c.nameTaken(ctx, name); aerr != nil {
			return nil, aerr
		}
		conds = append(conds, store.Cond{Key: nameKey(name), Rev: 0})
		m.UID = resource.NewUID()
		m.CreatedAt = time.Now().UTC()
		stanza, err := resource.NewStanza(m.UID, 0)
		if err != nil {
			return nil, internalError(err)
		}
		m.BackupStanza = stanza
		host, port, err := c.allocateAddress(ctx, m.Location)
		if err != nil {
			return nil, fault.New(fault.Unavailable, "NoAddressAvailable", "No address is available for a new instance: %v.", err)
		}
		m.Host, m.Port = host, port
		m.ProvisioningState = resource.ProvisioningCreating
		ops = append(ops, store.PutOp(nameKey(name), nameRecord{ID: m.ID()}))
	} else {
		m.ProvisioningState = resource.ProvisioningUpdating
	}
	if password != "" {
		m.PasswordVerifier = pgtypes.SCRAMVerifier(password)
	}
	m.Generation++
	opName := "UpsertManagedServer"
	op := c.newOp(ctx, KindPutInstance, opName, sub, m, m.ID())
	op.Create = create
	m.ActiveOperation = op.ID
	spec, err := c.specFor(ctx, m)
	if err != nil {
		return nil, internalError(err)
	}
	sconds, sops, gens, err := c.specWrites(ctx, spec)
	if err != nil {
		return nil, internalError(err)
	}
	op.Generation = gens[0]
	conds = append(conds, sconds...)
	ops = append(append(ops, sops...),
		store.PutOp(miKey(sub, rg, name), m),
		store.PutOp(opKey(op.ID), op))
	if err := c.st.Txn(ctx, conds, ops); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, fault.New(fault.Conflict, "ConflictingServerOperation", "Managed instance '%s' changed while this request ran; retry.", name)
		}
		return nil, internalError(err)
	}
	c.log.Info("accepted", "operation", opName, "id", op.ID, "instance", m.ID(), "create", create)
	c.kickOp(op.ID)
	return op, nil
}

// nameTaken returns NameAlreadyExists when another instance has name: instance names are
// unique in the deployment, not per resource group, because they become DNS names. The other
// instance is named only when the caller may read it; otherwise the answer is Azure's for a
// name taken anywhere ("The name '...' already exists"), which says nothing of where.
func (c *Controller) nameTaken(ctx context.Context, name string) error {
	var owner nameRecord
	_, err := store.Get(ctx, c.st, nameKey(name), &owner)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return internalError(fmt.Errorf("read the owner of name %s: %w", name, err))
	}
	if p, perr := arm.ParseInstanceID(owner.ID); perr == nil {
		if m, _, aerr := c.readableInstance(ctx, p.Subscription, p.ResourceGroup, p.Name); aerr == nil {
			return fault.New(fault.Conflict, "NameAlreadyExists",
				"The managed instance name '%s' is already in use by %s. Instance names are unique in the deployment because they become DNS names; choose another.", name, m.ID())
		} else if !errors.Is(aerr, fault.ErrNotFound) {
			return aerr
		}
	}
	return fault.New(fault.Conflict, "NameAlreadyExists",
		"The name '%s' already exists. Managed instance names are unique in the deployment because they become DNS names; choose a different name.", name)
}

// kickOp tells the leading term, if this process leads, to start operation id now. It never
// blocks: a kick that finds the queue full is dropped, and the operation is started from the
// store (its watch, or the next resync) all the same.
func (c *Controller) kickOp(id string) {
	select {
	case c.kick <- id:
	default:
	}
}

// allocateAddress hands out the next address of region's range that no instance or
// listener uses. The range and the port are what the region's agent was configured with
// (--address-range, --pg-port) and published in its agent record; nothing is probed here,
// since the server is not on the region's machines.
func (c *Controller) allocateAddress(ctx context.Context, region string, extraUsed ...string) (string, int, error) {
	var rec instance.AgentRecord
	if _, err := store.Get(ctx, c.st, instance.AgentKey(region), &rec); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", 0, fmt.Errorf("no agent of region %s has started yet, so no address range is known there; start `fog agent --region %s` on the region's machine", region, region)
		}
		return "", 0, err
	}
	first, err1 := netip.ParseAddr(rec.AddressFirst)
	last, err2 := netip.ParseAddr(rec.AddressLast)
	if err1 != nil || err2 != nil || rec.Port == 0 {
		return "", 0, fmt.Errorf("the agent record of region %s has no valid address range", region)
	}
	all, err := store.List[resource.ManagedInstance](ctx, c.st, "mi/")
	if err != nil {
		return "", 0, err
	}
	// Addresses in use, as host:port; a listener of a group made before ports were ranged
	// counts with its own port.
	used := map[string]bool{}
	for _, m := range all {
		used[net.JoinHostPort(m.Host, strconv.Itoa(m.Port))] = true
	}
	groups, err := store.List[FailoverGroup](ctx, c.st, "fog/")
	if err != nil {
		return "", 0, err
	}
	for _, g := range groups {
		for _, a := range g.ListenerAddrs() {
			used[net.JoinHostPort(a.Host, strconv.Itoa(a.Port))] = true
		}
	}
	for _, h := range extraUsed {
		used[h] = true
	}
	lastPort := max(rec.PortLast, rec.Port)
	// Every address on the first port before any address on the next: with one address per
	// instance, every instance listens on PostgreSQL's usual port.
	for port := rec.Port; port <= lastPort; port++ {
		for a := first; a.IsValid() && a.Compare(last) <= 0; a = a.Next() {
			if !used[net.JoinHostPort(a.String(), strconv.Itoa(port))] {
				return a.String(), port, nil
			}
		}
	}
	return "", 0, fmt.Errorf("every address and port of region %s (%s-%s, ports %d-%d) is in use; give its agent a larger --address-range or --port-range",
		region, rec.AddressFirst, rec.AddressLast, rec.Port, lastPort)
}

// DeleteInstance starts deleting an instance; a nil operation means there was nothing to delete.
func (c *Controller) DeleteInstance(ctx context.Context, sub, rg, name string) (*Operation, error) {
	m, rev, aerr := c.getInstance(ctx, sub, rg, name)
	if aerr != nil {
		if errors.Is(aerr, fault.ErrNotFound) {
			return nil, nil
		}
		return nil, aerr
	}
	if m.ProvisioningState == resource.ProvisioningDeleting && m.ActiveOperation != "" {
		var op Operation
		if _, err := store.Get(ctx, c.st, opKey(m.ActiveOperation), &op); err == nil {
			return &op, nil
		}
	}
	if err := c.busy(ctx, m); err != nil {
		return nil, err
	}
	if m.FailoverGroup != "" {
		return nil, fault.New(fault.Conflict, "ManagedInstanceInFailoverGroup",
			"Managed instance '%s' is in failover group '%s'. Delete the failover group first.", name, m.FailoverGroup)
	}
	op := c.newOp(ctx, KindDeleteInstance, "DropManagedServer", sub, m, m.ID())
	m.ProvisioningState = resource.ProvisioningDeleting
	m.ActiveOperation = op.ID
	spec := c.baseSpec(m)
	spec.Deleted = true
	sconds, sops, _, err := c.specWrites(ctx, spec)
	if err != nil {
		return nil, internalError(err)
	}
	err = c.st.Txn(ctx, append(sconds, store.Cond{Key: miKey(sub, rg, name), Rev: rev}), append(sops,
		store.PutOp(miKey(sub, rg, name), m),
		store.PutOp(opKey(op.ID), op)))
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, fault.New(fault.Conflict, "ConflictingServerOperation", "Managed instance '%s' changed while this request ran; retry.", name)
		}
		return nil, internalError(err)
	}
	c.log.Info("accepted", "operation", op.Name, "id", op.ID, "instance", m.ID())
	c.kickOp(op.ID)
	return op, nil
}

// GetOperation returns an operation by id, as addressed by subscription and location.
func (c *Controller) GetOperation(ctx context.Context, sub, location, id string) (*Operation, error) {
	var op Operation
	_, err := store.Get(ctx, c.st, opKey(id), &op)
	if err != nil || !strings.EqualFold(op.Subscription, sub) ||
		resource.NormalizeRegion([]string{op.Location}, location) == "" {
		return nil, fault.New(fault.NotFound, "OperationIdNotFound", "The operation '%s' was not found.", id)
	}
	return &op, nil
}
