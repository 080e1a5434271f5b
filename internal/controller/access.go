package controller

import (
	"context"
	"fmt"
	"strings"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/resource"
)

// Access checks the caller's permissions beyond the resource a request addresses: a group
// operation needs its permission on both instances' sides, as in Azure, and a group may not
// join instances of two tenants. The API checks the addressed resource before the controller
// runs; without an Access (a controller driven directly) everything is allowed.
type Access interface {
	// Check returns 403 AuthorizationFailed unless the caller of ctx may perform action at
	// scope.
	Check(ctx context.Context, action, scope string) error
	// Allowed reports whether the caller of ctx may perform action at scope, the
	// subscription's tenant included, as a request addressed there would be checked; err is
	// set only when that could not be told.
	Allowed(ctx context.Context, action, scope string) (bool, error)
	// Tenant returns the tenant a subscription belongs to.
	Tenant(ctx context.Context, subscription string) (string, error)
}

// SetAccess installs the permission checks.
func (c *Controller) SetAccess(a Access) { c.access = a }

// Actions of failover-group operations, as Azure names them.
const (
	actionGroupWrite    = "Microsoft.Sql/locations/instanceFailoverGroups/write"
	actionGroupDelete   = "Microsoft.Sql/locations/instanceFailoverGroups/delete"
	actionGroupFailover = "Microsoft.Sql/locations/instanceFailoverGroups/failover/action"
	actionGroupForce    = "Microsoft.Sql/locations/instanceFailoverGroups/forceFailoverAllowDataLoss/action"
	actionInstanceWrite = "Microsoft.Sql/managedInstances/write"
	actionInstanceRead  = "Microsoft.Sql/managedInstances/read"
)

// canRead reports whether the caller may read instance m. A request names other instances than
// the one it addresses (a dnsZonePartner, a group's primary and partner) and can collide with
// one (a taken name): every lookup of such an instance goes through canRead, and one the
// caller cannot read is answered as if it did not exist, so that no error confirms or names a
// resource of another resource group or tenant. ARM does the same for resources outside the
// caller's reach.
func (c *Controller) canRead(ctx context.Context, m *resource.ManagedInstance) (bool, error) {
	if c.access == nil {
		return true, nil
	}
	ok, err := c.access.Allowed(ctx, actionInstanceRead, m.ID())
	if err != nil {
		return false, internalError(fmt.Errorf("check read access to %s: %w", m.ID(), err))
	}
	return ok, nil
}

// readableInstance is getInstance for an instance the request does not address: one the
// caller cannot read is not found, in the same words as one that does not exist.
func (c *Controller) readableInstance(ctx context.Context, sub, rg, name string) (*resource.ManagedInstance, int64, error) {
	m, rev, aerr := c.getInstance(ctx, sub, rg, name)
	if aerr != nil {
		return nil, 0, aerr
	}
	ok, aerr := c.canRead(ctx, m)
	if aerr != nil {
		return nil, 0, aerr
	}
	if !ok {
		return nil, 0, resource.NotFound(resource.TypeManagedInstance, name)
	}
	return m, rev, nil
}

func groupScope(sub, rg, loc, name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.Sql/locations/" + loc + "/instanceFailoverGroups/" + name
}

// checkSides checks action on the group's id in both sides' resource groups.
func (c *Controller) checkSides(ctx context.Context, g *FailoverGroup, action string) error {
	if c.access == nil {
		return nil
	}
	for _, s := range g.Sides {
		if aerr := c.access.Check(ctx, action, groupScope(s.Subscription, s.ResourceGroup, s.Location, g.Name)); aerr != nil {
			return aerr
		}
	}
	return nil
}

// checkCreate checks what creating or updating a group between prim and part needs: the
// group write on both resource groups, the instance write on both instances, and one tenant.
func (c *Controller) checkCreate(ctx context.Context, name string, prim, part *resource.ManagedInstance) error {
	if c.access == nil {
		return nil
	}
	if !strings.EqualFold(prim.Subscription, part.Subscription) {
		t1, err1 := c.access.Tenant(ctx, prim.Subscription)
		t2, err2 := c.access.Tenant(ctx, part.Subscription)
		if err1 != nil || err2 != nil {
			return internalError(firstErr(err1, err2))
		}
		if !strings.EqualFold(t1, t2) {
			return fault.Invalid("InstanceFailoverGroupPartnerManagedInstanceFromDifferentSubscription",
				"Primary server and the partner server of failover group are from different tenants: subscription '%s' is in tenant '%s' and subscription '%s' in tenant '%s'. A failover group can't be created between two instances belonging to different tenants.",
				prim.Subscription, t1, part.Subscription, t2)
		}
	}
	for _, m := range []*resource.ManagedInstance{prim, part} {
		if aerr := c.access.Check(ctx, actionGroupWrite, groupScope(m.Subscription, m.ResourceGroup, m.Location, name)); aerr != nil {
			return aerr
		}
	}
	for _, m := range []*resource.ManagedInstance{prim, part} {
		if aerr := c.access.Check(ctx, actionInstanceWrite, arm.InstanceID(m.Subscription, m.ResourceGroup, m.Name)); aerr != nil {
			return aerr
		}
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
