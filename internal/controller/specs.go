package controller

import (
	"context"
	"errors"
	"reflect"

	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// baseSpec is the desired state of an instance on its own.
func (c *Controller) baseSpec(m *resource.ManagedInstance) instance.Spec {
	tz, _ := resource.IANATimezone(m.TimezoneID)
	return instance.Spec{
		UID: m.UID, Name: m.Name, Region: m.Location,
		Host: m.Host, Port: m.Port, Locale: m.Collation, Timezone: tz,
		AdminLogin: m.AdministratorLogin, AdminVerifier: m.PasswordVerifier,
		DNSNames: []string{m.Name + "." + m.DNSZone + "." + c.cfg.DNSSuffix}, VCores: m.VCores,
	}
}

// groupSpec applies what group g wants of side i to that side's base spec. partner is the
// other side's instance.
func (c *Controller) groupSpec(base instance.Spec, g *FailoverGroup, i int, partner *resource.ManagedInstance) instance.Spec {
	s := base
	mem := g.Members[i]
	s.Role, s.Epoch, s.GroupID, s.Paused, s.StopImmediately = mem.Role, g.Epoch, g.ID, mem.Paused, mem.StopImmediately
	s.PromoteAfterLSN, s.Rewind, s.Drain, s.KeepLostWAL = mem.PromoteAfterLSN, mem.Rewind, mem.Drain, mem.KeepLostWAL
	s.Peer = &instance.Peer{UID: partner.UID, Region: partner.Location, Host: partner.Host, Port: partner.Port}
	switch mem.Role {
	case instance.RoleStandby:
		s.Upstream = &instance.Upstream{UID: partner.UID, Region: partner.Location, Host: partner.Host, Port: partner.Port, Slot: pgtypes.SlotName(s.UID)}
		s.SeedGeneration = mem.SeedGeneration
	case instance.RolePrimary:
		s.Slots = []string{pgtypes.SlotName(partner.UID)}
	}
	if !g.Deleting {
		rw, ro := ListenerNames(g.Name, g.DNSZone, c.cfg.DNSSuffix)
		s.DNSNames = append(s.DNSNames, rw, ro)
		s.ExtraIPs = g.ListenerHosts()
		s.Link = &instance.Link{ID: g.ID, Name: g.Name, PrimaryName: g.Sides[g.Primary].InstanceName,
			SecondaryName: g.Sides[g.Secondary()].InstanceName, SecondaryType: g.SecondaryType}
	}
	return s
}

// specFor is the desired state of instance m, in its failover group if it has one.
func (c *Controller) specFor(ctx context.Context, m *resource.ManagedInstance) (instance.Spec, error) {
	base := c.baseSpec(m)
	if m.FailoverGroup == "" {
		return base, nil
	}
	var g FailoverGroup
	if _, err := store.Get(ctx, c.st, fogKey(m.FailoverGroup), &g); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return base, nil
		}
		return base, err
	}
	i := 0
	if g.Sides[1].InstanceUID == m.UID {
		i = 1
	}
	var partner resource.ManagedInstance
	if _, err := store.Get(ctx, c.st, g.Sides[1-i].InstanceKey(), &partner); err != nil {
		return base, err
	}
	return c.groupSpec(base, &g, i, &partner), nil
}

// specWrites returns the transaction parts that store specs: each spec whose content changed
// gets the next generation; an unchanged one keeps its own. The generations are returned in
// order, for operations to wait on.
func (c *Controller) specWrites(ctx context.Context, specs ...instance.Spec) ([]store.Cond, []store.Op, []int64, error) {
	var conds []store.Cond
	var ops []store.Op
	gens := make([]int64, len(specs))
	for i, s := range specs {
		key := instance.SpecKey(s.Region, s.UID)
		var cur instance.Spec
		rev, err := store.Get(ctx, c.st, key, &cur)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, nil, nil, err
		}
		s.Generation = cur.Generation
		if rev != 0 && reflect.DeepEqual(cur, s) {
			gens[i] = cur.Generation
			continue
		}
		s.Generation = cur.Generation + 1
		gens[i] = s.Generation
		conds = append(conds, store.Cond{Key: key, Rev: rev})
		ops = append(ops, store.PutOp(key, s))
	}
	return conds, ops, gens, nil
}
