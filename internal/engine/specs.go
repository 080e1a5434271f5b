package engine

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// BaseSpec is the desired state of an instance on its own.
func (e *Engine) BaseSpec(m *resource.ManagedInstance) instance.Spec {
	tz, _ := resource.IANATimezone(m.TimezoneID)
	return instance.Spec{
		UID: m.UID, Name: m.Name, Region: m.Location,
		Host: m.Host, Port: m.Port, Locale: m.Collation, Timezone: tz,
		AdminLogin: m.AdministratorLogin, AdminVerifier: m.PasswordVerifier,
		DNSNames: []string{m.Name + "." + m.DNSZone + "." + e.cfg.DNSSuffix}, VCores: m.VCores,
		// Every instance archives its WAL; the record keeps the backup last asked, so that
		// every spec written (each failover step rewrites both members') still asks for it.
		Backup:     &instance.BackupSpec{Stanza: m.Stanza(), RetentionDays: m.RetentionDays(), Seq: m.BackupSeq, Type: m.BackupType},
		BackupKeep: m.BackupKeep,
	}
}

// GroupSpec applies what group g wants of side i to that side's base spec. partner is the
// other side's instance.
func (e *Engine) GroupSpec(base instance.Spec, g *FailoverGroup, i int, partner *resource.ManagedInstance) instance.Spec {
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
	if i == 1 && partner.BackupStanza == "" && s.Backup != nil {
		// A group an older Fog created has no stanza in its records. Both members are one
		// PostgreSQL system and share one stanza: side 0's, the group's first primary (a
		// group created now records it in both). So nothing may record side 0's stanza
		// alone while the group lasts: side 1 would fall back to its own UID.
		b := *s.Backup
		b.Stanza = GroupStanza(partner)
		s.Backup = &b
	}
	if !g.Deleting {
		rw, ro := group.ListenerNames(g.Name, g.DNSZone, e.cfg.DNSSuffix)
		s.DNSNames = append(s.DNSNames, rw, ro)
		s.ExtraIPs = g.ListenerHosts()
		s.Link = &instance.Link{ID: g.ID, Name: g.Name, PrimaryName: g.Sides[g.Primary].InstanceName,
			SecondaryName: g.Sides[g.Secondary()].InstanceName, SecondaryType: g.SecondaryType}
	}
	return s
}

// GroupStanza is the backup stanza a group's members share: side 0's, the group's first
// primary, from which the secondary was seeded. side0 is side 0's record.
func GroupStanza(side0 *resource.ManagedInstance) string { return side0.Stanza() }

// SpecFor is the desired state of instance m, in its failover group if it has one.
func (e *Engine) SpecFor(ctx context.Context, m *resource.ManagedInstance) (instance.Spec, error) {
	base := e.BaseSpec(m)
	if m.FailoverGroup == "" {
		return base, nil
	}
	var g FailoverGroup
	if _, err := store.Get(ctx, e.st, group.Key(m.FailoverGroup), &g); err != nil {
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
	if _, err := store.Get(ctx, e.st, g.Sides[1-i].InstanceKey(), &partner); err != nil {
		return base, err
	}
	return e.GroupSpec(base, &g, i, &partner), nil
}

// SpecWrites returns the transaction parts that store specs: each spec whose content changed
// gets the next generation; an unchanged one keeps its own. The generations are returned in
// order, for operations to wait on.
func (e *Engine) SpecWrites(ctx context.Context, specs ...instance.Spec) ([]store.Cond, []store.Op, []int64, error) {
	var conds []store.Cond
	var ops []store.Op
	gens := make([]int64, len(specs))
	for i, s := range specs {
		key := instance.SpecKey(s.Region, s.UID)
		var cur instance.Spec
		rev, err := store.Get(ctx, e.st, key, &cur)
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

// WriteGroup stores g (if nobody changed it since rev) together with both members' specs and
// any extra ops, in one transaction. It returns the specs' generations. A group, or a
// member's record, changed meanwhile is fault.ErrBusy.
func (e *Engine) WriteGroup(ctx context.Context, g *FailoverGroup, rev int64, extra ...store.Op) ([2]int64, error) {
	var gens [2]int64
	var ms [2]resource.ManagedInstance
	conds := []store.Cond{{Key: group.Key(g.Name), Rev: rev}}
	for i, s := range g.Sides {
		mrev, err := store.Get(ctx, e.st, s.InstanceKey(), &ms[i])
		if err != nil {
			return gens, Internal(fmt.Errorf("read member %s: %w", s.InstanceName, err))
		}
		// The specs are computed from the records as read: a record changed since (the
		// backup scheduler asks for a backup by writing a record and its spec at once) must
		// not have its spec overwritten from the older record.
		conds = append(conds, store.Cond{Key: s.InstanceKey(), Rev: mrev})
	}
	ops := append([]store.Op{store.PutOp(group.Key(g.Name), g)}, extra...)
	var specs []instance.Spec
	for i := range g.Sides {
		base := e.BaseSpec(&ms[i])
		if ms[i].FailoverGroup == g.Name {
			specs = append(specs, e.GroupSpec(base, g, i, &ms[1-i]))
		} else {
			specs = append(specs, base)
		}
	}
	sconds, sops, sg, err := e.SpecWrites(ctx, specs...)
	if err != nil {
		return gens, Internal(err)
	}
	gens[0], gens[1] = sg[0], sg[1]
	if err := e.st.Txn(ctx, append(conds, sconds...), append(ops, sops...)); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return gens, fault.Busy("Instance failover group '%s' changed while this request ran; retry.", g.Name)
		}
		return gens, Internal(err)
	}
	return gens, nil
}
