package api

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/authz"
	"github.com/fogdb/fog/internal/controller"
)

// AuthzAPIVersions are the Microsoft.Authorization api-versions accepted.
var AuthzAPIVersions = arm.APIVersions{
	"2015-07-01", "2018-01-01-preview", "2018-09-01-preview", "2020-04-01-preview",
	"2020-08-01-preview", "2020-10-01-preview", "2022-04-01", "2022-05-01-preview",
}

// SubscriptionsPath is Fog's endpoint for registering a subscription in a tenant.
const SubscriptionsPath = "/fog/v1/subscriptions"

// WithAuthz turns on role-based access control: every call is checked against the role
// assignments in a, and group operations check the partner side too.
func (s *Server) WithAuthz(a *authz.Authorizer) *Server {
	s.authz = a
	s.c.SetAccess(controllerAccess{a})
	return s
}

type principalKey struct{}

func withPrincipal(ctx context.Context, info authz.TokenInfo) context.Context {
	return context.WithValue(ctx, principalKey{}, info)
}

func principalOf(ctx context.Context) authz.TokenInfo {
	info, _ := ctx.Value(principalKey{}).(authz.TokenInfo)
	return info
}

// authorize checks a call: the principal's tenant against the subscription's (operators, who
// hold a role at the root scope, work across tenants), then the action the path and method
// name against the principal's role assignments.
func (s *Server) authorize(ctx context.Context, r *http.Request, info authz.TokenInfo) *arm.Error {
	action, scope, ok := authz.Action(r.Method, r.URL.EscapedPath())
	if !ok {
		return arm.Errorf(http.StatusNotFound, "InvalidResourceType",
			"No resource type is served at '%s'. Fog serves Microsoft.Sql managedInstances and their databases.", r.URL.Path)
	}
	if sub := authz.SubscriptionOf(r.URL.EscapedPath()); sub != "" {
		if err := s.checkTenant(ctx, info, sub); err != nil {
			return s.report(r, err)
		}
	}
	return s.report(r, s.authz.Check(ctx, info.Name, action, scope))
}

func (s *Server) checkTenant(ctx context.Context, info authz.TokenInfo, sub string) error {
	ok, mine, theirs, err := s.authz.Reach(ctx, info.Name, info.TenantID, sub)
	if err != nil {
		return controller.StoreError(err)
	}
	if !ok {
		return authz.WrongTenant(mine, theirs)
	}
	return nil
}

// controllerAccess answers the controller's checks for the caller of the request.
type controllerAccess struct{ a *authz.Authorizer }

func (c controllerAccess) Check(ctx context.Context, action, scope string) error {
	info, ok := ctx.Value(principalKey{}).(authz.TokenInfo)
	if !ok {
		return nil // not a request: the controller acting on its own
	}
	return c.a.Check(ctx, info.Name, action, scope)
}

func (c controllerAccess) Allowed(ctx context.Context, action, scope string) (bool, error) {
	info, ok := ctx.Value(principalKey{}).(authz.TokenInfo)
	if !ok {
		return true, nil // not a request: the controller acting on its own
	}
	return c.a.Permitted(ctx, info.Name, info.TenantID, action, scope)
}

func (c controllerAccess) Tenant(ctx context.Context, sub string) (string, error) {
	rec, err := c.a.Subscription(ctx, sub)
	return rec.TenantID, err
}

const authzProvider = "/providers/microsoft.authorization/"

// authzRoutes serves Microsoft.Authorization at any scope: role assignments and role
// definitions. They sit under a scope of any depth, which the router's fixed patterns do not
// express, so they are matched here before it.
func (s *Server) authzRoutes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		i := strings.LastIndex(strings.ToLower(p), authzProvider)
		if i < 0 || s.authz == nil {
			next.ServeHTTP(w, r)
			return
		}
		scope, err := url.PathUnescape(p[:i])
		if err != nil || !validScope(scope) {
			arm.WriteError(w, arm.BadRequest("InvalidScope", "The scope '%s' is not valid: use '/', /subscriptions/{id}, /subscriptions/{id}/resourceGroups/{name} or a resource id.", p[:i]))
			return
		}
		if scope == "" {
			scope = "/"
		}
		rest := strings.Split(p[i+len(authzProvider):], "/")
		if _, aerr := AuthzAPIVersions.Check(r); aerr != nil {
			arm.WriteError(w, aerr)
			return
		}
		switch {
		case strings.EqualFold(rest[0], "roleAssignments") && len(rest) == 1 && r.Method == "GET":
			s.listAssignments(w, r, scope)
		case strings.EqualFold(rest[0], "roleAssignments") && len(rest) == 2 && r.Method == "GET":
			s.getAssignment(w, r, scope, rest[1])
		case strings.EqualFold(rest[0], "roleAssignments") && len(rest) == 2 && r.Method == "PUT":
			s.putAssignment(w, r, scope, rest[1])
		case strings.EqualFold(rest[0], "roleAssignments") && len(rest) == 2 && r.Method == "DELETE":
			s.deleteAssignment(w, r, scope, rest[1])
		case strings.EqualFold(rest[0], "roleDefinitions") && len(rest) == 1 && r.Method == "GET":
			s.listRoleDefinitions(w, r, scope)
		case strings.EqualFold(rest[0], "roleDefinitions") && len(rest) == 2 && r.Method == "GET":
			rd, ok := authz.FindRole(rest[1])
			if !ok {
				arm.WriteError(w, arm.Errorf(http.StatusNotFound, "RoleDefinitionDoesNotExist", "The specified role definition with ID '%s' does not exist.", rest[1]))
				return
			}
			arm.WriteJSON(w, http.StatusOK, roleDefinitionJSON(scope, rd))
		default:
			arm.WriteError(w, arm.Errorf(http.StatusNotFound, "InvalidResourceType", "No Microsoft.Authorization resource is served at '%s'.", r.URL.Path))
		}
	})
}

// validScope accepts "" (the root), a subscription, a resource group and a resource id.
func validScope(scope string) bool {
	if scope == "" || scope == "/" {
		return true
	}
	segs := strings.Split(strings.TrimPrefix(scope, "/"), "/")
	if !strings.EqualFold(segs[0], "subscriptions") || len(segs) < 2 || !uuidRe.MatchString(segs[1]) {
		return false
	}
	for _, s := range segs {
		if s == "" {
			return false
		}
	}
	return len(segs) == 2 || strings.EqualFold(segs[2], "resourceGroups") && len(segs) >= 4
}

func roleDefinitionID(scope, guid string) string {
	if sub := authz.SubscriptionOf(scope); sub != "" {
		return "/subscriptions/" + sub + "/providers/Microsoft.Authorization/roleDefinitions/" + guid
	}
	return "/providers/Microsoft.Authorization/roleDefinitions/" + guid
}

func roleDefinitionJSON(scope string, rd authz.RoleDefinition) map[string]any {
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return map[string]any{
		"id": roleDefinitionID(scope, rd.ID), "name": rd.ID, "type": "Microsoft.Authorization/roleDefinitions",
		"properties": map[string]any{
			"roleName": rd.Name, "type": "BuiltInRole", "description": rd.Description, "assignableScopes": []string{"/"},
			"permissions": []map[string]any{{"actions": nonNil(rd.Actions), "notActions": nonNil(rd.NotActions), "dataActions": []string{}, "notDataActions": []string{}}},
		},
	}
}

func (s *Server) listRoleDefinitions(w http.ResponseWriter, r *http.Request, scope string) {
	want := ""
	if f := r.URL.Query().Get("$filter"); f != "" {
		name, ok := filterValue(f, "roleName")
		if !ok {
			arm.WriteError(w, arm.BadRequest("InvalidFilterInQueryString", "The $filter '%s' is not supported: use roleName eq '{name}'.", f))
			return
		}
		want = name
	}
	out := []map[string]any{}
	for _, rd := range authz.BuiltIn {
		if want == "" || strings.EqualFold(rd.Name, want) {
			out = append(out, roleDefinitionJSON(scope, rd))
		}
	}
	arm.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
}

// filterValue reads "<field> eq '<value>'" from an OData filter.
func filterValue(f, field string) (string, bool) {
	f = strings.TrimSpace(f)
	prefix := strings.ToLower(field) + " eq '"
	if !strings.HasPrefix(strings.ToLower(f), prefix) || !strings.HasSuffix(f, "'") {
		return "", false
	}
	return strings.ReplaceAll(f[len(prefix):len(f)-1], "''", "'"), true
}

func assignmentJSON(as authz.Assignment) map[string]any {
	return map[string]any{
		"id": as.ID(), "name": as.Name, "type": "Microsoft.Authorization/roleAssignments",
		"properties": map[string]any{
			"roleDefinitionId": roleDefinitionID(as.Scope, as.Role().ID), "principalId": as.PrincipalID, "principalType": "User",
			"scope": as.Scope, "createdOn": as.CreatedOn, "updatedOn": as.CreatedOn, "createdBy": as.CreatedBy, "updatedBy": as.CreatedBy,
		},
	}
}

// listAssignments lists the assignments that apply at scope (at it or above) and those below
// it, as ARM does; $filter=atScope() keeps those at or above, principalId eq '{id}' one
// principal's.
func (s *Server) listAssignments(w http.ResponseWriter, r *http.Request, scope string) {
	atScope, principal := false, ""
	if f := strings.TrimSpace(r.URL.Query().Get("$filter")); f != "" {
		for _, part := range strings.Split(f, " and ") {
			part = strings.TrimSpace(part)
			if strings.EqualFold(part, "atScope()") {
				atScope = true
				continue
			}
			v, ok := filterValue(part, "principalId")
			if !ok {
				arm.WriteError(w, arm.BadRequest("InvalidFilterInQueryString", "The $filter '%s' is not supported: use atScope(), principalId eq '{id}', or both joined by 'and'.", f))
				return
			}
			principal = v
		}
	}
	all, err := s.authz.Assignments(r.Context())
	if err != nil {
		s.writeError(w, r, controller.StoreError(err))
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i].CreatedOn.Before(all[j].CreatedOn) })
	out := []map[string]any{}
	for _, as := range all {
		if principal != "" && as.PrincipalID != principal {
			continue
		}
		if authz.ScopeCovers(as.Scope, scope) || (!atScope && authz.ScopeCovers(scope, as.Scope)) {
			out = append(out, assignmentJSON(as))
		}
	}
	arm.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
}

func (s *Server) getAssignment(w http.ResponseWriter, r *http.Request, scope, name string) {
	all, err := s.authz.Assignments(r.Context())
	if err != nil {
		s.writeError(w, r, controller.StoreError(err))
		return
	}
	for _, as := range all {
		if strings.EqualFold(as.Name, name) && strings.EqualFold(strings.TrimRight(as.Scope, "/"), strings.TrimRight(scope, "/")) {
			arm.WriteJSON(w, http.StatusOK, assignmentJSON(as))
			return
		}
	}
	arm.WriteError(w, arm.Errorf(http.StatusNotFound, "RoleAssignmentNotFound", "The role assignment '%s' is not found.", name))
}

func (s *Server) putAssignment(w http.ResponseWriter, r *http.Request, scope, name string) {
	if !uuidRe.MatchString(name) {
		arm.WriteError(w, arm.BadRequest("InvalidRoleAssignmentId", "The role assignment ID '%s' is not valid. The role assignment ID must be a GUID.", name))
		return
	}
	var body struct {
		Properties struct {
			RoleDefinitionID string `json:"roleDefinitionId"`
			PrincipalID      string `json:"principalId"`
			PrincipalType    string `json:"principalType"`
		} `json:"properties"`
	}
	if aerr := decode(r, &body); aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	p := body.Properties
	if !principalRe.MatchString(p.PrincipalID) {
		arm.WriteError(w, arm.BadRequest("InvalidPrincipalId", "A valid principal ID must be provided for role assignment: 'properties.principalId' names a principal (the name its tokens were made for: 1 to 63 lowercase letters, digits, '.', '_' or '-'); got %q.", p.PrincipalID))
		return
	}
	rd, ok := authz.FindRole(p.RoleDefinitionID)
	if p.RoleDefinitionID == "" || !ok {
		arm.WriteError(w, arm.BadRequest("RoleDefinitionDoesNotExist", "The specified role definition with ID '%s' does not exist. `fog role definition list` shows the roles.", p.RoleDefinitionID))
		return
	}
	as, err := s.authz.Create(r.Context(), authz.Assignment{
		Name: name, Scope: scope, RoleDefinitionID: rd.ID, PrincipalID: p.PrincipalID,
		CreatedOn: time.Now().UTC(), CreatedBy: principalOf(r.Context()).Name,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("role assigned", "principal", as.PrincipalID, "role", rd.Name, "scope", as.Scope, "by", as.CreatedBy)
	arm.WriteJSON(w, http.StatusCreated, assignmentJSON(as))
}

func (s *Server) deleteAssignment(w http.ResponseWriter, r *http.Request, scope, name string) {
	all, err := s.authz.Assignments(r.Context())
	if err != nil {
		s.writeError(w, r, controller.StoreError(err))
		return
	}
	for _, as := range all {
		if !strings.EqualFold(as.Name, name) || !strings.EqualFold(strings.TrimRight(as.Scope, "/"), strings.TrimRight(scope, "/")) {
			continue
		}
		if _, _, err := s.authz.Delete(r.Context(), name); err != nil {
			s.writeError(w, r, controller.StoreError(err))
			return
		}
		s.log.Info("role assignment deleted", "principal", as.PrincipalID, "role", as.Role().Name, "scope", as.Scope, "by", principalOf(r.Context()).Name)
		arm.WriteJSON(w, http.StatusOK, assignmentJSON(as))
		return
	}
	w.WriteHeader(http.StatusNoContent) // ARM: deleting what is not there is success
}

func (s *Server) subscriptionRoutes(rt *arm.Router) {
	rt.Handle("GET", "/subscriptions/{sub}", func(w http.ResponseWriter, r *http.Request) {
		rec, err := s.authz.Subscription(r.Context(), r.PathValue("sub"))
		if err != nil {
			s.writeError(w, r, controller.StoreError(err))
			return
		}
		arm.WriteJSON(w, http.StatusOK, subscriptionJSON(rec))
	})
	rt.Handle("GET", SubscriptionsPath, func(w http.ResponseWriter, r *http.Request) {
		subs, err := s.authz.Subscriptions(r.Context())
		if err != nil {
			s.writeError(w, r, controller.StoreError(err))
			return
		}
		out := []map[string]any{}
		for _, rec := range subs {
			out = append(out, subscriptionJSON(rec))
		}
		arm.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	})
	rt.Handle("PUT", SubscriptionsPath+"/{sub}", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			TenantID    string `json:"tenantId"`
			DisplayName string `json:"displayName"`
		}
		if aerr := decode(r, &body); aerr != nil {
			arm.WriteError(w, aerr)
			return
		}
		sub := r.PathValue("sub")
		if !uuidRe.MatchString(sub) {
			arm.WriteError(w, arm.BadRequest("InvalidSubscriptionId", "The provided subscription identifier '%s' is malformed or invalid.", sub))
			return
		}
		if !uuidRe.MatchString(body.TenantID) {
			arm.WriteError(w, arm.BadRequest("InvalidTenantId", "'tenantId' must be a tenant's GUID; got %q.", body.TenantID))
			return
		}
		rec := authz.Subscription{ID: sub, TenantID: body.TenantID, DisplayName: body.DisplayName}
		if err := s.authz.RegisterSubscription(r.Context(), rec); err != nil {
			s.writeError(w, r, controller.StoreError(err))
			return
		}
		s.log.Info("subscription registered", "subscription", sub, "tenant", body.TenantID)
		arm.WriteJSON(w, http.StatusOK, subscriptionJSON(rec))
	})
}

func subscriptionJSON(rec authz.Subscription) map[string]any {
	name := rec.DisplayName
	if name == "" {
		name = rec.ID
	}
	return map[string]any{"id": "/subscriptions/" + rec.ID, "subscriptionId": rec.ID, "tenantId": rec.TenantID, "displayName": name, "state": "Enabled"}
}
