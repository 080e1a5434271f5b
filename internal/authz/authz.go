package authz

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/store"
)

// Store keys. None is in an agent's scope.
const (
	assignmentPrefix   = "authz/assignments/"
	subscriptionPrefix = "authz/subscriptions/"
	tenantKey          = "authz/tenant"
	bootstrapKey       = "authz/bootstrapped"
)

// Assignment gives a principal a role at a scope.
type Assignment struct {
	// Name is the assignment's GUID, the last segment of its resource id.
	Name             string    `json:"name"`
	Scope            string    `json:"scope"`
	RoleDefinitionID string    `json:"roleDefinitionId"`
	PrincipalID      string    `json:"principalId"`
	CreatedOn        time.Time `json:"createdOn"`
	CreatedBy        string    `json:"createdBy,omitempty"`
}

// ID is the assignment's ARM resource id.
func (a Assignment) ID() string {
	return strings.TrimRight(a.Scope, "/") + "/providers/Microsoft.Authorization/roleAssignments/" + a.Name
}

// Role returns the assignment's role definition.
func (a Assignment) Role() RoleDefinition {
	r, _ := FindRole(a.RoleDefinitionID)
	return r
}

// Subscription is a subscription's record: the tenant it belongs to.
type Subscription struct {
	ID          string `json:"subscriptionId"`
	TenantID    string `json:"tenantId"`
	DisplayName string `json:"displayName,omitempty"`
}

// Authorizer keeps role assignments and subscriptions in a store and answers checks.
type Authorizer struct {
	st store.Store
}

// New returns the authorizer over st.
func New(st store.Store) *Authorizer { return &Authorizer{st: st} }

// NewGUID returns a random version-4 UUID.
func NewGUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Assignments lists every role assignment.
func (a *Authorizer) Assignments(ctx context.Context) ([]Assignment, error) {
	return store.List[Assignment](ctx, a.st, assignmentPrefix)
}

// Create stores a new assignment. An assignment of the same role to the same principal at
// the same scope is a conflict (RoleAssignmentExists), as in Azure.
func (a *Authorizer) Create(ctx context.Context, as Assignment) (Assignment, error) {
	if _, ok := FindRole(as.RoleDefinitionID); !ok {
		return as, fault.Invalid("RoleDefinitionDoesNotExist", "The specified role definition with ID '%s' does not exist.", as.RoleDefinitionID)
	}
	all, err := a.Assignments(ctx)
	if err != nil {
		return as, storeError(err)
	}
	for _, x := range all {
		if strings.EqualFold(x.Name, as.Name) {
			if x.PrincipalID == as.PrincipalID && x.Role().ID == as.Role().ID && strings.EqualFold(x.Scope, as.Scope) {
				return x, nil // PUT of the same assignment again
			}
			return as, fault.New(fault.Conflict, "RoleAssignmentUpdateNotPermitted", "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.")
		}
		if x.PrincipalID == as.PrincipalID && x.Role().ID == as.Role().ID && strings.EqualFold(strings.TrimRight(x.Scope, "/"), strings.TrimRight(as.Scope, "/")) {
			return as, fault.New(fault.Conflict, "RoleAssignmentExists", "The role assignment already exists (%s).", x.ID())
		}
	}
	as.Name = strings.ToLower(as.Name)
	if as.CreatedOn.IsZero() {
		as.CreatedOn = time.Now().UTC()
	}
	key := assignmentPrefix + as.Name
	if err := a.st.Txn(ctx, []store.Cond{{Key: key}}, []store.Op{store.PutOp(key, as)}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return as, fault.New(fault.Conflict, "RoleAssignmentExists", "The role assignment '%s' was created by another request at the same time.", as.Name)
		}
		return as, storeError(err)
	}
	return as, nil
}

// Delete removes the assignment name; false when there is none.
func (a *Authorizer) Delete(ctx context.Context, name string) (Assignment, bool, error) {
	var as Assignment
	key := assignmentPrefix + strings.ToLower(name)
	rev, err := store.Get(ctx, a.st, key, &as)
	if errors.Is(err, store.ErrNotFound) {
		return as, false, nil
	}
	if err != nil {
		return as, false, err
	}
	return as, true, a.st.Txn(ctx, []store.Cond{{Key: key, Rev: rev}}, []store.Op{{Key: key, Delete: true}})
}

// Allowed reports whether principal may perform action at scope: some role assigned to it at
// scope or above allows the action.
func (a *Authorizer) Allowed(ctx context.Context, principal, action, scope string) (bool, error) {
	all, err := a.Assignments(ctx)
	if err != nil {
		return false, err
	}
	for _, as := range all {
		if as.PrincipalID == principal && ScopeCovers(as.Scope, scope) && as.Role().Allows(action) {
			return true, nil
		}
	}
	return false, nil
}

// Operator reports whether principal holds a role at the root scope "/": the deployment's
// operators, who work across tenants.
func (a *Authorizer) Operator(ctx context.Context, principal string) (bool, error) {
	all, err := a.Assignments(ctx)
	if err != nil {
		return false, err
	}
	for _, as := range all {
		if as.PrincipalID == principal && strings.Trim(as.Scope, "/") == "" {
			return true, nil
		}
	}
	return false, nil
}

// Reach reports whether a principal of tenant ("" for the deployment's own) reaches
// subscription sub at all: an operator (a role at the root scope) reaches every subscription,
// anyone else only those of their own tenant. mine and theirs are the two tenants, for
// WrongTenant.
func (a *Authorizer) Reach(ctx context.Context, principal, tenant, sub string) (ok bool, mine, theirs string, err error) {
	op, err := a.Operator(ctx, principal)
	if err != nil || op {
		return op, "", "", err
	}
	rec, err := a.Subscription(ctx, sub)
	if err != nil {
		return false, "", "", err
	}
	mine = tenant
	if mine == "" {
		if mine, err = a.DefaultTenant(ctx); err != nil {
			return false, "", "", err
		}
	}
	return strings.EqualFold(mine, rec.TenantID), mine, rec.TenantID, nil
}

// Permitted reports whether a principal of tenant may perform action at scope, as a request
// addressed to scope is checked: the subscription's tenant first (Reach), then the role
// assignments (Allowed). err is set only when the store could not tell.
func (a *Authorizer) Permitted(ctx context.Context, principal, tenant, action, scope string) (bool, error) {
	if sub := SubscriptionOf(scope); sub != "" {
		if ok, _, _, err := a.Reach(ctx, principal, tenant, sub); err != nil || !ok {
			return false, err
		}
	}
	return a.Allowed(ctx, principal, action, scope)
}

// Check returns nil when principal may perform action at scope, 403 AuthorizationFailed in
// Azure's words when not, or the store's error.
func (a *Authorizer) Check(ctx context.Context, principal, action, scope string) error {
	ok, err := a.Allowed(ctx, principal, action, scope)
	if err != nil {
		return storeError(err)
	}
	if !ok {
		return Denied(principal, action, scope)
	}
	return nil
}

// Denied is the error ARM answers a call the caller has no role for with.
func Denied(principal, action, scope string) error {
	return fault.New(fault.Forbidden, "AuthorizationFailed",
		"The client '%s' with object id '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid. If access was recently granted, please refresh your credentials.",
		principal, principal, action, scope)
}

// Bootstrap makes principal an Owner at the root scope once, when the deployment has no
// access control yet, together with every principal that already holds a token (before roles
// existed a token could do everything; this keeps it so until an Owner narrows it).
func (a *Authorizer) Bootstrap(ctx context.Context, principals ...string) error {
	if _, err := a.st.Get(ctx, bootstrapKey); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	owner, _ := FindRole("Owner")
	seen := map[string]bool{}
	ops := []store.Op{store.PutOp(bootstrapKey, time.Now().UTC())}
	for _, p := range principals {
		if p == "" || seen[p] {
			continue
		}
		seen[p] = true
		as := Assignment{Name: NewGUID(), Scope: "/", RoleDefinitionID: owner.ID, PrincipalID: p, CreatedOn: time.Now().UTC(), CreatedBy: "fog"}
		ops = append(ops, store.PutOp(assignmentPrefix+as.Name, as))
	}
	err := a.st.Txn(ctx, []store.Cond{{Key: bootstrapKey}}, ops)
	if errors.Is(err, store.ErrConflict) { // another server did it
		return nil
	}
	return err
}

// DefaultTenant is the deployment's own tenant, made once: the tenant of every subscription
// not registered to another, and of every principal not given another.
func (a *Authorizer) DefaultTenant(ctx context.Context) (string, error) {
	var t string
	if _, err := store.Get(ctx, a.st, tenantKey, &t); err == nil {
		return t, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	t = NewGUID()
	err := a.st.Txn(ctx, []store.Cond{{Key: tenantKey}}, []store.Op{store.PutOp(tenantKey, t)})
	if errors.Is(err, store.ErrConflict) {
		_, err = store.Get(ctx, a.st, tenantKey, &t)
	}
	return t, err
}

// Subscription returns a subscription's record; an unregistered one is in the default tenant.
func (a *Authorizer) Subscription(ctx context.Context, id string) (Subscription, error) {
	var s Subscription
	_, err := store.Get(ctx, a.st, subscriptionPrefix+strings.ToLower(id), &s)
	if errors.Is(err, store.ErrNotFound) {
		t, err := a.DefaultTenant(ctx)
		return Subscription{ID: strings.ToLower(id), TenantID: t}, err
	}
	return s, err
}

// RegisterSubscription records the tenant a subscription belongs to. A subscription's tenant
// does not change once it holds resources; the caller checks that.
func (a *Authorizer) RegisterSubscription(ctx context.Context, s Subscription) error {
	s.ID, s.TenantID = strings.ToLower(s.ID), strings.ToLower(s.TenantID)
	return store.Put(ctx, a.st, subscriptionPrefix+s.ID, s)
}

// Subscriptions lists the registered subscriptions.
func (a *Authorizer) Subscriptions(ctx context.Context) ([]Subscription, error) {
	return store.List[Subscription](ctx, a.st, subscriptionPrefix)
}

// WrongTenant is the error ARM answers a token of one tenant used on another tenant's subscription with.
func WrongTenant(tokenTenant, subTenant string) error {
	return fault.New(fault.Unauthorized, "InvalidAuthenticationTokenTenant",
		"The access token is from the wrong issuer 'https://sts.windows.net/%s/'. It must match the tenant 'https://sts.windows.net/%s/' associated with this subscription. Please use the authority (URL) 'https://login.windows.net/%s' to get the token. Note, if the subscription is transferred to another tenant there is no impact to the services, but information about new tenant could take time to propagate (up to an hour). If you just transferred your subscription and see this error message, please try back later.",
		tokenTenant, subTenant, subTenant)
}

func storeError(err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return fault.New(fault.Unavailable, "ServiceUnavailable", "The store is not reachable; retry shortly.")
	}
	return fault.Failure("InternalServerError", "Fog could not read its access control", err)
}

// Fog's own endpoints and the actions they need, at the root scope.
var fogActions = map[string]string{
	"GET /fog/v1/tokens":        "Fog/tokens/read",
	"POST /fog/v1/tokens":       "Fog/tokens/write",
	"DELETE /fog/v1/tokens":     "Fog/tokens/delete",
	"POST /fog/v1/joinTokens":   "Fog/joinTokens/write",
	"GET /fog/v1/subscriptions": "Fog/subscriptions/read",
	"PUT /fog/v1/subscriptions": "Fog/subscriptions/write",
	"GET /metrics":              "Microsoft.Insights/metrics/read",
}

// Action derives the action and scope an API call needs, as ARM derives them from a resource
// path: the provider namespace and resource types, then read (GET), write (PUT, PATCH),
// delete (DELETE) or "<name>/action" (POST to an action); the scope is the resource, or for a
// collection or an action its parent. ok is false for a path that names no action.
func Action(method, escapedPath string) (action, scope string, ok bool) {
	raw := strings.Split(strings.Trim(escapedPath, "/"), "/")
	segs := make([]string, 0, len(raw))
	for _, s := range raw {
		u, err := url.PathUnescape(s)
		if err != nil {
			return "", "", false
		}
		segs = append(segs, u)
	}
	if len(segs) >= 2 && segs[0] == "fog" && segs[1] == "v1" || len(segs) == 1 && segs[0] == "metrics" {
		key := method + " /" + strings.Join(segs[:min(3, len(segs))], "/")
		a, ok := fogActions[key]
		return a, "/", ok
	}
	join := func(s []string) string { return "/" + strings.Join(s, "/") }
	p := -1
	for i := len(segs) - 2; i >= 0; i-- {
		if strings.EqualFold(segs[i], "providers") {
			p = i
			break
		}
	}
	verb := map[string]string{"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}[method]
	if p < 0 {
		// /subscriptions, /subscriptions/{id}, /subscriptions/{id}/resourceGroups[/{rg}]
		if len(segs) == 0 || !strings.EqualFold(segs[0], "subscriptions") || verb == "" {
			return "", "", false
		}
		types := []string{"subscriptions"}
		if len(segs) >= 3 {
			types = append(types, "resourceGroups")
		}
		sc := join(segs)
		if len(segs)%2 == 1 {
			sc = join(segs[:len(segs)-1])
		}
		if sc == "/" || sc == "" {
			sc = "/"
		}
		return "Microsoft.Resources/" + strings.Join(types, "/") + "/" + verb, sc, true
	}
	ns, rest := segs[p+1], segs[p+2:]
	if len(rest) == 0 {
		return "", "", false
	}
	var types []string
	for i := 0; i < len(rest); i += 2 {
		types = append(types, rest[i])
	}
	base := ns + "/" + strings.Join(types, "/")
	sc := join(segs[:len(segs)-1])
	switch {
	case len(rest)%2 == 0 && verb != "":
		return base + "/" + verb, join(segs), true
	case len(rest)%2 == 1 && method == "POST" && len(rest) >= 3:
		// The last segment is an action on the resource before it.
		return ns + "/" + strings.Join(types[:len(types)-1], "/") + "/" + rest[len(rest)-1] + "/action", sc, true
	case len(rest)%2 == 1 && verb == "read":
		if sc == "" {
			sc = "/"
		}
		return base + "/read", sc, true
	}
	return "", "", false
}

// SubscriptionOf returns the subscription a path is under, or "".
func SubscriptionOf(escapedPath string) string {
	segs := strings.Split(strings.Trim(escapedPath, "/"), "/")
	if len(segs) >= 2 && strings.EqualFold(segs[0], "subscriptions") {
		s, _ := url.PathUnescape(segs[1])
		return s
	}
	return ""
}
