package group

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/store"
)

// Route is where one listener sends new connections right now.
type Route struct {
	Addr     string
	Names    []string
	Target   string
	Hold     bool
	Refuse   string
	Fallback string
}

// Routes computes every listener's route from the groups and what the agents observe. The
// read-write listener routes only to the instance observed as primary in the group's current
// epoch, so a primary of an older epoch (one a failover fenced, or one that came back) never
// receives a connection through it: the rule that keeps split brain out of the listener.
// Leases are judged on obs's clock. Only the listeners in region are returned: each
// region's gateway serves the groups with a side there, on that region's addresses.
func Routes(ctx context.Context, st0 store.Store, obs *lease.Observer, dnsSuffix, region string) ([]Route, error) {
	groups, err := store.List[FailoverGroup](ctx, st0, Prefix)
	if err != nil {
		return nil, err
	}
	var out []Route
	for k := range groups {
		g := &groups[k]
		if g.Deleting {
			continue
		}
		var st [2]instance.Status
		for i, s := range g.Sides {
			_, _ = store.Get(ctx, st0, instance.StatusKey(s.Location, s.InstanceUID), &st[i])
		}
		var addrs [2]string
		for i, s := range g.Sides {
			var spec instance.Spec
			if _, err := store.Get(ctx, st0, instance.SpecKey(s.Location, s.InstanceUID), &spec); err == nil {
				addrs[i] = net.JoinHostPort(spec.Host, strconv.Itoa(spec.Port))
			}
		}
		rwName, roName := ListenerNames(g.Name, g.DNSZone, dnsSuffix)
		prim, sec := st[g.Primary], st[g.Secondary()]
		// The primary must be the one of the current epoch and hold a live lease for it: an
		// agent that lost its lease has fenced its primary, or is about to.
		primOK := prim.Phase == instance.PhaseReady && prim.Role == instance.RolePrimary && prim.Epoch == g.Epoch &&
			obs.Holds(ctx, st0, g.Sides[g.Primary].Location, g.Sides[g.Primary].InstanceUID, g.Epoch)
		rw := Route{Names: []string{rwName}}
		switch {
		case g.Switching:
			rw.Hold = true
		case primOK:
			rw.Target = addrs[g.Primary]
		default:
			// No primary of this epoch is up (it crashed and its agent is restarting it):
			// wait for it rather than fail at once.
			rw.Hold = true
		}
		ro := Route{Names: []string{roName}}
		secOK := sec.Phase == instance.PhaseReady && sec.Role == instance.RoleStandby && obs.AgentLive(ctx, st0, g.Sides[g.Secondary()].Location)
		switch {
		case g.SecondaryType == "Standby":
			ro.Refuse = fmt.Sprintf("the read-only listener of failover group %s is disabled: its secondary is a Standby (disaster recovery only) replica; connect to the read-write listener %s", g.Name, rwName)
		case g.Switching:
			ro.Hold = true
		case secOK:
			ro.Target = addrs[g.Secondary()]
			if g.ReadOnlyPolicy == "Enabled" && primOK {
				ro.Fallback = addrs[g.Primary]
			}
		case g.ReadOnlyPolicy == "Enabled" && primOK:
			ro.Target = addrs[g.Primary]
		default:
			ro.Refuse = fmt.Sprintf("the secondary of failover group %s is not available for read-only sessions (readOnlyEndpoint.failoverPolicy is Disabled); retry later or use the read-write listener %s", g.Name, rwName)
		}
		for i, s := range g.Sides {
			rwAddr, roAddr := g.Listeners(i)
			if s.Location != region || rwAddr.Host == "" || (i == 1 && g.PartnerReadWrite.Host == "") {
				continue
			}
			rw.Addr = net.JoinHostPort(rwAddr.Host, strconv.Itoa(rwAddr.Port))
			ro.Addr = net.JoinHostPort(roAddr.Host, strconv.Itoa(roAddr.Port))
			out = append(out, rw, ro)
		}
	}
	return out, nil
}
