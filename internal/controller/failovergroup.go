package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/engine"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

func fogNotFound(name string) error {
	return resource.NotFound(resource.TypeFailoverGroup, name)
}

// group loads a group and the index of the side (sub, rg, location) addresses; a group that
// exists but is not addressed there is not found, as in ARM.
func (c *Controller) group(ctx context.Context, sub, rg, loc, name string) (*FailoverGroup, int64, int, error) {
	var g FailoverGroup
	rev, err := store.Get(ctx, c.st, fogKey(name), &g)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, -1, fogNotFound(name)
	}
	if err != nil {
		return nil, 0, -1, internalError(err)
	}
	i := g.Side(sub, rg, loc)
	if i < 0 {
		return nil, 0, -1, fogNotFound(name)
	}
	return &g, rev, i, nil
}

func (c *Controller) groupBusy(ctx context.Context, g *FailoverGroup) error {
	op, ok := c.running(ctx, g.ActiveOperation)
	if !ok {
		return nil
	}
	return fault.Busy("Instance failover group '%s' is busy with another operation (%s). Retry when it has finished.", g.Name, op.Name)
}

func sideID(s GroupSide) string {
	return arm.InstanceID(s.Subscription, s.ResourceGroup, s.InstanceName)
}

func role(primary bool) string {
	if primary {
		return "Primary"
	}
	return "Secondary"
}

// statuses returns both sides' observed state.
func (c *Controller) statuses(ctx context.Context, g *FailoverGroup) [2]instance.Status {
	return c.eng.Statuses(ctx, g)
}

// replicationState derives the state a GET shows from the group and what the agents see.
func (c *Controller) replicationState(ctx context.Context, g *FailoverGroup, st [2]instance.Status, opRunning bool) string {
	sec := st[g.Secondary()]
	if opRunning {
		switch g.OperationKind {
		case KindFailover, KindForceFailover:
			return resource.StateFailoverInProgress
		case KindCreateGroup:
			if sec.SeedPercent != nil || sec.Role == instance.RoleStandby {
				return resource.StateSeeding
			}
			return resource.StatePending
		}
	}
	secLive := c.agentLive(ctx, g.Sides[g.Secondary()])
	switch {
	case sec.SeedPercent != nil:
		return resource.StateSeeding
	case sec.Role == instance.RoleStandby && sec.Replication != nil && sec.Replication.ReceiverStatus == "streaming" &&
		sec.Phase == instance.PhaseReady && secLive && primarySees(g, st[g.Primary], c.agentLive(ctx, g.Sides[g.Primary])):
		return resource.StateCatchUp
	case secLive && !slotLost(g, st[g.Primary]) && (rejoining(g, sec) || receiving(g, sec)):
		// The link is being made again, not broken: a former primary rewinding to follow
		// the new one after a failover, or a standby of this epoch whose WAL receiver streams
		// before the primary's own view (published on its next look) shows it.
		return resource.StateCatchUp
	}
	// A lost slot (the secondary fell too far behind and is reseeded), or a stopped link: the
	// secondary, its agent or its server is down.
	return resource.StateSuspended
}

// rejoining: the secondary is a former primary told to rewind and follow in this epoch, and
// has not done so yet.
func rejoining(g *FailoverGroup, sec instance.Status) bool {
	m := g.Members[g.Secondary()]
	return m.Role == instance.RoleStandby && m.Rewind && (sec.Epoch < g.Epoch || sec.Rewound == nil || sec.Rewound.Epoch < g.Epoch)
}

// receiving: the secondary, in this epoch, says its WAL receiver streams or catches up.
func receiving(g *FailoverGroup, sec instance.Status) bool {
	return sec.Phase == instance.PhaseReady && sec.Role == instance.RoleStandby && sec.Epoch == g.Epoch && sec.Replication != nil &&
		(sec.Replication.ReceiverStatus == "streaming" || sec.Replication.ReceiverStatus == "catchup")
}

// slotLost: the primary reports the secondary's slot invalidated.
func slotLost(g *FailoverGroup, prim instance.Status) bool {
	if prim.Replication == nil {
		return false
	}
	slot := pgtypes.SlotName(g.Sides[g.Secondary()].InstanceUID)
	for _, s := range prim.Replication.Slots {
		if s.Name == slot && s.WALStatus == "lost" {
			return true
		}
	}
	return false
}

func primarySees(g *FailoverGroup, prim instance.Status, primLive bool) bool {
	return engine.PrimarySees(g, prim, primLive)
}

// view renders group g as side i sees it.
func (c *Controller) groupView(ctx context.Context, g *FailoverGroup, i int) resource.FailoverGroupJSON {
	s := g.Sides[i]
	other := g.Sides[1-i]
	st := c.statuses(ctx, g)
	for i := range st {
		// A status from before its agent's lease lapsed may say a fenced primary streams.
		if !c.eng.Current(ctx, g.Sides[i].Location, st[i]) {
			st[i] = instance.Status{}
		}
	}
	opRunning := c.groupBusy(ctx, g) != nil
	rw := &resource.ReadWriteEndpoint{FailoverPolicy: g.ReadWritePolicy}
	if g.ReadWritePolicy == "Automatic" {
		rw.FailoverWithDataLossGracePeriodMinutes = g.GraceMinutes
		rw.MaxDataLossBytes, rw.MaxDataLossSeconds = g.MaxLossBytes, g.MaxLossSeconds
		if g.ObserveOnly {
			rw.AutomaticFailoverMode = "ObserveOnly"
		}
	}
	partnerLoc := other.Location
	if i == 0 && g.Sides[0].PartnerRegionAsSent != "" {
		partnerLoc = g.Sides[0].PartnerRegionAsSent
	}
	rwName, roName := ListenerNames(g.Name, g.DNSZone, c.cfg.DNSSuffix)
	// The group as seen from side i's region shows the listeners that region serves.
	rwAddr, roAddr := g.Listeners(i)
	p := resource.FailoverGroupProperties{
		SecondaryType:     g.SecondaryType,
		ReadWriteEndpoint: rw,
		ReadOnlyEndpoint:  &resource.ReadOnlyEndpoint{FailoverPolicy: g.ReadOnlyPolicy},
		ReplicationRole:   role(i == g.Primary),
		ReplicationState:  c.replicationState(ctx, g, st, opRunning),
		PartnerRegions:    []resource.PartnerRegion{{Location: partnerLoc, ReplicationRole: role(1-i == g.Primary)}},
		ManagedInstancePairs: []resource.InstancePair{{
			PrimaryManagedInstanceID: sideID(g.Sides[g.Primary]),
			PartnerManagedInstanceID: sideID(g.Sides[g.Secondary()]),
		}},
		Listeners: &resource.Listeners{
			ReadWrite: resource.Listener{FQDN: rwName, Host: rwAddr.Host, Port: rwAddr.Port},
			ReadOnly:  resource.Listener{FQDN: roName, Host: roAddr.Host, Port: roAddr.Port},
		},
		Replication:        g.Replication(st),
		LastForcedFailover: g.LastForced,
		Warnings:           g.Warnings,
		Events:             g.Events,
	}
	return resource.FailoverGroupJSON{
		ID: fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Sql/locations/%s/instanceFailoverGroups/%s",
			s.Subscription, s.ResourceGroup, s.Location, g.Name),
		Name: g.Name, Type: resource.TypeFailoverGroup, Properties: p,
	}
}

// GetFailoverGroup returns a group as the addressed side sees it.
func (c *Controller) GetFailoverGroup(ctx context.Context, sub, rg, loc, name string) (resource.FailoverGroupJSON, error) {
	g, _, i, aerr := c.group(ctx, sub, rg, loc, name)
	if aerr != nil {
		return resource.FailoverGroupJSON{}, aerr
	}
	return c.groupView(ctx, g, i), nil
}

// ListFailoverGroups lists the groups with a side in (sub, rg, location).
func (c *Controller) ListFailoverGroups(ctx context.Context, sub, rg, loc string) ([]resource.FailoverGroupJSON, error) {
	if resource.NormalizeRegion(c.cfg.Regions, loc) == "" {
		return nil, fault.Invalid("LocationNotAvailableForResourceType",
			"The provided location '%s' is not available for resource type '%s'. This deployment has: %s.", loc, resource.TypeFailoverGroup, strings.Join(c.cfg.Regions, ", "))
	}
	gs, err := store.List[FailoverGroup](ctx, c.st, "fog/")
	if err != nil {
		return nil, internalError(err)
	}
	out := []resource.FailoverGroupJSON{}
	for k := range gs {
		if i := gs[k].Side(sub, rg, loc); i >= 0 {
			out = append(out, c.groupView(ctx, &gs[k], i))
		}
	}
	return out, nil
}

// PutFailoverGroup creates a group, after every prerequisite check, or updates its policies.
func (c *Controller) PutFailoverGroup(ctx context.Context, sub, rg, loc, name string, body resource.FailoverGroupJSON) (*Operation, error) {
	if err := resource.ValidateFailoverGroupName(name); err != nil {
		return nil, err
	}
	region := resource.NormalizeRegion(c.cfg.Regions, loc)
	if region == "" {
		return nil, fault.Invalid("LocationNotAvailableForResourceType",
			"The provided location '%s' is not available for resource type '%s'. This deployment has: %s.", loc, resource.TypeFailoverGroup, strings.Join(c.cfg.Regions, ", "))
	}
	spec, aerr := resource.ValidateFailoverGroupBody(body, c.cfg.minGraceMinutes())
	if aerr != nil {
		return nil, aerr
	}
	c.createMu.Lock()
	defer c.createMu.Unlock()
	var existing FailoverGroup
	rev, err := store.Get(ctx, c.st, fogKey(name), &existing)
	switch {
	case err == nil:
		return c.updateGroup(ctx, &existing, rev, sub, rg, region, spec)
	case !errors.Is(err, store.ErrNotFound):
		return nil, internalError(err)
	}
	return c.createGroup(ctx, sub, rg, region, name, spec)
}

func (c *Controller) updateGroup(ctx context.Context, g *FailoverGroup, rev int64, sub, rg, region string, spec *resource.FailoverGroupSpec) (*Operation, error) {
	i := g.Side(sub, rg, region)
	if i < 0 {
		return nil, fault.New(fault.Conflict, "InstanceFailoverGroupDnsRecordInUse",
			"The failover group name '%s' is in use by another group (its listener names must be unique); choose another name.", g.Name)
	}
	if aerr := c.checkSides(ctx, g, actionGroupWrite); aerr != nil {
		return nil, aerr
	}
	if i != g.Primary {
		return nil, fault.Invalid("InstanceFailoverGroupUpdateOrDeleteRequestOnSecondary",
			"Modifications to the instance failover group are not allowed on a secondary server. Execute the request on the primary server (resource group '%s', location '%s').",
			g.Sides[g.Primary].ResourceGroup, g.Sides[g.Primary].Location)
	}
	if err := c.groupBusy(ctx, g); err != nil {
		return nil, err
	}
	sec := g.Sides[g.Secondary()]
	if resource.NormalizeRegion([]string{sec.Location}, spec.PartnerRegion) == "" {
		return nil, fault.Invalid("InstanceFailoverGroupCreateOrUpdateRequestReadOnlyPropertyModified",
			"The create or update instance failover group request body should not modify the read-only property 'partnerRegions' (it is '%s'). To change regions, delete the group and create a new one.", sec.Location)
	}
	if !sameInstance(spec.PrimaryID, g.Sides[g.Primary]) || !sameInstance(spec.PartnerID, sec) {
		return nil, fault.Invalid("InstanceFailoverGroupCreateOrUpdateRequestReadOnlyPropertyModified",
			"The create or update instance failover group request body should not modify the read-only property 'managedInstancePairs' (primary %s, partner %s).", sideID(g.Sides[g.Primary]), sideID(sec))
	}
	op := &Operation{ID: resource.NewUID(), Name: "UpdateManagedFailoverGroup", Kind: KindUpdateGroup, Subscription: sub, ResourceGroup: rg,
		Location: region, ResourceID: g.Name, Status: arm.StatusInProgress, StartTime: time.Now().UTC(), Initiator: callerOf(ctx)}
	g.ReadWritePolicy, g.GraceMinutes, g.ReadOnlyPolicy, g.SecondaryType = spec.ReadWritePolicy, spec.GraceMinutes, spec.ReadOnlyPolicy, spec.SecondaryType
	g.MaxLossBytes, g.MaxLossSeconds, g.ObserveOnly = spec.MaxLossBytes, spec.MaxLossSeconds, spec.ObserveOnly
	g.ActiveOperation, g.OperationKind = op.ID, op.Kind
	g.Event("Update", fmt.Sprintf("policy %s, read-only %s, secondary type %s", g.ReadWritePolicy, g.ReadOnlyPolicy, g.SecondaryType), nil)
	if aerr := c.writeGroup(ctx, g, rev, store.PutOp(opKey(op.ID), op)); aerr != nil {
		return nil, aerr
	}
	c.kickOp(op.ID)
	return op, nil
}

func sameInstance(id resource.ParsedID, s GroupSide) bool {
	return strings.EqualFold(id.Subscription, s.Subscription) && strings.EqualFold(id.ResourceGroup, s.ResourceGroup) && strings.EqualFold(id.Name, s.InstanceName)
}

// createGroup creates a group: it reads what the create is judged on, judges it by Azure's
// prerequisites (package resource holds the rules), then looks at what only the live system
// tells (the partner's databases now, the names in the zone, the network path), allocates the
// listeners' addresses, and writes the group, its operation and both members in one
// transaction.
func (c *Controller) createGroup(ctx context.Context, sub, rg, region, name string, spec *resource.FailoverGroupSpec) (*Operation, error) {
	// A member's record can change between the read and the write for reasons of its own
	// (the backup schedule asks a backup by writing it): the create is judged and written
	// again, a few times, before the client is told to retry.
	for attempt := 1; ; attempt++ {
		op, err := c.createGroupOnce(ctx, sub, rg, region, name, spec)
		if attempt < 3 && errors.Is(err, fault.ErrBusy) && ctx.Err() == nil {
			continue
		}
		return op, err
	}
}

func (c *Controller) createGroupOnce(ctx context.Context, sub, rg, region, name string, spec *resource.FailoverGroupSpec) (*Operation, error) {
	in, aerr := c.readCreateInputs(ctx, sub, rg, region, name, spec)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := resource.CheckGroupPrerequisites(spec, in.prim, in.part); aerr != nil {
		return nil, aerr
	}
	prim, part := in.prim.Instance, in.part.Instance
	if aerr := c.checkCreateLive(ctx, name, prim, part); aerr != nil {
		return nil, aerr
	}
	listeners, aerr := c.allocateListeners(ctx, prim, part)
	if aerr != nil {
		return nil, aerr
	}
	return c.writeCreate(ctx, sub, rg, region, name, spec, in, listeners)
}

// createInputs is what a group create is judged on: both instances, as the caller may see
// them, with whether each one's PostgreSQL runs, and the revisions of their records, which
// the create's transaction is conditioned on.
type createInputs struct {
	prim, part       resource.GroupCandidate
	primRev, partRev int64
}

// readCreateInputs reads the instances a create names. The request must be addressed to the
// primary's resource group before they are read, and the caller allowed to join the two
// (checkCreate) before anything more of them is read or judged.
func (c *Controller) readCreateInputs(ctx context.Context, sub, rg, region, name string, spec *resource.FailoverGroupSpec) (*createInputs, error) {
	if aerr := resource.CheckGroupPrimaryAddressed(spec, sub, rg); aerr != nil {
		return nil, aerr
	}
	// Both instances are looked up as the caller sees them: one it cannot read is missing, in
	// the same words, so that the answer does not tell whether it exists.
	prim, primRev, aerr := c.readableInstance(ctx, spec.PrimaryID.Subscription, spec.PrimaryID.ResourceGroup, spec.PrimaryID.Name)
	if aerr != nil && !errors.Is(aerr, fault.ErrNotFound) {
		return nil, aerr
	}
	var part *resource.ManagedInstance
	var partRev int64
	if prim != nil {
		part, partRev, aerr = c.readableInstance(ctx, spec.PartnerID.Subscription, spec.PartnerID.ResourceGroup, spec.PartnerID.Name)
		if aerr != nil && !errors.Is(aerr, fault.ErrNotFound) {
			return nil, aerr
		}
	}
	if aerr := resource.CheckGroupInstances(spec, region, prim, part); aerr != nil {
		return nil, aerr
	}
	if aerr := c.checkCreate(ctx, name, prim, part); aerr != nil {
		return nil, aerr
	}
	return &createInputs{
		prim: resource.GroupCandidate{Instance: prim, Running: c.pgRunning(ctx, prim)}, primRev: primRev,
		part: resource.GroupCandidate{Instance: part, Running: c.pgRunning(ctx, part)}, partRev: partRev,
	}, nil
}

// pgRunning reports whether m's agent last reported its PostgreSQL running.
func (c *Controller) pgRunning(ctx context.Context, m *resource.ManagedInstance) bool {
	st, ok := c.observed(ctx, m)
	return ok && st.Phase == instance.PhaseReady
}

// checkCreateLive checks the prerequisites only a live look tells, after the others passed:
// the partner has no databases (as its agent lists them now), the group's name is not a name
// in the zone yet, and the partner's agent reaches the primary's replication endpoint.
func (c *Controller) checkCreateLive(ctx context.Context, name string, prim, part *resource.ManagedInstance) error {
	var dbs []string
	for _, d := range c.refresh(ctx, part) {
		dbs = append(dbs, d.Name)
	}
	if aerr := resource.CheckGroupPartnerEmpty(dbs); aerr != nil {
		return aerr
	}
	holder, aerr := c.nameInZone(ctx, name, prim.DNSZone)
	if aerr != nil {
		return aerr
	}
	readable := false
	if holder != nil {
		if readable, aerr = c.canRead(ctx, holder); aerr != nil {
			return aerr
		}
	}
	if aerr := resource.CheckGroupNameFree(name, prim.DNSZone, holder, readable); aerr != nil {
		return aerr
	}
	return c.checkReach(ctx, part, prim)
}

// allocateListeners allocates the group's listeners' addresses: each region's gateway serves
// them on addresses of its own region. listeners[i] is side i's read-write and read-only
// address; side 0 is prim.
func (c *Controller) allocateListeners(ctx context.Context, prim, part *resource.ManagedInstance) ([2][2]Address, error) {
	var listeners [2][2]Address
	var taken []string
	for i, inst := range []*resource.ManagedInstance{prim, part} {
		for j, which := range []string{"read-write", "read-only"} {
			host, port, err := c.allocateAddress(ctx, inst.Location, taken...)
			if err != nil {
				return listeners, fault.New(fault.Unavailable, "NoAddressAvailable", "No address is free for the %s listener in %s: %v.", which, inst.Location, err)
			}
			listeners[i][j] = Address{Host: host, Port: port}
			taken = append(taken, net.JoinHostPort(host, strconv.Itoa(port)))
		}
	}
	return listeners, nil
}

// writeCreate writes the new group, its operation and both members' records and desired
// state in one transaction, and starts the operation.
func (c *Controller) writeCreate(ctx context.Context, sub, rg, region, name string, spec *resource.FailoverGroupSpec, in *createInputs, listeners [2][2]Address) (*Operation, error) {
	prim, part := in.prim.Instance, in.part.Instance
	g := &FailoverGroup{
		Name: name, ID: resource.NewUID(), Primary: 0,
		Sides: [2]GroupSide{
			{Subscription: prim.Subscription, ResourceGroup: prim.ResourceGroup, Location: prim.Location, InstanceName: prim.Name, InstanceUID: prim.UID, PartnerRegionAsSent: spec.PartnerRegion},
			{Subscription: part.Subscription, ResourceGroup: part.ResourceGroup, Location: part.Location, InstanceName: part.Name, InstanceUID: part.UID},
		},
		Members:         [2]Member{{Role: instance.RolePrimary}, {}},
		ReadWritePolicy: spec.ReadWritePolicy, GraceMinutes: spec.GraceMinutes, ReadOnlyPolicy: spec.ReadOnlyPolicy, SecondaryType: spec.SecondaryType,
		MaxLossBytes: spec.MaxLossBytes, MaxLossSeconds: spec.MaxLossSeconds, ObserveOnly: spec.ObserveOnly,
		Epoch: 1, SeedGeneration: engine.NewSeedGeneration(0),
		ReadWrite: listeners[0][0], ReadOnly: listeners[0][1], PartnerReadWrite: listeners[1][0], PartnerReadOnly: listeners[1][1],
		DNSZone: prim.DNSZone, Warnings: resource.GroupWarnings(prim, part), Created: time.Now().UTC(),
	}
	op := &Operation{ID: resource.NewUID(), Name: "CreateManagedFailoverGroup", Kind: KindCreateGroup, Subscription: sub, ResourceGroup: rg,
		Location: region, ResourceID: name, Status: arm.StatusInProgress, StartTime: time.Now().UTC(), Initiator: callerOf(ctx)}
	g.ActiveOperation, g.OperationKind = op.ID, op.Kind
	g.Event("Create", fmt.Sprintf("primary %s (%s), secondary %s (%s)", prim.Name, prim.Location, part.Name, part.Location), nil)
	prim.FailoverGroup, part.FailoverGroup = name, name
	// The secondary is seeded from the primary (pg_basebackup): one PostgreSQL system, one
	// backup history, written by each member into its own region's repository.
	prim.BackupStanza = engine.GroupStanza(prim)
	part.BackupStanza = prim.BackupStanza
	sconds, sops, _, err := c.specWrites(ctx,
		c.groupSpec(c.baseSpec(prim), g, 0, part), c.groupSpec(c.baseSpec(part), g, 1, prim))
	if err != nil {
		return nil, internalError(err)
	}
	// The members' records name the group in the same transaction that creates it, guarded by
	// their revisions, so two groups can never take the same instance.
	conds := append([]store.Cond{{Key: fogKey(name), Rev: 0},
		{Key: miKey(prim.Subscription, prim.ResourceGroup, prim.Name), Rev: in.primRev},
		{Key: miKey(part.Subscription, part.ResourceGroup, part.Name), Rev: in.partRev}}, sconds...)
	ops := append([]store.Op{store.PutOp(fogKey(name), g), store.PutOp(opKey(op.ID), op),
		store.PutOp(miKey(prim.Subscription, prim.ResourceGroup, prim.Name), prim),
		store.PutOp(miKey(part.Subscription, part.ResourceGroup, part.Name), part)}, sops...)
	if err := c.st.Txn(ctx, conds, ops); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, fault.Busy("The group or its instances changed while this request ran; retry.")
		}
		return nil, internalError(err)
	}
	c.log.Info("accepted", "operation", op.Name, "id", op.ID, "group", name)
	c.kickOp(op.ID)
	return op, nil
}

// nameInZone returns the instance that already has name in a DNS zone, or nil.
func (c *Controller) nameInZone(ctx context.Context, name, zone string) (*resource.ManagedInstance, error) {
	ms, err := store.List[resource.ManagedInstance](ctx, c.st, "mi/")
	if err != nil {
		return nil, internalError(fmt.Errorf("list instances: %w", err))
	}
	for i := range ms {
		if ms[i].DNSZone == zone && strings.EqualFold(ms[i].Name, name) {
			return &ms[i], nil
		}
	}
	return nil, nil
}

// checkReach has the secondary's agent open a connection to the primary's replication
// endpoint, the path a standby uses, before anything changes.
func (c *Controller) checkReach(ctx context.Context, from, to *resource.ManagedInstance) error {
	target := net.JoinHostPort(to.Host, strconv.Itoa(to.Port))
	got, err := c.eng.RunCommand(ctx, from.Location, instance.Command{InstanceUID: from.UID, Kind: instance.CmdCheckReach, Target: target}, 10*time.Second)
	if err != nil {
		return fault.Invalid("InstanceFailoverGroupIncorrectNetworkingConfiguration",
			"Networking configuration is incorrect: the agent of region '%s' did not report whether it reaches %s (%v).", from.Location, target, err)
	}
	if got.Error != "" {
		return fault.Invalid("InstanceFailoverGroupIncorrectNetworkingConfiguration",
			"Networking configuration is incorrect. The secondary '%s' (region %s) cannot reach the primary's replication endpoint %s: %s.", from.Name, from.Location, target, got.Error)
	}
	return nil
}

// DeleteFailoverGroup removes a group (primary side only); nil means there was none.
func (c *Controller) DeleteFailoverGroup(ctx context.Context, sub, rg, loc, name string) (*Operation, error) {
	g, rev, i, aerr := c.group(ctx, sub, rg, loc, name)
	if aerr != nil {
		if errors.Is(aerr, fault.ErrNotFound) {
			return nil, nil
		}
		return nil, aerr
	}
	if aerr := c.checkSides(ctx, g, actionGroupDelete); aerr != nil {
		return nil, aerr
	}
	if i != g.Primary {
		return nil, fault.Invalid("InstanceFailoverGroupUpdateOrDeleteRequestOnSecondary",
			"Modifications to the instance failover group are not allowed on a secondary server. Execute the request on the primary server (resource group '%s', location '%s').",
			g.Sides[g.Primary].ResourceGroup, g.Sides[g.Primary].Location)
	}
	if g.Deleting && g.ActiveOperation != "" {
		var op Operation
		if _, err := store.Get(ctx, c.st, opKey(g.ActiveOperation), &op); err == nil {
			return &op, nil
		}
	}
	if err := c.groupBusy(ctx, g); err != nil {
		return nil, err
	}
	op := &Operation{ID: resource.NewUID(), Name: "DropManagedFailoverGroup", Kind: KindDeleteGroup, Subscription: sub, ResourceGroup: rg,
		Location: g.Sides[i].Location, ResourceID: name, Status: arm.StatusInProgress, StartTime: time.Now().UTC(), Initiator: callerOf(ctx)}
	g.ActiveOperation, g.OperationKind, g.Deleting = op.ID, op.Kind, true
	if aerr := c.writeGroup(ctx, g, rev, store.PutOp(opKey(op.ID), op)); aerr != nil {
		return nil, aerr
	}
	c.log.Info("accepted", "operation", op.Name, "id", op.ID, "group", name)
	c.kickOp(op.ID)
	return op, nil
}

// Failover starts a planned (force false) or forced failover to the addressed side, which
// must be the secondary.
func (c *Controller) Failover(ctx context.Context, sub, rg, loc, name string, force bool) (*Operation, error) {
	g, rev, i, aerr := c.group(ctx, sub, rg, loc, name)
	if aerr != nil {
		return nil, aerr
	}
	action := actionGroupFailover
	if force {
		action = actionGroupForce
	}
	if aerr := c.checkSides(ctx, g, action); aerr != nil {
		return nil, aerr
	}
	if i == g.Primary {
		return nil, fault.Invalid("InstanceFailoverGroupFailoverRequestOnPrimary",
			"The failover request should be initiated on the secondary server of instance failover group: '%s' is already the primary. Address the request to resource group '%s', location '%s'.",
			g.Sides[i].InstanceName, g.Sides[g.Secondary()].ResourceGroup, g.Sides[g.Secondary()].Location)
	}
	if err := c.groupBusy(ctx, g); err != nil {
		return nil, err
	}
	if g.Deleting {
		return nil, fault.Busy("Instance failover group '%s' is being deleted.", name)
	}
	st := c.statuses(ctx, g)
	if st[g.Secondary()].SeedPercent != nil || st[g.Secondary()].SeededGeneration < g.Members[g.Secondary()].SeedGeneration {
		return nil, fault.Busy(
			"Instance failover group '%s' is seeding its secondary; a failover is possible once replicationState is CATCH_UP.", name)
	}
	return c.startFailover(ctx, c.eng, g, rev, i, force, callerOf(ctx))
}

// startFailover records, through e, a failover of g (read at rev) to side target and starts
// driving it.
func (c *Controller) startFailover(ctx context.Context, e *engine.Engine, g *FailoverGroup, rev int64, target int, force bool, initiator string) (*Operation, error) {
	kind, opName := KindFailover, "FailoverManagedFailoverGroup"
	if force {
		kind = KindForceFailover
	}
	s := g.Sides[target]
	op := &Operation{ID: resource.NewUID(), Name: opName, Kind: kind, Subscription: s.Subscription, ResourceGroup: s.ResourceGroup,
		Location: s.Location, ResourceID: g.Name, Status: arm.StatusInProgress, StartTime: time.Now().UTC(), Target: target, Initiator: initiator}
	g.ActiveOperation, g.OperationKind = op.ID, kind
	if err := e.Store().Txn(ctx, []store.Cond{{Key: fogKey(g.Name), Rev: rev}}, []store.Op{store.PutOp(fogKey(g.Name), g), store.PutOp(opKey(op.ID), op)}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, fault.Busy("Instance failover group '%s' changed while this request ran; retry.", g.Name)
		}
		return nil, internalError(err)
	}
	c.log.Info("accepted", "operation", opName, "id", op.ID, "group", g.Name, "force", force, "initiator", initiator)
	c.kickOp(op.ID)
	return op, nil
}

// GroupResult is the body an operation's Location returns: the group as the side the
// operation was addressed to sees it.
func (c *Controller) GroupResult(ctx context.Context, op *Operation) (resource.FailoverGroupJSON, error) {
	var g FailoverGroup
	if _, err := store.Get(ctx, c.st, fogKey(op.ResourceID), &g); err != nil {
		return resource.FailoverGroupJSON{}, fogNotFound(op.ResourceID)
	}
	i := g.Side(op.Subscription, op.ResourceGroup, op.Location)
	if i < 0 {
		for k, s := range g.Sides {
			if resource.NormalizeRegion([]string{s.Location}, op.Location) != "" {
				i = k
			}
		}
	}
	if i < 0 {
		i = g.Primary
	}
	return c.groupView(ctx, &g, i), nil
}
