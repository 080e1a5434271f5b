package controller

import (
	"context"
	"strings"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/resource"
)

// Access checks the caller's permissions beyond the resource a request addresses: a group
// operation needs its permission on both instances' sides, as in Azure, and a group may not
// join instances of two tenants. The API checks the addressed resource before the controller
// runs; without an Access (a controller driven directly) everything is allowed.
type Access interface {
	// Check returns 403 AuthorizationFailed unless the caller of ctx may perform action at
	// scope.
	Check(ctx context.Context, action, scope string) *arm.Error
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
)

func groupScope(sub, rg, loc, name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.Sql/locations/" + loc + "/instanceFailoverGroups/" + name
}

// checkSides checks action on the group's id in both sides' resource groups.
func (c *Controller) checkSides(ctx context.Context, g *FailoverGroup, action string) *arm.Error {
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
func (c *Controller) checkCreate(ctx context.Context, name string, prim, part *resource.ManagedInstance) *arm.Error {
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
			return arm.BadRequest("InstanceFailoverGroupPartnerManagedInstanceFromDifferentSubscription",
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
