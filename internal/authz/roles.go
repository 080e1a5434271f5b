// Package authz is Fog's role-based access control, in Azure's terms: built-in role
// definitions made of action strings with wildcards, role assignments of a role to a principal
// at a scope (the root, a subscription, a resource group or a resource), and the check every
// API call passes. A principal is the name a token was issued to; a subscription belongs to a
// tenant, and a principal of one tenant reaches only that tenant's subscriptions.
//
// It keeps the API tokens too (Tokens), and authenticates a request's bearer token
// (Tokens.Authenticate) for every endpoint that takes one: the API's and the agents' admin
// endpoints.
package authz

import (
	"strings"
)

// RoleDefinition is a role: what it allows (Actions) minus what it excludes (NotActions).
type RoleDefinition struct {
	// ID is Azure's GUID for the built-in role, so that role definition ids are portable.
	ID          string
	Name        string
	Description string
	Actions     []string
	NotActions  []string
}

// The built-in roles: Azure's Owner, Contributor and Reader, and the role the failover-group
// how-to names, SQL Managed Instance Contributor, with the actions of Azure's definition that
// Fog serves. Fog's own endpoints (tokens, join tokens, subscriptions) are actions of the
// "Fog" namespace; only Owner holds their write and delete.
var BuiltIn = []RoleDefinition{
	{
		ID: "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", Name: "Owner",
		Description: "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
		Actions:     []string{"*"},
	},
	{
		ID: "b24988ac-6180-42a0-ab88-20f7382dd24c", Name: "Contributor",
		Description: "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC.",
		Actions:     []string{"*"},
		NotActions: []string{"Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
			"Microsoft.Authorization/elevateAccess/Action", "Fog/*/write", "Fog/*/delete"},
	},
	{
		ID: "acdd72a7-3385-48ef-bd42-f606fba81ae7", Name: "Reader",
		Description: "View all resources, but does not allow you to make any changes.",
		Actions:     []string{"*/read"},
	},
	{
		ID: "4939a1f6-9ae0-4e48-a1e0-f2cbe897382d", Name: "SQL Managed Instance Contributor",
		Description: "Lets you manage SQL Managed Instances and required network configuration, but can't give access to others.",
		Actions: []string{
			"Microsoft.Authorization/*/read",
			"Microsoft.Insights/alertRules/*",
			"Microsoft.Insights/metrics/read",
			"Microsoft.Insights/metricDefinitions/read",
			"Microsoft.Insights/eventtypes/*",
			"Microsoft.Resources/deployments/*",
			"Microsoft.Resources/subscriptions/read",
			"Microsoft.Resources/subscriptions/resourceGroups/read",
			"Microsoft.Sql/locations/*/read",
			"Microsoft.Sql/locations/instanceFailoverGroups/*",
			"Microsoft.Sql/managedInstances/*",
			"Microsoft.Support/*",
		},
		NotActions: []string{
			"Microsoft.Sql/managedInstances/azureADOnlyAuthentications/delete",
			"Microsoft.Sql/managedInstances/azureADOnlyAuthentications/write",
		},
	},
}

// FindRole finds a built-in role by name (case-insensitive), GUID or role definition id.
func FindRole(s string) (RoleDefinition, bool) {
	if i := strings.LastIndex(s, "/"); i >= 0 {
		s = s[i+1:]
	}
	for _, r := range BuiltIn {
		if strings.EqualFold(r.Name, s) || strings.EqualFold(r.ID, s) {
			return r, true
		}
	}
	return RoleDefinition{}, false
}

// Allows reports whether the role grants action.
func (r RoleDefinition) Allows(action string) bool {
	allowed := false
	for _, p := range r.Actions {
		if ActionMatches(p, action) {
			allowed = true
			break
		}
	}
	if !allowed {
		return false
	}
	for _, p := range r.NotActions {
		if ActionMatches(p, action) {
			return false
		}
	}
	return true
}

// ActionMatches matches an action against a pattern as Azure does: case-insensitively, with
// '*' standing for any run of characters ('/' included).
func ActionMatches(pattern, action string) bool {
	return glob(strings.ToLower(pattern), strings.ToLower(action))
}

func glob(p, s string) bool {
	for len(p) > 0 {
		if p[0] == '*' {
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			if p == "" {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if glob(p, s[i:]) {
					return true
				}
			}
			return false
		}
		if s == "" || p[0] != s[0] {
			return false
		}
		p, s = p[1:], s[1:]
	}
	return s == ""
}

// ScopeCovers reports whether an assignment at scope applies to target: the same scope or one
// below it, segment by segment, case-insensitively. "/" covers everything.
func ScopeCovers(scope, target string) bool {
	scope = strings.TrimRight(scope, "/")
	if scope == "" {
		return true
	}
	t := strings.TrimRight(target, "/")
	if len(t) < len(scope) || !strings.EqualFold(t[:len(scope)], scope) {
		return false
	}
	return len(t) == len(scope) || t[len(scope)] == '/'
}
