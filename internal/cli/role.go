package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fogdb/fog/internal/authz"
	"github.com/fogdb/fog/internal/fogclient"
)

// newRoleCommand is az role: role assignments and the built-in role definitions.
func newRoleCommand(g *globals) *cobra.Command {
	rc := &cobra.Command{Use: "role", Short: "Manage role assignments and see role definitions (az role)"}
	ac := &cobra.Command{Use: "assignment", Short: "Manage role assignments"}
	var assignee, role, scope, rg, ids string
	scopeOf := func(c *client) string {
		switch {
		case scope != "":
			return strings.TrimRight(scope, "/")
		case rg != "":
			return "/subscriptions/" + url.PathEscape(c.Subscription()) + "/resourceGroups/" + url.PathEscape(rg)
		}
		return "/subscriptions/" + url.PathEscape(c.Subscription())
	}
	bindScope := func(cmd *cobra.Command) {
		cmd.Flags().StringVar(&scope, "scope", "", "scope: '/', /subscriptions/{id}, a resource group's or a resource's id (default: the subscription)")
		cmd.Flags().StringVarP(&rg, "resource-group", "g", "", "the resource group as the scope (instead of --scope)")
	}
	create := &cobra.Command{
		Use: "create", Short: "Assign a role to a principal at a scope", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			rd, ok := authz.FindRole(role)
			if !ok {
				return usageErr("--role", "no role %q; `fog role definition list` shows them", role)
			}
			b, err := c.answer(cmd.Context(), func(ctx context.Context) error {
				_, err := c.CreateRoleAssignment(ctx, scopeOf(c), authz.NewGUID(), fogclient.RoleAssignmentProperties{
					RoleDefinitionID: "/providers/Microsoft.Authorization/roleDefinitions/" + rd.ID, PrincipalID: assignee})
				return err
			})
			if err != nil {
				return err
			}
			return g.printAssignments(b)
		},
	}
	create.Flags().StringVar(&assignee, "assignee", "", "the principal (the name its tokens were made for)")
	create.Flags().StringVar(&role, "role", "", "role name or id, such as Reader or \"SQL Managed Instance Contributor\"")
	bindScope(create)
	_ = create.MarkFlagRequired("assignee")
	_ = create.MarkFlagRequired("role")
	list := &cobra.Command{
		Use: "list", Short: "List role assignments at a scope (and above and below it)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			filter := ""
			if assignee != "" {
				filter = "principalId eq '" + strings.ReplaceAll(assignee, "'", "''") + "'"
			}
			b, err := c.answer(cmd.Context(), func(ctx context.Context) error {
				_, err := c.ListRoleAssignments(ctx, scopeOf(c), filter)
				return err
			})
			if err != nil {
				return err
			}
			return g.printAssignments(filterRole(b, role))
		},
	}
	list.Flags().StringVar(&assignee, "assignee", "", "only this principal's assignments")
	list.Flags().StringVar(&role, "role", "", "only this role's assignments")
	bindScope(list)
	del := &cobra.Command{
		Use: "delete", Short: "Delete role assignments, by --ids or by --assignee, --role and --scope", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var targets []string
			if ids != "" {
				targets = strings.Fields(ids)
			} else {
				if assignee == "" && role == "" {
					return usageErr("--ids", "give --ids, or --assignee and/or --role (with --scope) to pick the assignments")
				}
				b, err := c.answer(cmd.Context(), func(ctx context.Context) error {
					_, err := c.ListRoleAssignments(ctx, scopeOf(c), "atScope()")
					return err
				})
				if err != nil {
					return err
				}
				for _, a := range assignmentsOf(filterRole(b, role)) {
					if (assignee == "" || a["principalId"] == assignee) && strings.EqualFold(fmt.Sprint(a["scope"]), strings.TrimRight(scopeOf(c), "/")) {
						targets = append(targets, fmt.Sprint(a["id"]))
					}
				}
				if len(targets) == 0 {
					return fmt.Errorf("no role assignment at %s matches --assignee %q --role %q", scopeOf(c), assignee, role)
				}
			}
			for _, id := range targets {
				if err := c.DeleteRoleAssignment(cmd.Context(), id); err != nil {
					return c.explain(err)
				}
			}
			return nil
		},
	}
	del.Flags().StringVar(&ids, "ids", "", "space-separated role assignment ids")
	del.Flags().StringVar(&assignee, "assignee", "", "the principal whose assignments to delete")
	del.Flags().StringVar(&role, "role", "", "the role of the assignments to delete")
	bindScope(del)
	ac.AddCommand(create, list, del)

	dc := &cobra.Command{Use: "definition", Short: "See the built-in role definitions"}
	var name string
	dlist := &cobra.Command{
		Use: "list", Short: "List role definitions", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			filter := ""
			if name != "" {
				filter = "roleName eq '" + strings.ReplaceAll(name, "'", "''") + "'"
			}
			b, err := c.answer(cmd.Context(), func(ctx context.Context) error {
				_, err := c.ListRoleDefinitions(ctx, filter)
				return err
			})
			if err != nil {
				return err
			}
			return g.print(b)
		},
	}
	dlist.Flags().StringVarP(&name, "name", "n", "", "only the role with this name")
	dc.AddCommand(dlist)
	rc.AddCommand(ac, dc)
	return rc
}

func assignmentsOf(body []byte) []map[string]any {
	var resp struct {
		Value []map[string]any `json:"value"`
	}
	if json.Unmarshal(body, &resp) == nil && resp.Value != nil {
		out := make([]map[string]any, 0, len(resp.Value))
		for _, v := range resp.Value {
			out = append(out, flatten(v).(map[string]any))
		}
		return out
	}
	var one map[string]any
	if json.Unmarshal(body, &one) == nil {
		return []map[string]any{flatten(one).(map[string]any)}
	}
	return nil
}

// filterRole keeps the assignments of role (a name or id) in a list body.
func filterRole(body []byte, role string) []byte {
	if role == "" {
		return body
	}
	rd, ok := authz.FindRole(role)
	keep := []map[string]any{}
	for _, a := range assignmentsOf(body) {
		if ok && strings.HasSuffix(fmt.Sprint(a["roleDefinitionId"]), rd.ID) {
			keep = append(keep, a)
		}
	}
	b, _ := json.Marshal(map[string]any{"value": keep})
	return b
}

// printAssignments prints assignments as az role assignment does: flattened, with the role's
// name beside its id.
func (g *globals) printAssignments(body []byte) error {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return err
	}
	list := assignmentsOf(body)
	for _, a := range list {
		if rd, ok := authz.FindRole(fmt.Sprint(a["roleDefinitionId"])); ok {
			a["roleDefinitionName"] = rd.Name
		}
		a["principalName"] = a["principalId"]
	}
	var out any = list
	if m, ok := v.(map[string]any); ok && m["value"] == nil && len(list) == 1 {
		out = list[0]
	}
	b, _ := json.Marshal(out)
	return g.print(b)
}

// newAccountCommand registers subscriptions in tenants.
func newAccountCommand(g *globals) *cobra.Command {
	ac := &cobra.Command{Use: "account", Short: "Subscriptions and the tenants they belong to"}
	sc := &cobra.Command{Use: "subscription", Short: "Register and list subscriptions"}
	var id, tenant, display string
	reg := &cobra.Command{
		Use: "register", Short: "Put a subscription in a tenant (Owner at the root scope)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			b, err := c.answer(cmd.Context(), func(ctx context.Context) error {
				_, err := c.RegisterSubscription(ctx, id, fogclient.SubscriptionRequest{TenantID: tenant, DisplayName: display})
				return err
			})
			if err != nil {
				return err
			}
			return g.print(b)
		},
	}
	reg.Flags().StringVar(&id, "subscription-id", "", "the subscription's GUID")
	reg.Flags().StringVar(&tenant, "tenant-id", "", "the tenant's GUID")
	reg.Flags().StringVar(&display, "display-name", "", "a name to show")
	_ = reg.MarkFlagRequired("subscription-id")
	_ = reg.MarkFlagRequired("tenant-id")
	list := &cobra.Command{
		Use: "list", Short: "List registered subscriptions", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			b, err := c.answer(cmd.Context(), func(ctx context.Context) error {
				_, err := c.ListSubscriptions(ctx)
				return err
			})
			if err != nil {
				return err
			}
			return g.print(b)
		},
	}
	sc.AddCommand(reg, list)
	ac.AddCommand(sc, newAccountShowCommand(g), newAccessTokenCommand(g))
	return ac
}

// account is az's `account show`: the client config's subscription as ARM describes it, with
// where the API is and the CA that verifies it.
func (g *globals) account(cmd *cobra.Command) (*client, map[string]any, error) {
	c, err := g.client()
	if err != nil {
		return nil, nil, err
	}
	sub, err := c.GetSubscription(cmd.Context())
	if err != nil {
		return nil, nil, c.explain(err)
	}
	ca, err := c.caFile()
	if err != nil {
		return nil, nil, err
	}
	cfg, _ := filepath.Abs(c.config)
	return c, map[string]any{
		"id": c.Subscription(), "name": sub.DisplayName, "tenantId": sub.TenantID, "state": sub.State,
		"isDefault": true, "apiUrl": c.BaseURL(), "caFile": ca, "clientConfig": cfg,
	}, nil
}

func newAccountShowCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "show", Short: "Show the subscription the CLI uses, the API's URL and its CA file (az account show)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, acct, err := g.account(cmd)
			if err != nil {
				return err
			}
			return g.render(acct)
		},
	}
}

func newAccessTokenCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get-access-token",
		Short: "Print the API token of the client config, for curl and other HTTP clients (az account get-access-token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, acct, err := g.account(cmd)
			if err != nil {
				return err
			}
			return g.render(map[string]any{"accessToken": c.Token(), "tokenType": "Bearer", "subscription": c.Subscription(), "tenant": acct["tenantId"]})
		},
	}
}
