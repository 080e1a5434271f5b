package fogclient

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// TokenRequest asks for an API token for a principal.
type TokenRequest struct {
	// Name is the principal, such as ci or alice.
	Name string `json:"name"`
	// ExpiresIn is a duration such as 720h ("" for the API's default).
	ExpiresIn string `json:"expiresIn"`
	// TenantID is the principal's tenant ("" for the deployment's own).
	TenantID string `json:"tenantId"`
}

// TokenInfo describes a token without the token.
type TokenInfo struct {
	ID       string     `json:"id"`
	Name     string     `json:"name"`
	TenantID string     `json:"tenantId,omitempty"`
	Created  time.Time  `json:"created"`
	Expires  *time.Time `json:"expires,omitempty"`
}

// Token is a created token: shown once.
type Token struct {
	Token string `json:"token"`
	TokenInfo
}

// CreateToken creates an API token.
func (c *Client) CreateToken(ctx context.Context, r TokenRequest) (*Token, error) {
	var t Token
	if _, err := c.Do(ctx, http.MethodPost, TokensPath, r, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// ListTokens lists the tokens (never the tokens themselves).
func (c *Client) ListTokens(ctx context.Context) ([]TokenInfo, error) {
	return getList[TokenInfo](ctx, c, TokensPath)
}

// RevokeToken revokes the token with id (8 characters of it or more).
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	_, err := c.Do(ctx, http.MethodDelete, TokensPath+"/"+url.PathEscape(id), nil, nil)
	return err
}

// JoinTokenRequest asks for a one-time token with which one agent of Region joins.
type JoinTokenRequest struct {
	Region    string `json:"region"`
	ExpiresIn string `json:"expiresIn"`
}

// JoinToken is a created join token.
type JoinToken struct {
	Token   string    `json:"token"`
	Region  string    `json:"region"`
	Expires time.Time `json:"expires"`
}

// CreateJoinToken creates a join token.
func (c *Client) CreateJoinToken(ctx context.Context, r JoinTokenRequest) (*JoinToken, error) {
	var t JoinToken
	if _, err := c.Do(ctx, http.MethodPost, JoinTokensPath, r, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Subscription is a subscription as ARM describes it.
type Subscription struct {
	ID             string `json:"id"`
	SubscriptionID string `json:"subscriptionId"`
	TenantID       string `json:"tenantId"`
	DisplayName    string `json:"displayName"`
	State          string `json:"state"`
}

// GetSubscription reads the client's subscription.
func (c *Client) GetSubscription(ctx context.Context) (*Subscription, error) {
	return get[Subscription](ctx, c, "/subscriptions/"+url.PathEscape(c.sub)+"?api-version="+SubscriptionAPIVersion)
}

// SubscriptionRequest registers a subscription in a tenant.
type SubscriptionRequest struct {
	TenantID    string `json:"tenantId"`
	DisplayName string `json:"displayName"`
}

// RegisterSubscription puts subscription id in a tenant.
func (c *Client) RegisterSubscription(ctx context.Context, id string, r SubscriptionRequest) (*Subscription, error) {
	var s Subscription
	if _, err := c.Do(ctx, http.MethodPut, SubscriptionsPath+"/"+url.PathEscape(id), r, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// ListSubscriptions lists the registered subscriptions.
func (c *Client) ListSubscriptions(ctx context.Context) ([]Subscription, error) {
	return getList[Subscription](ctx, c, SubscriptionsPath)
}

// RoleAssignmentProperties are a role assignment's properties; a create sends the role and
// the principal.
type RoleAssignmentProperties struct {
	RoleDefinitionID string     `json:"roleDefinitionId"`
	PrincipalID      string     `json:"principalId"`
	PrincipalType    string     `json:"principalType,omitempty"`
	Scope            string     `json:"scope,omitempty"`
	CreatedOn        *time.Time `json:"createdOn,omitempty"`
	UpdatedOn        *time.Time `json:"updatedOn,omitempty"`
	CreatedBy        string     `json:"createdBy,omitempty"`
	UpdatedBy        string     `json:"updatedBy,omitempty"`
}

// RoleAssignment is a Microsoft.Authorization role assignment.
type RoleAssignment struct {
	ID         string                   `json:"id,omitempty"`
	Name       string                   `json:"name,omitempty"`
	Type       string                   `json:"type,omitempty"`
	Properties RoleAssignmentProperties `json:"properties"`
}

// RoleAssignmentsPath is the role assignments at scope ("/", a subscription's, resource
// group's or resource's id).
func RoleAssignmentsPath(scope string) string {
	scope = strings.TrimRight(scope, "/")
	return scope + "/providers/Microsoft.Authorization/roleAssignments"
}

// CreateRoleAssignment assigns a role at scope; name is the assignment's GUID.
func (c *Client) CreateRoleAssignment(ctx context.Context, scope, name string, p RoleAssignmentProperties) (*RoleAssignment, error) {
	var a RoleAssignment
	path := RoleAssignmentsPath(scope) + "/" + url.PathEscape(name) + "?api-version=" + AuthorizationAPIVersion
	if _, err := c.Do(ctx, http.MethodPut, path, RoleAssignment{Properties: p}, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// ListRoleAssignments lists the assignments that apply at scope and those below it; filter
// is ARM's $filter ("atScope()", "principalId eq '{id}'", or "").
func (c *Client) ListRoleAssignments(ctx context.Context, scope, filter string) ([]RoleAssignment, error) {
	path := RoleAssignmentsPath(scope) + "?api-version=" + AuthorizationAPIVersion
	if filter != "" {
		path += "&$filter=" + url.QueryEscape(filter)
	}
	return getList[RoleAssignment](ctx, c, path)
}

// DeleteRoleAssignment deletes the role assignment with id.
func (c *Client) DeleteRoleAssignment(ctx context.Context, id string) error {
	_, err := c.Do(ctx, http.MethodDelete, id+"?api-version="+AuthorizationAPIVersion, nil, nil)
	return err
}

// RoleDefinition is a built-in role.
type RoleDefinition struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties struct {
		RoleName         string   `json:"roleName"`
		Type             string   `json:"type"`
		Description      string   `json:"description"`
		AssignableScopes []string `json:"assignableScopes"`
		Permissions      []struct {
			Actions        []string `json:"actions"`
			NotActions     []string `json:"notActions"`
			DataActions    []string `json:"dataActions"`
			NotDataActions []string `json:"notDataActions"`
		} `json:"permissions"`
	} `json:"properties"`
}

// ListRoleDefinitions lists the role definitions; filter is "" or "roleName eq '{name}'".
func (c *Client) ListRoleDefinitions(ctx context.Context, filter string) ([]RoleDefinition, error) {
	path := "/subscriptions/" + url.PathEscape(c.sub) + "/providers/Microsoft.Authorization/roleDefinitions?api-version=" + AuthorizationAPIVersion
	if filter != "" {
		path += "&$filter=" + url.QueryEscape(filter)
	}
	return getList[RoleDefinition](ctx, c, path)
}

// Localized is ARM's localizable string.
type Localized struct {
	Value          string `json:"value"`
	LocalizedValue string `json:"localizedValue"`
}

// ActivityEvent is an activity log event, in Azure Monitor's shape.
type ActivityEvent struct {
	Authorization struct {
		Action string `json:"action"`
		Scope  string `json:"scope"`
	} `json:"authorization"`
	Caller               string         `json:"caller"`
	Channels             string         `json:"channels"`
	CorrelationID        string         `json:"correlationId"`
	EventDataID          string         `json:"eventDataId"`
	EventName            Localized      `json:"eventName"`
	Category             Localized      `json:"category"`
	EventTimestamp       time.Time      `json:"eventTimestamp"`
	SubmissionTimestamp  time.Time      `json:"submissionTimestamp"`
	ID                   string         `json:"id"`
	Level                string         `json:"level"`
	OperationID          string         `json:"operationId"`
	OperationName        Localized      `json:"operationName"`
	ResourceGroupName    string         `json:"resourceGroupName"`
	ResourceProviderName Localized      `json:"resourceProviderName"`
	ResourceType         Localized      `json:"resourceType"`
	ResourceID           string         `json:"resourceId"`
	Status               Localized      `json:"status"`
	SubStatus            Localized      `json:"subStatus"`
	SubscriptionID       string         `json:"subscriptionId"`
	Properties           map[string]any `json:"properties"`
}

// ListActivityLog lists the subscription's activity log events that match filter, Azure
// Monitor's $filter: "eventTimestamp ge '{t}' and eventTimestamp le '{t}'", optionally with
// "and resourceGroupName eq '{rg}'", "resourceId eq '{id}'" or "correlationId eq '{id}'".
func (c *Client) ListActivityLog(ctx context.Context, filter string) ([]ActivityEvent, error) {
	path := "/subscriptions/" + url.PathEscape(c.sub) + "/providers/Microsoft.Insights/eventtypes/management/values?api-version=" + ActivityLogAPIVersion
	if filter != "" {
		path += "&$filter=" + url.QueryEscape(filter)
	}
	return getList[ActivityEvent](ctx, c, path)
}

// AgentRevocation selects the agent certificates to revoke: one of a region's, an agent's
// (all its renewals) or one certificate's.
type AgentRevocation struct {
	Region string `json:"region,omitempty"`
	Agent  string `json:"agent,omitempty"`
	Serial string `json:"serial,omitempty"`
}

// AgentCert is an agent certificate the servers signed.
type AgentCert struct {
	Serial    string     `json:"serial"`
	Region    string     `json:"region,omitempty"`
	Agent     string     `json:"agent"`
	Issued    time.Time  `json:"issued,omitzero"`
	Expires   time.Time  `json:"expires,omitzero"`
	Renews    string     `json:"renews,omitempty"`
	RenewedTo string     `json:"renewedTo,omitempty"`
	Renewed   time.Time  `json:"renewed,omitzero"`
	Revoked   *time.Time `json:"revoked,omitempty"`
	RevokedBy string     `json:"revokedBy,omitempty"`
}

// RevokeAgents revokes agent certificates and returns those it revoked.
func (c *Client) RevokeAgents(ctx context.Context, r AgentRevocation) ([]AgentCert, error) {
	var l list[AgentCert]
	if _, err := c.Do(ctx, http.MethodPost, AgentsPath+"revoke", r, &l); err != nil {
		return nil, err
	}
	return l.Value, nil
}

// ListAgents lists the agent certificates the servers signed.
func (c *Client) ListAgents(ctx context.Context) ([]AgentCert, error) {
	return getList[AgentCert](ctx, c, AgentsPath+"agents")
}
